// --deterministic on the CPU: the flag of run, serve, chat and bench reaches
// BackendOptions::deterministic (the backend names it) and makes serve/chat sample from
// full logit rows; and the CPU backend, which does nothing different in that mode, is
// batch invariant bit for bit on synthetic models of every weight path (the checks
// test_cuda_deterministic runs on CUDA).
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "engine/backend_cpu.h"
#include "invariance_test_util.h"
#include "server/args.h"
#include "server/cli_common.h"
#include "test_util.h"

using namespace llm;
using namespace llm::test;

TEST_CASE("cpu backend: synthetic F16 / Q4_0 / Q4_K_M / qwen2 logits do not depend on the batch") {
  struct Case {
    FileType ft;
    const char* arch;
  };
  const Case cases[] = {{FileType::F16, "llama"},
                        {FileType::Q4_0, "llama"},
                        {FileType::Q4_K_M, "llama"},
                        {FileType::Q8_0, "qwen2"}};
  for (const Case& cs : cases) {
    const std::string label = std::string(cs.arch) + " " + file_type_name(cs.ft);
    CAPTURE(label);
    auto model = Model::load(write_synthetic(
        cs.ft, cs.arch, std::string("det_cpu_") + cs.arch + file_type_name(cs.ft) + ".gguf"));
    BackendOptions o;
    o.n_threads = 2;
    o.kv_tokens = 8192;
    o.deterministic = true;
    CpuBackend cpu(*model, o);
    CHECK(cpu.name() == "cpu (2 threads, deterministic)");
    check_batch_invariance(cpu);
  }
}

TEST_CASE(
    "cpu engine: concurrent requests give each request's tokens and logprobs alone (stories260K)") {
  const std::string m = shared_file("models/stories260K.gguf");
  if (m.empty()) LLM_SKIP("../shared/models/stories260K.gguf absent");
  auto model = Model::load(m);
  BackendOptions o;
  o.n_threads = 2;
  o.deterministic = true;
  o.kv_tokens = 1024;
  CpuBackend roomy(*model, o);
  o.kv_tokens = 160;
  CpuBackend tiny(*model, o);
  check_engine_invariance(roomy, tiny);
}

namespace {

// load_model and engine_config as serve and chat call them, on the given flags.
struct Loaded {
  std::string backend_name;
  bool candidates = true;
};
Loaded load_with(const std::string& model, std::vector<std::string> flags) {
  Args a("serve", "", "");
  add_model_flags(a);
  flags.insert(flags.begin(), {"-m", model, "--device", "cpu", "-t", "2"});
  std::vector<char*> argv;
  for (std::string& f : flags) argv.push_back(f.data());
  REQUIRE(a.parse(static_cast<int>(argv.size()), argv.data()));
  const LoadedModel lm = load_model(a);
  return {lm.backend->name(), engine_config(a, lm).logit_candidates};
}

}  // namespace

TEST_CASE("--deterministic reaches the backend from serve/chat, run and bench flags") {
  const std::string m = shared_file("models/stories260K.gguf");
  const std::string g = shared_file("models/stories260K.greedy200.txt");
  if (m.empty() || g.empty()) LLM_SKIP("../shared/models/stories260K.* absent");

  // serve and chat (add_model_flags, load_model, engine_config)
  const Loaded plain = load_with(m, {}), det = load_with(m, {"--deterministic"});
  CHECK(plain.backend_name == "cpu (2 threads)");
  CHECK(plain.candidates);
  CHECK(det.backend_name == "cpu (2 threads, deterministic)");
  CHECK_FALSE(det.candidates);  // full logit rows: the host's log-sum-exp in every step

  // run: the golden greedy text, unchanged, and the backend named on stderr
  const std::string golden = read_text(g);
  auto r = run_command(llm_binary() + " run -m " + m +
                       " --device cpu -t 2 --deterministic --temp 0 -n 200 -p \"\"");
  REQUIRE(r.exit_code == 0);
  CHECK(r.out == golden + "\n");
  CHECK(r.err.find("on cpu (2 threads, deterministic)") != std::string::npos);
  r = run_command(llm_binary() + " run -m " + m + " --device cpu -t 2 --deterministic=1");
  CHECK(r.exit_code == 1);  // a switch takes no value
  CHECK(r.err.find("--deterministic") != std::string::npos);

  // bench: the JSON names the backend
  r = run_command(llm_binary() + " bench -m " + m +
                  " --device cpu -t 2 -p 16 -n 8 -r 1 --json --deterministic");
  REQUIRE(r.exit_code == 0);
  const auto j = nlohmann::json::parse(r.out);
  CHECK(j["backend"] == "cpu (2 threads, deterministic)");
  CHECK(j["results"].size() == 2);
}
