// Engine: the request API (events, stops, cancel, errors, metrics, threads) over a fake
// backend that checks the paged-KV contract, and batch invariance on the real CPU
// backend: greedy outputs of many concurrent requests (mixed lengths, shared prefixes,
// chunked prefill, preemption forced by a tiny KV pool) must equal each request run
// alone, exactly, on stories260K, a synthetic qwen2-shaped model and make-model tiny.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "engine/backend_cpu.h"
#include "engine/convert.h"
#include "engine/engine.h"
#include "engine/error.h"
#include "engine/gguf.h"
#include "engine/model.h"
#include "engine_test_util.h"
#include "test_util.h"

using namespace llm;
using namespace llm::test;

namespace {

// A backend whose "K/V" of a slot is the (token, position) written there and whose next
// token is a hash of the whole context it reads back through the block table, so its
// outputs depend on every cached slot like a real model's do. Any row that reads a slot
// not holding its own sequence's token at that position counts as a violation.
class FakeBackend : public Backend {
 public:
  FakeBackend(int n_vocab, int kv_blocks, int block_size) : bs_(block_size), blocks_(kv_blocks) {
    cfg_.n_vocab = n_vocab;
    cfg_.n_ctx_train = 1 << 20;
    tok_.assign(static_cast<size_t>(kv_blocks) * block_size, -1);
    pos_.assign(tok_.size(), -1);
  }
  std::string name() const override { return "fake"; }
  const ModelConfig& config() const override { return cfg_; }
  int block_size() const override { return bs_; }
  int kv_blocks() const override { return blocks_; }
  void copy_kv_block(int src, int dst) override {
    std::copy_n(tok_.begin() + src * bs_, bs_, tok_.begin() + dst * bs_);
    std::copy_n(pos_.begin() + src * bs_, bs_, pos_.begin() + dst * bs_);
  }
  void forward(const Batch& b, float* logits) override {
    ++forwards;
    if (delay_us) std::this_thread::sleep_for(std::chrono::microseconds(delay_us));
    if (fail_next) {
      fail_next = false;
      throw Error("injected failure");
    }
    max_rows = std::max(max_rows, b.n_tokens());
    for (int r = 0; r < b.n_tokens(); ++r) {
      tok_[static_cast<size_t>(b.slots[r])] = b.tokens[r];
      pos_[static_cast<size_t>(b.slots[r])] = b.positions[r];
    }
    int k = 0;
    for (int s = 0; s < b.n_seqs(); ++s) {
      for (int r = b.seq_start[s]; r < b.seq_start[s + 1]; ++r) {
        if (std::find(b.logit_rows.begin(), b.logit_rows.end(), r) == b.logit_rows.end()) continue;
        uint64_t h = 0x9e3779b97f4a7c15ull;
        for (int p = 0; p <= b.positions[r]; ++p) {
          const int slot = b.block_table(s)[p / bs_] * bs_ + p % bs_;
          if (pos_[static_cast<size_t>(slot)] != p) ++violations;
          h = (h ^ static_cast<uint64_t>(tok_[static_cast<size_t>(slot)] + 7)) * 0x100000001b3ull;
          h ^= h >> 31;
        }
        float* out = logits + static_cast<size_t>(k++) * cfg_.n_vocab;
        uint64_t x = h;
        for (int v = 0; v < cfg_.n_vocab; ++v) {
          x = x * 6364136223846793005ull + 1442695040888963407ull;
          out[v] = static_cast<float>(x >> 40) / static_cast<float>(1 << 24);  // [0, 1)
        }
        out[h % static_cast<uint64_t>(cfg_.n_vocab)] += 2.0f;  // a clear greedy choice
      }
    }
  }

  int violations = 0;
  int forwards = 0;
  int max_rows = 0;
  bool fail_next = false;
  int delay_us = 0;  // per forward, to make a step take a while

 private:
  ModelConfig cfg_;
  int bs_, blocks_;
  std::vector<int32_t> tok_, pos_;
};

}  // namespace

TEST_CASE("engine: concurrent requests equal each run alone (fake backend, tiny pool)") {
  std::mt19937 rng(7);
  const std::vector<int32_t> system = random_tokens(rng, 21, 1, 63);
  std::vector<Request> reqs;
  for (int i = 0; i < 12; ++i) {
    std::vector<int32_t> p;
    if (i % 3 != 2) p = system;  // two thirds share a 21-token prefix
    std::vector<int32_t> tail = random_tokens(rng, 1 + 7 * i % 30, 1, 63);
    p.insert(p.end(), tail.begin(), tail.end());
    Request r = greedy(p, 5 + 3 * i % 25);
    if (i % 4 == 1) {  // some sample with temperature: same seed, same tokens
      r.sampling.temperature = 0.9f;
      r.sampling.seed = 1000 + i;
    }
    r.n_logprobs = i % 3;
    reqs.push_back(r);
  }
  FakeBackend roomy(64, 256, 4);
  EngineConfig cfg;
  const std::vector<GenerationResult> alone = run_alone(roomy, cfg, reqs);

  FakeBackend tiny(64, 24, 4);            // 96 slots for 12 requests of up to ~80 tokens
  cfg.sched.max_num_batched_tokens = 16;  // prefills arrive in chunks
  cfg.sched.max_num_seqs = 6;
  Engine e(tiny, cfg);
  const std::vector<GenerationResult> together = e.generate_all(reqs);
  for (size_t i = 0; i < reqs.size(); ++i) {
    CAPTURE(i);
    CHECK(together[i].tokens == alone[i].tokens);
    CHECK(together[i].logprobs == alone[i].logprobs);
    CHECK(together[i].finish_reason == FinishReason::Length);
    CHECK(together[i].tokens.size() == static_cast<size_t>(reqs[i].stop.max_tokens));
    if (reqs[i].n_logprobs > 0) {
      REQUIRE(together[i].top.size() == together[i].tokens.size());
      CHECK(together[i].top[0].size() == static_cast<size_t>(reqs[i].n_logprobs));
    }
  }
  CHECK(tiny.violations == 0);
  CHECK(roomy.violations == 0);
  CHECK(tiny.max_rows <= 16);
  const EngineMetrics m = e.metrics();
  CHECK(m.preemptions > 0);
  CHECK(m.prefix_hit_tokens > 0);
  CHECK(m.requests_finished == 12);
  CHECK(m.running == 0);
  CHECK(m.waiting == 0);
  CHECK(m.kv.used == 0);
  CHECK(m.kv.total == 24);
  CHECK(m.ttft_count == 12);
}

TEST_CASE("engine: greedy logprobs are the top entry; stops end with the right reason") {
  FakeBackend be(32, 64, 4);
  EngineConfig cfg;
  Engine probe(be, cfg);
  const std::vector<int32_t> prompt = {3, 4, 5};
  const GenerationResult free_run = probe.generate_all({greedy(prompt, 12)})[0];
  REQUIRE(free_run.tokens.size() == 12);
  Request lp = greedy(prompt, 12);
  lp.n_logprobs = 4;
  const GenerationResult with_lp = probe.generate_all({lp})[0];
  REQUIRE(with_lp.top.size() == 12);
  for (size_t i = 0; i < 12; ++i) {
    CHECK(with_lp.top[i][0].id == with_lp.tokens[i]);
    CHECK(with_lp.top[i][0].logprob == with_lp.logprobs[i]);
    CHECK(with_lp.logprobs[i] < 0);
  }

  // A stop id ends the request at its first occurrence, token included.
  const int32_t stop_tok = free_run.tokens[4];
  const size_t first =
      static_cast<size_t>(std::find(free_run.tokens.begin(), free_run.tokens.end(), stop_tok) -
                          free_run.tokens.begin());
  Request rs = greedy(prompt, 12);
  rs.stop.stop_ids = {stop_tok};
  GenerationResult g = probe.generate_all({rs})[0];
  CHECK(g.finish_reason == FinishReason::Stop);
  CHECK(g.tokens ==
        std::vector<int32_t>(free_run.tokens.begin(), free_run.tokens.begin() + first + 1));
  CHECK(g.stats.n_generated == static_cast<int>(first) + 1);

  // End-of-generation ids stop unless ignore_eos.
  cfg.eog_ids = {stop_tok};
  Engine eog(be, cfg);
  g = eog.generate_all({greedy(prompt, 12)})[0];
  CHECK(g.finish_reason == FinishReason::Stop);
  CHECK(g.tokens.size() == first + 1);
  Request ign = greedy(prompt, 12);
  ign.stop.ignore_eos = true;
  g = eog.generate_all({ign})[0];
  CHECK(g.finish_reason == FinishReason::Length);
  CHECK(g.tokens == free_run.tokens);

  // The model length caps prompt + generated tokens.
  EngineConfig short_cfg;
  short_cfg.max_model_len = 8;
  Engine short_engine(be, short_cfg);
  g = short_engine.generate_all({greedy(prompt, 100)})[0];
  CHECK(g.finish_reason == FinishReason::Length);
  CHECK(g.tokens.size() == 5);
  CHECK(be.violations == 0);
}

TEST_CASE("engine: step accounting adds up") {
  FakeBackend be(64, 64, 4);
  EngineConfig cfg;
  cfg.prefix_caching = false;
  Engine e(be, cfg);
  const std::vector<GenerationResult> r = e.generate_all(
      {greedy({1, 2, 3, 4, 5, 6, 7}, 9), greedy({8, 9}, 4), greedy({10, 11, 12}, 6)});
  const EngineMetrics m = e.metrics();
  // Every prompt token and every generated token but the last of each is computed once.
  CHECK(m.batched_tokens == (7 + 2 + 3) + (9 + 4 + 6) - 3);
  CHECK(m.generated_tokens == 9 + 4 + 6);
  CHECK(m.prefix_hit_tokens == 0);
  CHECK(m.prefix_query_tokens == 7 + 2 + 3);
  // All three prefill in step 1; then 3, 3, 3, 2, 2, 1, 1, 1 decodes.
  CHECK(m.steps == 9);
  CHECK(m.decode_steps == 8);
  CHECK(m.decode_tokens == 16);
  CHECK(m.forward_s <= m.step_s);
  CHECK(m.decode_s <= m.step_s);
  CHECK(m.ttft_count == 3);
  CHECK(m.tpot_count == 3);
  CHECK(m.e2e_count == 3);
  CHECK(r[0].stats.n_prompt == 7);
  CHECK(r[0].stats.n_generated == 9);
  CHECK(r[0].stats.ttft >= 0);
  CHECK(r[0].stats.e2e >= r[0].stats.ttft);
}

TEST_CASE("engine: requests that cannot run are refused at submit") {
  FakeBackend be(32, 8, 4);  // 32 slots
  EngineConfig cfg;
  Engine e(be, cfg);
  CHECK(e.max_model_len() == 32);
  auto noop = [](const TokenEvent&) {};
  CHECK_THROWS_AS(e.submit(greedy({}, 4), noop), Error);
  CHECK_THROWS_AS(e.submit(greedy({1, 32}, 4), noop), Error);
  CHECK_THROWS_AS(e.submit(greedy({1, -1}, 4), noop), Error);
  CHECK_THROWS_AS(e.submit(greedy(std::vector<int32_t>(32, 1), 4), noop), Error);
  CHECK_THROWS_AS(e.submit(greedy({1}, 0), noop), Error);
  Request r = greedy({1}, 4);
  r.n_logprobs = 21;
  CHECK_THROWS_AS(e.submit(r, noop), Error);
  r = greedy({1}, 4);
  r.sampling.logit_bias = {{99, 1.0f}};  // the sampler validates its parameters
  CHECK_THROWS_AS(e.submit(r, noop), Error);
  // A prompt of max_model_len - 1 tokens still runs, and stops at the length.
  const GenerationResult g = e.generate_all({greedy(std::vector<int32_t>(31, 1), 4)})[0];
  CHECK(g.finish_reason == FinishReason::Length);
  CHECK(g.tokens.size() == 1);
  EngineConfig too_long;
  too_long.max_model_len = 33;
  CHECK_THROWS_AS(Engine(be, too_long), Error);
}

TEST_CASE("engine: a failing forward ends that step's requests with an error, others go on") {
  FakeBackend be(32, 64, 4);
  EngineConfig cfg;
  Engine e(be, cfg);
  EventQueue q;
  const RequestId a = e.submit(greedy({1, 2, 3}, 6), q.callback());
  e.step();
  be.fail_next = true;
  const RequestId b = e.submit(greedy({4, 5}, 6), q.callback());
  e.step();  // a and b both scheduled: both fail
  const RequestId c = e.submit(greedy({6}, 3), q.callback());
  while (e.step()) {
  }
  std::map<RequestId, TokenEvent> last;
  while (auto ev = q.try_pop()) last[ev->id] = *ev;
  CHECK(last[a].finish_reason == FinishReason::Error);
  CHECK(last[a].error.find("injected failure") != std::string::npos);
  CHECK(last[b].finish_reason == FinishReason::Error);
  CHECK(last[c].finish_reason == FinishReason::Length);
  CHECK(e.metrics().kv.used == 0);
}

TEST_CASE("engine: the loop thread serves submitters on many threads; cancel is final") {
  FakeBackend be(64, 40, 4);
  be.delay_us = 20;  // a 1000-token request takes longer than submit + cancel
  EngineConfig cfg;
  cfg.sched.max_num_batched_tokens = 32;
  Engine e(be, cfg);
  e.start();
  struct Seen {
    std::mutex mu;
    std::map<RequestId, std::vector<TokenEvent>> events;
  } seen;
  auto cb = [&seen](const TokenEvent& ev) {
    std::lock_guard<std::mutex> lk(seen.mu);
    seen.events[ev.id].push_back(ev);
  };
  std::atomic<int> cancelled_ok{0};
  std::vector<RequestId> ids[4];
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(100 + t);
      for (int i = 0; i < 25; ++i) {
        // Every fifth runs until the model length, unless cancelled right away.
        Request r = greedy(random_tokens(rng, 1 + i % 13, 0, 63), i % 5 ? 1 + (i * 7) % 40 : 1000);
        r.priority = i % 3;
        ids[t].push_back(e.submit(r, cb));
        if (i % 5 == 0 && e.cancel(ids[t].back())) ++cancelled_ok;
      }
    });
  }
  for (auto& th : threads) th.join();
  // Wait for every request's final event.
  for (int spins = 0; spins < 20000; ++spins) {
    if (e.metrics().requests_finished == 100) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  e.stop();
  CHECK(e.metrics().requests_finished == 100);
  std::lock_guard<std::mutex> lk(seen.mu);
  CHECK(seen.events.size() == 100);
  int n_cancelled = 0;
  for (const auto& [id, evs] : seen.events) {
    CAPTURE(id);
    REQUIRE(!evs.empty());
    // Exactly one final event, the last.
    for (size_t i = 0; i + 1 < evs.size(); ++i) CHECK_FALSE(evs[i].finished);
    CHECK(evs.back().finished);
    if (evs.back().finish_reason == FinishReason::Cancelled) {
      ++n_cancelled;
      CHECK(evs.back().token == -1);
    } else {
      CHECK(evs.back().finish_reason == FinishReason::Length);
      CHECK(evs.back().stats.n_generated == static_cast<int>(evs.size()));
    }
    CHECK_FALSE(e.cancel(id));  // finished: nothing to cancel
  }
  // A cancel that comes too late (the request finished first) is a no-op.
  CHECK(n_cancelled <= cancelled_ok.load());
  CHECK(n_cancelled >= 1);
  CHECK(be.violations == 0);
  CHECK(e.metrics().kv.used == 0);
}

TEST_CASE("engine: cancel ends a waiting or running request at once and frees its blocks") {
  FakeBackend be(32, 16, 4);
  EngineConfig cfg;
  cfg.sched.max_num_seqs = 1;
  Engine e(be, cfg);
  EventQueue q;
  const RequestId a = e.submit(greedy({1, 2, 3, 4, 5}, 20), q.callback());
  const RequestId b = e.submit(greedy({6, 7}, 20), q.callback());
  e.step();
  e.step();
  EngineMetrics m = e.metrics();
  CHECK(m.running == 1);
  CHECK(m.waiting == 1);
  CHECK(m.kv.used == 2);
  CHECK(e.cancel(a));  // running
  CHECK(e.cancel(b));  // waiting
  CHECK(e.cancel(b));  // not yet processed: still unfinished
  CHECK_FALSE(e.cancel(999));
  CHECK_FALSE(e.step());
  m = e.metrics();
  CHECK(m.running + m.waiting == 0);
  CHECK(m.kv.used == 0);
  CHECK(m.requests_finished == 2);
  std::vector<TokenEvent> evs;
  while (auto ev = q.try_pop()) evs.push_back(*ev);
  REQUIRE(evs.size() == 4);  // a's two tokens, a cancelled, b cancelled
  CHECK(evs[2].id == a);
  CHECK(evs[2].finish_reason == FinishReason::Cancelled);
  CHECK(evs[2].stats.n_generated == 2);
  CHECK(evs[3].id == b);
  CHECK(evs[3].finish_reason == FinishReason::Cancelled);
  CHECK_FALSE(e.cancel(a));
}

TEST_CASE("engine: destroying the engine cancels what is left") {
  FakeBackend be(32, 16, 4);
  EngineConfig cfg;
  EventQueue q;
  {
    Engine e(be, cfg);
    e.submit(greedy({1, 2}, 50), q.callback());
    e.submit(greedy({3}, 50), q.callback());
    e.step();
  }
  int finals = 0;
  while (auto ev = q.try_pop())
    if (ev->finished) {
      ++finals;
      CHECK(ev->finish_reason == FinishReason::Cancelled);
    }
  CHECK(finals == 2);
}

// --- the real CPU backend ---------------------------------------------------------

namespace {

// A synthetic qwen2-shaped model (biases, tied output, GQA, NeoX RoPE) with random f32
// weights, small enough for CI; stories260K covers the llama side.
std::string write_tiny_qwen2() {
  const std::string path = test::temp_path("tiny-qwen2.gguf");
  const int64_t E = 48, L = 2, H = 6, HKV = 2, D = 8, F = 96, V = 160;
  GgufWriter w;
  w.set_string("general.architecture", "qwen2");
  w.set_string("general.name", "engine-test tiny qwen2");
  w.set_u32("qwen2.context_length", 1024);
  w.set_u32("qwen2.embedding_length", E);
  w.set_u32("qwen2.block_count", L);
  w.set_u32("qwen2.feed_forward_length", F);
  w.set_u32("qwen2.attention.head_count", H);
  w.set_u32("qwen2.attention.head_count_kv", HKV);
  w.set_f32("qwen2.attention.layer_norm_rms_epsilon", 1e-6f);
  w.set_f32("qwen2.rope.freq_base", 1e6f);
  struct T {
    std::string name;
    std::vector<int64_t> shape;
    float scale, offset;
  };
  std::vector<T> ts = {{"token_embd.weight", {E, V}, 1.0f, 0},
                       {"output_norm.weight", {E}, 0.2f, 1}};
  for (int l = 0; l < L; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    const float s = 1.0f / std::sqrt(float(E));
    ts.push_back({p + "attn_norm.weight", {E}, 0.2f, 1});
    ts.push_back({p + "attn_q.weight", {E, H * D}, s, 0});
    ts.push_back({p + "attn_k.weight", {E, HKV * D}, s, 0});
    ts.push_back({p + "attn_v.weight", {E, HKV * D}, s, 0});
    ts.push_back({p + "attn_q.bias", {H * D}, 0.1f, 0});
    ts.push_back({p + "attn_k.bias", {HKV * D}, 0.1f, 0});
    ts.push_back({p + "attn_v.bias", {HKV * D}, 0.1f, 0});
    ts.push_back({p + "attn_output.weight", {H * D, E}, s, 0});
    ts.push_back({p + "ffn_norm.weight", {E}, 0.2f, 1});
    ts.push_back({p + "ffn_gate.weight", {E, F}, s, 0});
    ts.push_back({p + "ffn_up.weight", {E, F}, s, 0});
    ts.push_back({p + "ffn_down.weight", {F, E}, 1.0f / std::sqrt(float(F)), 0});
  }
  for (const T& t : ts) w.add_tensor(t.name, DType::F32, t.shape);
  w.begin(path);
  std::mt19937 rng(2024);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (const T& t : ts) {
    int64_t n = 1;
    for (int64_t d : t.shape) n *= d;
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = t.offset + t.scale * nd(rng);
    w.write_tensor_data(v.data(), v.size() * sizeof(float));
  }
  w.finish();
  return path;
}

void check_batch_invariance(const Model& model, const std::vector<int32_t>& seed_text) {
  const int V = model.config.n_vocab;
  const std::vector<Request> reqs = invariance_requests(V, seed_text);
  BackendOptions roomy_opt;
  roomy_opt.n_threads = 2;
  roomy_opt.kv_tokens = 1024;
  CpuBackend roomy(model, roomy_opt);
  EngineConfig cfg;
  const std::vector<GenerationResult> alone = run_alone(roomy, cfg, reqs);

  BackendOptions tiny_opt = roomy_opt;
  tiny_opt.kv_tokens = 160;  // 10 blocks of 16 for 11 requests of up to ~100 tokens
  CpuBackend tiny(model, tiny_opt);
  cfg.sched.max_num_batched_tokens = 24;  // long prompts prefill in chunks
  cfg.sched.max_num_seqs = 8;
  Engine e(tiny, cfg);
  const std::vector<GenerationResult> together = e.generate_all(reqs);
  for (size_t i = 0; i < reqs.size(); ++i) {
    CAPTURE(i);
    CHECK(together[i].finish_reason == FinishReason::Length);
    CHECK(together[i].tokens == alone[i].tokens);
    CHECK(together[i].logprobs == alone[i].logprobs);
  }
  CHECK(together[10].tokens == together[4].tokens);
  CHECK(together[12].tokens == together[11].tokens);
  const EngineMetrics m = e.metrics();
  MESSAGE("preemptions " << m.preemptions << ", prefix hit rate " << m.prefix_hit_rate()
                         << ", steps " << m.steps);
  CHECK(m.preemptions > 0);
  CHECK(m.prefix_hit_tokens > 0);
  CHECK(m.kv.used == 0);
}

}  // namespace

TEST_CASE("engine: batch invariance on the CPU backend, stories260K") {
  const std::string path = test::shared_file("models/stories260K.gguf");
  const std::string ids = test::shared_file("models/stories260K.greedy200.ids");
  if (path.empty() || ids.empty()) LLM_SKIP("../shared/models/stories260K.* absent");
  const std::unique_ptr<Model> model = Model::load(path);
  // Real text for the shared prefixes: the golden greedy continuation of BOS.
  std::vector<int32_t> text;
  {
    std::istringstream in(test::read_text(ids));
    int32_t x;
    while (in >> x) text.push_back(x);
  }
  REQUIRE(text.size() == 201);

  // First, the engine alone reproduces the golden run.
  BackendOptions opt;
  opt.n_threads = 2;
  CpuBackend be(*model, opt);
  EngineConfig cfg;
  Engine e(be, cfg);
  const GenerationResult g = e.generate_all({greedy({1}, 200)})[0];
  CHECK(std::equal(g.tokens.begin(), g.tokens.end(), text.begin() + 1));

  check_batch_invariance(*model, text);
}

TEST_CASE("engine: batch invariance on the CPU backend, synthetic qwen2") {
  const std::unique_ptr<Model> model = Model::load(write_tiny_qwen2());
  REQUIRE(model->config.arch == Arch::Qwen2);
  REQUIRE(model->config.has_qkv_bias);
  REQUIRE(model->config.tied_output);
  std::mt19937 rng(5);
  check_batch_invariance(*model, random_tokens(rng, 40, 0, model->config.n_vocab - 1));
}

TEST_CASE("engine: batch invariance on the CPU backend, make-model tiny q4_0") {
  // The project's synthetic Llama test shape with quantized weights (2 of its 4 layers
  // keep the test quick).
  MakeModelOptions o;
  o.shape = "tiny";
  o.type = FileType::Q4_0;
  o.n_layers = 2;
  o.n_threads = 2;
  const std::string path = test::temp_path("tiny-q4_0.gguf");
  make_model(o, path);
  const std::unique_ptr<Model> model = Model::load(path);
  std::mt19937 rng(9);
  check_batch_invariance(*model, random_tokens(rng, 40, 3, model->config.n_vocab - 1));
}
