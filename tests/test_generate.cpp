// The single-sequence generation loop on stories260K: greedy output against the golden
// run, chunked prefill, and each stopping rule.
#include <doctest/doctest.h>

#include <algorithm>
#include <fstream>

#include "engine/backend.h"
#include "engine/error.h"
#include "engine/generate.h"
#include "test_util.h"

using namespace llm;

namespace {

struct Setup {
  std::unique_ptr<Model> model;
  std::unique_ptr<Backend> backend;
  std::vector<int32_t> golden;  // BOS then 200 greedy ids
};

bool setup(Setup& s, int64_t kv_tokens = 0) {
  const std::string m = test::shared_file("models/stories260K.gguf");
  const std::string g = test::shared_file("models/stories260K.greedy200.ids");
  if (m.empty() || g.empty()) return false;
  s.model = Model::load(m);
  BackendOptions opt;
  opt.n_threads = 2;
  opt.kv_tokens = kv_tokens;
  s.backend = make_cpu_backend(*s.model, opt);
  std::ifstream f(g);
  int32_t x;
  while (f >> x) s.golden.push_back(x);
  REQUIRE(s.golden.size() == 201);
  return true;
}

int32_t argmax(const float* v, int n) {
  return static_cast<int32_t>(std::max_element(v, v + n) - v);
}

}  // namespace

TEST_CASE("generate: greedy from BOS gives the golden ids; chunked prompt continues them") {
  Setup s;
  if (!setup(s)) LLM_SKIP("../shared/models/stories260K.* absent");
  const int V = s.model->config.n_vocab;
  auto greedy = [&](const float* l) { return argmax(l, V); };
  auto never = [](int32_t) { return false; };

  std::vector<int32_t> out;
  GenerateOptions opt;
  opt.n_predict = 200;
  auto t = generate(
      *s.backend, {1}, greedy, never,
      [&](int32_t id) {
        out.push_back(id);
        return true;
      },
      opt);
  CHECK(out == std::vector<int32_t>(s.golden.begin() + 1, s.golden.end()));
  CHECK(t.prompt_tokens == 1);
  CHECK(t.generated_tokens == 200);
  CHECK(t.decode_steps == 199);
  CHECK(t.ttft_s > 0);
  CHECK_FALSE(t.stopped_by_eog);

  // A 77-token prompt prefilled in chunks of 10 continues the same story.
  out.clear();
  opt.batch_size = 10;
  opt.n_predict = 50;
  std::vector<int32_t> prompt(s.golden.begin(), s.golden.begin() + 77);
  t = generate(
      *s.backend, prompt, greedy, never,
      [&](int32_t id) {
        out.push_back(id);
        return true;
      },
      opt);
  CHECK(out == std::vector<int32_t>(s.golden.begin() + 77, s.golden.begin() + 127));
  CHECK(t.prompt_tokens == 77);
}

TEST_CASE("generate: stops at EOG, on request and when the context is full") {
  Setup s;
  if (!setup(s, 48)) LLM_SKIP("../shared/models/stories260K.* absent");
  const int V = s.model->config.n_vocab;
  auto greedy = [&](const float* l) { return argmax(l, V); };
  std::vector<int32_t> out;
  auto collect = [&](int32_t id) {
    out.push_back(id);
    return true;
  };
  GenerateOptions opt;
  opt.n_predict = -1;

  // Pretend the 6th golden token ends generation: 5 tokens come out, the EOG does not.
  const int32_t eog = s.golden[6];
  auto is_eog = [&](int32_t id) { return id == eog; };
  auto t = generate(*s.backend, {1}, greedy, is_eog, collect, opt);
  CHECK(t.stopped_by_eog);
  CHECK(out == std::vector<int32_t>(s.golden.begin() + 1, s.golden.begin() + 6));

  // ignore_eos runs on to the end of the 48-token pool: 47 positions after BOS are
  // computed, and the 48th token is sampled from the last position's logits.
  out.clear();
  opt.ignore_eos = true;
  t = generate(*s.backend, {1}, greedy, is_eog, collect, opt);
  CHECK(t.context_full);
  CHECK(out == std::vector<int32_t>(s.golden.begin() + 1, s.golden.begin() + 49));

  // The callback can stop it; -c style limits apply too.
  out.clear();
  opt.n_ctx = 20;
  t = generate(
      *s.backend, {1}, greedy, {},
      [&](int32_t id) {
        out.push_back(id);
        return out.size() < 3;
      },
      opt);
  CHECK(out.size() == 3);
  out.clear();
  t = generate(*s.backend, {1}, greedy, {}, collect, opt);
  CHECK(out.size() == 20);
  CHECK(t.context_full);

  CHECK_THROWS_AS(generate(*s.backend, {}, greedy, {}, collect, opt), Error);
  CHECK_THROWS_AS(generate(*s.backend, std::vector<int32_t>(21, 1), greedy, {}, collect, opt),
                  Error);
}
