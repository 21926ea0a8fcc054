// `llm run` end to end on stories260K: greedy generation from BOS alone prints the
// golden text of llama2.c's test suite (../shared/models/stories260K.greedy200.txt holds
// it without the leading space that SPM's first word carries; `llm run` drops that space
// too when it generates from BOS alone, then ends the output with one newline).
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "test_util.h"

using namespace llm;

namespace {

std::string run_cmd(const std::string& model, const std::string& args) {
  return test::llm_binary() + " run -m " + model + " --device cpu -t 2 " + args;
}

}  // namespace

TEST_CASE("llm run: greedy 200 tokens from BOS print the golden text") {
  const std::string m = test::shared_file("models/stories260K.gguf");
  const std::string g = test::shared_file("models/stories260K.greedy200.txt");
  if (m.empty() || g.empty()) LLM_SKIP("../shared/models/stories260K.* absent");
  const std::string golden = test::read_text(g);
  auto r = test::run_command(run_cmd(m, "--temp 0 -n 200 -p \"\""));
  REQUIRE(r.exit_code == 0);
  CHECK(r.out == golden + "\n");
  CHECK(r.err.find("tokens per second") != std::string::npos);
  CHECK(r.err.find("time to first token") != std::string::npos);

  // A prompt is echoed and continued; the continuation of the golden story's first
  // words is the rest of the golden story.
  r = test::run_command(run_cmd(m, "--temp 0 -n 20 -p \"Once upon a time\""));
  REQUIRE(r.exit_code == 0);
  REQUIRE(r.out.size() > 20);
  CHECK(golden.rfind(r.out.substr(0, r.out.size() - 1), 0) == 0);
}

TEST_CASE("llm run: sampling is reproducible with a seed") {
  const std::string m = test::shared_file("models/stories260K.gguf");
  if (m.empty()) LLM_SKIP("../shared/models/stories260K.gguf absent");
  auto a = test::run_command(run_cmd(m, "--temp 1 --seed 7 -n 60"));
  auto b = test::run_command(run_cmd(m, "--temp 1 --seed 7 -n 60"));
  auto c = test::run_command(run_cmd(m, "--temp 1 --seed 8 -n 60"));
  REQUIRE(a.exit_code == 0);
  CHECK(a.out == b.out);
  CHECK(a.out != c.out);
}

TEST_CASE("llm run: bad input is a one-line error") {
  const std::string m = test::shared_file("models/stories260K.gguf");
  if (m.empty()) LLM_SKIP("../shared/models/stories260K.gguf absent");
  auto r = test::run_command(test::llm_binary() + " run -p hi");
  CHECK(r.exit_code == 1);
  r = test::run_command(run_cmd(m, "--device tpu"));
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("--device") != std::string::npos);
  r = test::run_command(run_cmd(m, "-f /nonexistent/prompt.txt"));
  CHECK(r.exit_code == 1);
  r = test::run_command(test::llm_binary() + " run -m /nonexistent.gguf");
  CHECK(r.exit_code == 1);
}

TEST_CASE("llm bench: prefill and generation figures in JSON, through either generation path") {
  const std::string m = test::shared_file("models/stories260K.gguf");
  if (m.empty()) LLM_SKIP("../shared/models/stories260K.gguf absent");
  for (const std::string extra : {"", " --full-logits"}) {
    CAPTURE(extra);
    const auto r = test::run_command(test::llm_binary() + " bench -m " + m +
                                     " --device cpu -t 2 -p 16 -n 8 -r 1 --json" + extra);
    REQUIRE(r.exit_code == 0);
    const auto j = nlohmann::json::parse(r.out);
    REQUIRE(j["results"].size() == 2);
    CHECK(j["results"][0]["test"] == "pp16");
    CHECK(j["results"][1]["test"] == "tg8");
    for (const auto& x : j["results"]) {
      CHECK(x["tok_s"].get<double>() > 0.0);
      CHECK(x["bytes_per_tok"].get<double>() > 0.0);
    }
    // Generation is bound by memory: a ceiling from the measured copy bandwidth.
    CHECK(j["results"][1]["ceiling_tok_s"].get<double>() > 0.0);
  }
}
