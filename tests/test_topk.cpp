// Logit candidates (engine/topk.h): the reference selection against an independent full
// sort; Sampler::sample_candidates against Sampler::sample on the full rows (same tokens,
// logprobs and top logprobs, bit for bit, over many parameter sets and awkward rows:
// ties, -inf, NaN, +inf, -0); deliberately wrong selections are caught by the same
// comparison; and the engine gives the same outputs with candidates as with full logits
// on stories260K, make-model tiny (llama, qwen2) and a fake backend with heavy ties.
#include <doctest/doctest.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <limits>
#include <numeric>
#include <random>
#include <sstream>

#include "engine/backend_cpu.h"
#include "engine/convert.h"
#include "engine/engine.h"
#include "engine/error.h"
#include "engine/model.h"
#include "engine/sampler.h"
#include "engine/topk.h"
#include "test_util.h"

using namespace llm;

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// Rows that stress the selection: plain normal logits, coarse values (many ties), rows
// with a -inf tail or only a few finite entries, NaN, +inf, and -0 next to +0.
std::vector<float> make_row(std::mt19937& rng, int V, int kind) {
  std::normal_distribution<float> nd(0.0f, 2.0f);
  std::uniform_int_distribution<int> pick(0, V - 1);
  std::vector<float> x(static_cast<size_t>(V));
  for (float& v : x) v = nd(rng);
  switch (kind % 7) {
    case 0:
      break;
    case 1:  // ties everywhere: 9 distinct values
      for (float& v : x) v = std::round(v * 1.0f);
      break;
    case 2:  // half banned
      for (size_t i = 0; i < x.size(); i += 2) x[i] = -kInf;
      break;
    case 3: {  // only a handful finite (fewer than most k)
      std::vector<float> y(x.size(), -kInf);
      for (int j = 0; j < std::min(V, 5); ++j) y[static_cast<size_t>(pick(rng))] = nd(rng);
      x = y;
      break;
    }
    case 4:  // NaN and +inf
      for (int j = 0; j < std::max(1, V / 50); ++j) x[static_cast<size_t>(pick(rng))] = NAN;
      x[static_cast<size_t>(pick(rng))] = kInf;
      x[static_cast<size_t>(pick(rng))] = kInf;
      break;
    case 5:  // signed zeros tied at the top, ties at several levels
      for (float& v : x) v = std::min(v, -1.0f);
      for (int j = 0; j < 6; ++j) x[static_cast<size_t>(pick(rng))] = (j % 2) ? 0.0f : -0.0f;
      for (int j = 0; j < 80 && j < V; ++j) x[static_cast<size_t>(pick(rng))] = -1.5f;
      break;
    case 6:  // a peaked row, like a trained model's
      x[static_cast<size_t>(pick(rng))] = 15.0f;
      break;
  }
  return x;
}

// The selection written out the slow way: sanitise, sort every id by (logit desc, id asc).
struct Naive {
  std::vector<int32_t> ids;
  std::vector<float> logits;
  float max;
  int n_finite;
  long double lse;
};
Naive naive_select(const std::vector<float>& row, int k) {
  std::vector<float> s(row);
  for (float& v : s) {
    if (std::isnan(v)) v = -kInf;
    if (v == kInf) v = FLT_MAX;
  }
  std::vector<int32_t> order(s.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return s[a] > s[b]; });
  Naive n;
  for (int j = 0; j < k; ++j) {
    n.ids.push_back(order[static_cast<size_t>(j)]);
    n.logits.push_back(s[static_cast<size_t>(order[static_cast<size_t>(j)])]);
  }
  n.max = s[static_cast<size_t>(order[0])];
  n.n_finite =
      static_cast<int>(std::count_if(s.begin(), s.end(), [](float v) { return v > -kInf; }));
  long double sum = 0;
  for (float v : s) sum += std::exp(static_cast<long double>(v) - n.max);
  n.lse = n.max + std::log(sum);
  return n;
}

using Selector = std::function<void(const std::vector<float>&, int, std::vector<int32_t>&,
                                    std::vector<float>&, CandidateStats&)>;

void reference_selector(const std::vector<float>& row, int k, std::vector<int32_t>& ids,
                        std::vector<float>& logits, CandidateStats& st) {
  ids.resize(static_cast<size_t>(k));
  logits.resize(static_cast<size_t>(k));
  select_candidates(row.data(), static_cast<int>(row.size()), k, ids.data(), logits.data(), &st);
}

struct ParamSet {
  float temperature;
  int top_k;
  float top_p;
  float min_p;
  int n_probs;
};

std::vector<ParamSet> param_grid(int V) {
  std::vector<ParamSet> g;
  for (float t : {0.0f, 0.7f, 1.0f, 1.6f})
    for (int tk : {1, 5, 40, 64, 0})
      for (float tp : {1.0f, 0.9f, 0.5f})
        for (float mp : {0.0f, 0.05f, 0.3f}) {
          if (tk == 0 && V > kMaxCandidates) continue;  // needs the whole vocabulary
          if (t == 0.0f && (tk != 1 || tp != 1.0f || mp != 0.0f)) continue;  // greedy once
          g.push_back({t, tk, tp, mp, static_cast<int>(g.size() % 4) * 3});
        }
  return g;
}

// Samples `rows` with sample() on the full row and with sample_candidates() on what
// `select` returns (k per row: the sampler's need, and more), from two samplers of one
// seed; returns how many results differ in token, logprob or top logprobs.
int count_mismatches(const std::vector<std::vector<float>>& rows, const ParamSet& ps, uint64_t seed,
                     const Selector& select, int extra_k) {
  const int V = static_cast<int>(rows[0].size());
  SamplingParams p;
  p.temperature = ps.temperature;
  p.top_k = ps.top_k;
  p.top_p = ps.top_p;
  p.min_p = ps.min_p;
  p.n_probs = ps.n_probs;
  p.seed = seed;
  Sampler full(p, V), cand(p, V);
  const int need = cand.candidates_needed();
  REQUIRE(need >= 1);
  const int k = std::min({need + extra_k, kMaxCandidates, V});
  REQUIRE(k >= need);
  int bad = 0;
  std::vector<int32_t> ids;
  std::vector<float> logits;
  for (const std::vector<float>& row : rows) {
    bool a_threw = false, b_threw = false;
    SampleResult a, b;
    try {
      a = full.sample(row.data());
    } catch (const Error&) {
      a_threw = true;
    }
    CandidateStats st;
    select(row, k, ids, logits, st);
    try {
      b = cand.sample_candidates(ids.data(), logits.data(), k, st);
    } catch (const Error&) {
      b_threw = true;
    }
    if (a_threw || b_threw) {
      bad += a_threw != b_threw;
      continue;
    }
    bool same = a.id == b.id && a.logprob == b.logprob && a.top.size() == b.top.size();
    for (size_t j = 0; same && j < a.top.size(); ++j)
      same = a.top[j].id == b.top[j].id && a.top[j].logprob == b.top[j].logprob;
    bad += !same;
  }
  return bad;
}

std::vector<std::vector<float>> row_set(int V, uint32_t seed, int n) {
  std::mt19937 rng(seed);
  std::vector<std::vector<float>> rows;
  for (int i = 0; i < n; ++i) rows.push_back(make_row(rng, V, i));
  return rows;
}

}  // namespace

TEST_CASE("topk: the reference selection equals a full sort; lse as the sampler's") {
  std::mt19937 rng(1);
  for (int V : {1, 7, 64, 65, 512, 5000, 32000}) {
    for (int kind = 0; kind < 7; ++kind) {
      const std::vector<float> row = make_row(rng, V, kind);
      for (int k : {1, 2, 20, 63, 64}) {
        if (k > V) continue;
        CAPTURE(V);
        CAPTURE(kind);
        CAPTURE(k);
        std::vector<int32_t> ids(static_cast<size_t>(k));
        std::vector<float> logits(static_cast<size_t>(k));
        CandidateStats st;
        select_candidates(row.data(), V, k, ids.data(), logits.data(), &st);
        const Naive n = naive_select(row, k);
        CHECK(ids == n.ids);
        CHECK(logits == n.logits);
        CHECK(st.max == n.max);
        CHECK(st.n_finite == n.n_finite);
        if (n.max > -kInf) CHECK(std::fabs(static_cast<long double>(st.lse) - n.lse) < 1e-6L);
      }
    }
  }
  // k beyond kMaxCandidates works in the reference (for tests of other selections).
  const std::vector<float> row = make_row(rng, 300, 1);
  std::vector<int32_t> ids(200);
  std::vector<float> logits(200);
  CandidateStats st;
  select_candidates(row.data(), 300, 200, ids.data(), logits.data(), &st);
  CHECK(ids == naive_select(row, 200).ids);
}

TEST_CASE("topk: the sampler's logprob uses the selection's lse bit for bit") {
  // A greedy sampler reports logit[best] - lse: equal floats only if lse is the same double.
  std::mt19937 rng(2);
  for (int i = 0; i < 40; ++i) {
    const std::vector<float> row = make_row(rng, 3000, i);
    if (i % 7 == 3) continue;  // may be all -inf but five
    SamplingParams p;
    p.temperature = 0;
    p.n_probs = 5;
    Sampler s(p, 3000);
    const SampleResult r = s.sample(row.data());
    int32_t ids[5];
    float logits[5];
    CandidateStats st;
    select_candidates(row.data(), 3000, 5, ids, logits, &st);
    CHECK(r.id == ids[0]);
    CHECK(r.logprob == static_cast<float>(logits[0] - st.lse));
    for (int j = 0; j < 5; ++j)
      CHECK(r.top[static_cast<size_t>(j)].logprob == static_cast<float>(logits[j] - st.lse));
  }
}

TEST_CASE("topk: candidates_needed says when candidates are exact") {
  SamplingParams p;
  p.temperature = 0;
  CHECK(Sampler(p, 1000).candidates_needed() == 1);
  p.n_probs = 7;
  CHECK(Sampler(p, 1000).candidates_needed() == 7);
  p.temperature = 0.8f;
  p.top_k = 40;
  CHECK(Sampler(p, 1000).candidates_needed() == 40);
  p.top_k = 0;  // no top-k: the whole vocabulary
  CHECK(Sampler(p, 1000).candidates_needed() == 1000);
  CHECK(Sampler(p, 30).candidates_needed() == 30);
  p.top_k = 100;
  CHECK(Sampler(p, 30).candidates_needed() == 30);
  p.top_k = 40;
  SamplingParams q = p;
  q.repeat_penalty = 1.1f;
  CHECK(Sampler(q, 1000).candidates_needed() == 0);
  q.repeat_last_n = 0;  // a window of nothing: no penalty
  CHECK(Sampler(q, 1000).candidates_needed() == 40);
  q = p;
  q.presence_penalty = 0.5f;
  CHECK(Sampler(q, 1000).candidates_needed() == 0);
  q = p;
  q.frequency_penalty = 0.5f;
  CHECK(Sampler(q, 1000).candidates_needed() == 0);
  q = p;
  q.logit_bias = {{3, 1.0f}};
  CHECK(Sampler(q, 1000).candidates_needed() == 0);
}

TEST_CASE("topk: sample_candidates gives sample()'s tokens, logprobs and top logprobs") {
  int cases = 0;
  for (int V : {40, 64, 512, 5000}) {
    const std::vector<std::vector<float>> rows = row_set(V, 100 + static_cast<uint32_t>(V), 28);
    const std::vector<ParamSet> grid = param_grid(V);
    for (size_t g = 0; g < grid.size(); ++g) {
      const ParamSet& ps = grid[g];
      for (int extra : {0, 3, kMaxCandidates}) {
        CAPTURE(V);
        CAPTURE(ps.temperature);
        CAPTURE(ps.top_k);
        CAPTURE(ps.top_p);
        CAPTURE(ps.min_p);
        CAPTURE(ps.n_probs);
        CAPTURE(extra);
        CHECK(count_mismatches(rows, ps, 1000 + g, reference_selector, extra) == 0);
        ++cases;
      }
    }
  }
  MESSAGE(cases << " parameter sets x 28 rows");
}

TEST_CASE("topk: top_k == k with more finite logits than k") {
  // The case CandidateStats::n_finite decides: the k candidates are all the survivors of
  // top-k either way, and the full row reaches top-p in best-first order, which the
  // candidates path reproduces (only the rounding of top-p's total depends on it, which
  // these rows do not expose; the tokens and logprobs must match regardless).
  const int V = 2000;
  std::mt19937 rng(9);
  std::vector<std::vector<float>> rows;
  for (int i = 0; i < 200; ++i) rows.push_back(make_row(rng, V, 0));
  const ParamSet ps{1.3f, 64, 0.8f, 0.0f, 0};
  CHECK(count_mismatches(rows, ps, 5, reference_selector, 0) == 0);
}

TEST_CASE("topk: wrong selections are caught by the comparison") {
  const int V = 512;
  const std::vector<std::vector<float>> rows = row_set(V, 77, 56);
  // Ties broken by the higher id.
  const Selector ties_high = [](const std::vector<float>& row, int k, std::vector<int32_t>& ids,
                                std::vector<float>& logits, CandidateStats& st) {
    std::vector<float> rev(row.rbegin(), row.rend());
    reference_selector(rev, k, ids, logits, st);
    for (int32_t& id : ids) id = static_cast<int32_t>(row.size()) - 1 - id;
  };
  // Best-first order reversed.
  const Selector reversed = [](const std::vector<float>& row, int k, std::vector<int32_t>& ids,
                               std::vector<float>& logits, CandidateStats& st) {
    reference_selector(row, k, ids, logits, st);
    std::reverse(ids.begin(), ids.end());
    std::reverse(logits.begin(), logits.end());
  };
  // The k-th candidate replaced by the (k+1)-th.
  const Selector off_by_one = [](const std::vector<float>& row, int k, std::vector<int32_t>& ids,
                                 std::vector<float>& logits, CandidateStats& st) {
    reference_selector(row, k + 1, ids, logits, st);
    ids.erase(ids.end() - 2);
    logits.erase(logits.end() - 2);
  };
  // lse in float.
  const Selector float_lse = [](const std::vector<float>& row, int k, std::vector<int32_t>& ids,
                                std::vector<float>& logits, CandidateStats& st) {
    reference_selector(row, k, ids, logits, st);
    st.lse = static_cast<float>(st.lse);
  };
  const ParamSet greedy{0.0f, 1, 1.0f, 0.0f, 5};
  const ParamSet topk{1.0f, 20, 1.0f, 0.0f, 0};
  CHECK(count_mismatches(rows, greedy, 1, reference_selector, 0) == 0);
  CHECK(count_mismatches(rows, topk, 1, reference_selector, 0) == 0);
  CHECK(count_mismatches(rows, greedy, 1, ties_high, 0) > 0);
  CHECK(count_mismatches(rows, topk, 1, ties_high, 0) > 0);
  CHECK(count_mismatches(rows, greedy, 1, reversed, 0) > 0);
  CHECK(count_mismatches(rows, topk, 1, off_by_one, 0) > 0);
  CHECK(count_mismatches(rows, greedy, 1, float_lse, 0) > 0);
}

// --- the engine ------------------------------------------------------------------

namespace {

// Logits from (token, position) of the row only, coarse (many exact ties, also at the
// top) with a band of banned tokens: ties and -inf through the whole engine path.
class TieBackend : public Backend {
 public:
  explicit TieBackend(int n_vocab) {
    cfg_.n_vocab = n_vocab;
    cfg_.n_ctx_train = 4096;
  }
  std::string name() const override { return "ties"; }
  const ModelConfig& config() const override { return cfg_; }
  int block_size() const override { return 16; }
  int kv_blocks() const override { return 64; }
  void copy_kv_block(int, int) override {}
  void forward(const Batch& b, float* logits) override {
    for (int i = 0; i < b.n_logits(); ++i) {
      const int r = b.logit_rows[static_cast<size_t>(i)];
      uint64_t x = static_cast<uint64_t>(b.tokens[static_cast<size_t>(r)]) * 1315423911ull +
                   static_cast<uint64_t>(b.positions[static_cast<size_t>(r)]) * 2654435761ull;
      float* out = logits + static_cast<size_t>(i) * cfg_.n_vocab;
      for (int v = 0; v < cfg_.n_vocab; ++v) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        out[v] = static_cast<float>((x >> 33) % 7);  // 0..6
        if ((x >> 40) % 9 == 0) out[v] = -kInf;
      }
    }
  }
  int candidate_calls = 0;
  void forward_candidates(const Batch& b, int k, LogitCandidates& out) override {
    ++candidate_calls;
    Backend::forward_candidates(b, k, out);
  }

 private:
  ModelConfig cfg_;
};

Request make_request(std::vector<int32_t> prompt, int max_tokens, int variant, uint64_t seed) {
  Request r;
  r.prompt = std::move(prompt);
  r.stop.max_tokens = max_tokens;
  r.stop.ignore_eos = true;
  r.sampling.seed = seed;
  switch (variant % 6) {
    case 0:
      r.sampling.temperature = 0;
      break;
    case 1:
      r.n_logprobs = 5;
      break;  // the defaults: t 0.8, top-k 40, top-p 0.95, min-p 0.05
    case 2:
      r.sampling.temperature = 0;
      r.n_logprobs = 3;
      break;
    case 3:
      r.sampling.temperature = 1.2f;
      r.sampling.top_k = 64;
      r.sampling.top_p = 1.0f;
      r.sampling.min_p = 0.0f;
      break;
    case 4:
      r.sampling.temperature = 0.6f;
      r.sampling.top_k = 5;
      r.sampling.top_p = 0.7f;
      r.n_logprobs = 2;
      break;
    case 5:
      r.sampling.temperature = 1.0f;
      r.sampling.top_k = 1;
      break;
  }
  return r;
}

std::vector<Request> mixed_requests(int n_vocab, int n, int max_tokens) {
  std::mt19937 rng(42);
  std::vector<Request> reqs;
  for (int i = 0; i < n; ++i) {
    std::vector<int32_t> p;
    const int len = 1 + (7 * i) % 19;
    for (int j = 0; j < len; ++j)
      p.push_back(std::uniform_int_distribution<int>(1, n_vocab - 1)(rng));
    reqs.push_back(make_request(p, max_tokens, i, 500 + static_cast<uint64_t>(i)));
  }
  return reqs;
}

struct ModeRun {
  std::vector<GenerationResult> res;
  EngineMetrics m;
};
ModeRun run_mode(Backend& be, const std::vector<Request>& reqs, bool candidates) {
  EngineConfig cfg;
  cfg.logit_candidates = candidates;
  cfg.sched.max_num_batched_tokens = 64;
  Engine e(be, cfg);
  ModeRun r;
  r.res = e.generate_all(reqs);
  r.m = e.metrics();
  return r;
}

void check_same(const ModeRun& a, const ModeRun& b) {
  REQUIRE(a.res.size() == b.res.size());
  for (size_t i = 0; i < a.res.size(); ++i) {
    CAPTURE(i);
    CHECK(a.res[i].finish_reason == b.res[i].finish_reason);
    CHECK(a.res[i].tokens == b.res[i].tokens);
    CHECK(a.res[i].logprobs == b.res[i].logprobs);
    REQUIRE(a.res[i].top.size() == b.res[i].top.size());
    for (size_t t = 0; t < a.res[i].top.size(); ++t) {
      REQUIRE(a.res[i].top[t].size() == b.res[i].top[t].size());
      for (size_t j = 0; j < a.res[i].top[t].size(); ++j) {
        CHECK(a.res[i].top[t][j].id == b.res[i].top[t][j].id);
        CHECK(a.res[i].top[t][j].logprob == b.res[i].top[t][j].logprob);
      }
    }
  }
}

// Both modes on one backend: identical results, and the candidates run really used them.
void check_modes(Backend& be, const std::vector<Request>& reqs) {
  const ModeRun full = run_mode(be, reqs, false);
  const ModeRun cand = run_mode(be, reqs, true);
  CHECK(full.m.candidate_steps == 0);
  CHECK(cand.m.candidate_steps == cand.m.steps);
  CHECK(cand.m.steps > 0);
  check_same(full, cand);
}

}  // namespace

TEST_CASE("topk: engine outputs equal with and without candidates, ties backend") {
  for (int V : {48, 1000}) {
    CAPTURE(V);
    TieBackend be(V);
    std::vector<Request> reqs = mixed_requests(V, 12, 20);
    if (V > kMaxCandidates) {
      check_modes(be, reqs);
      CHECK(be.candidate_calls > 0);
    } else {
      // A vocabulary smaller than kMaxCandidates: even sampling without top-k is exact.
      for (Request& r : reqs) r.sampling.top_k = 0;
      check_modes(be, reqs);
    }
  }
}

TEST_CASE("topk: the engine falls back to full logits where candidates are not exact") {
  const int V = 1000;
  TieBackend be(V);
  std::vector<Request> reqs = mixed_requests(V, 6, 8);
  // A penalty, a bias, no top-k: each request alone forces full logits in its steps.
  std::vector<Request> one(1);
  for (int variant = 0; variant < 3; ++variant) {
    Request r = reqs[1];
    if (variant == 0) r.sampling.repeat_penalty = 1.1f;
    if (variant == 1) r.sampling.logit_bias = {{5, 2.0f}};
    if (variant == 2) r.sampling.top_k = 0;
    const ModeRun full = run_mode(be, {r}, false);
    const ModeRun cand = run_mode(be, {r}, true);
    CHECK(cand.m.candidate_steps == 0);
    check_same(full, cand);
  }
  // Mixed with exact requests: the steps it takes part in fall back, the rest do not.
  Request pen = reqs[0];
  pen.sampling.repeat_penalty = 1.2f;
  pen.stop.max_tokens = 2;
  reqs.push_back(pen);
  const ModeRun full = run_mode(be, reqs, false);
  const ModeRun cand = run_mode(be, reqs, true);
  CHECK(cand.m.candidate_steps > 0);
  CHECK(cand.m.candidate_steps < cand.m.steps);
  check_same(full, cand);
}

TEST_CASE("topk: LLM_GPU_TOPK=0 turns candidates off") {
  TieBackend be(1000);
  const std::vector<Request> reqs = mixed_requests(1000, 3, 4);
  ::setenv("LLM_GPU_TOPK", "0", 1);
  const ModeRun off = run_mode(be, reqs, true);
  ::unsetenv("LLM_GPU_TOPK");
  const ModeRun on = run_mode(be, reqs, true);
  CHECK(off.m.candidate_steps == 0);
  CHECK(on.m.candidate_steps > 0);
  check_same(off, on);
}

TEST_CASE("topk: engine outputs equal with and without candidates, stories260K") {
  const std::string path = test::shared_file("models/stories260K.gguf");
  const std::string ids = test::shared_file("models/stories260K.greedy200.ids");
  if (path.empty() || ids.empty()) LLM_SKIP("../shared/models/stories260K.* absent");
  const std::unique_ptr<Model> model = Model::load(path);
  BackendOptions opt;
  opt.n_threads = 2;
  CpuBackend be(*model, opt);
  // The golden greedy run, through candidates.
  std::vector<int32_t> golden;
  {
    std::istringstream in(test::read_text(ids));
    int32_t x;
    while (in >> x) golden.push_back(x);
  }
  REQUIRE(golden.size() == 201);
  Request g = make_request({1}, 200, 0, 1);
  const ModeRun gr = run_mode(be, {g}, true);
  CHECK(gr.m.candidate_steps == gr.m.steps);
  CHECK(std::equal(gr.res[0].tokens.begin(), gr.res[0].tokens.end(), golden.begin() + 1));

  check_modes(be, mixed_requests(model->config.n_vocab, 12, 30));
}

TEST_CASE("topk: engine outputs equal with and without candidates, make-model tiny") {
  for (const char* shape : {"tiny", "tiny-qwen2"}) {
    CAPTURE(shape);
    MakeModelOptions o;
    o.shape = shape;
    o.type = FileType::F32;
    o.n_layers = 2;
    o.n_threads = 2;
    const std::string path = test::temp_path(std::string(shape) + "-topk.gguf");
    make_model(o, path);
    const std::unique_ptr<Model> model = Model::load(path);
    BackendOptions opt;
    opt.n_threads = 2;
    CpuBackend be(*model, opt);
    check_modes(be, mixed_requests(model->config.n_vocab, 8, 12));
    // Tensor-parallel ranks: rank 0 selects, the others run their shard.
    opt.tp = 2;
    const std::unique_ptr<Backend> tp = make_backend(*model, opt);
    check_modes(*tp, mixed_requests(model->config.n_vocab, 4, 8));
  }
}
