// The device selection of logit candidates (cuda/topk) against the CPU reference
// (select_candidates) on random rows with ties, -inf, NaN, +inf, huge negative values and
// signed zeros, for real vocabulary sizes; then CudaBackend::forward_candidates against
// forward() + the reference (decode graphs on and off, prefill rows, the row-range split),
// and the engine on the CUDA backend with and without candidates.
#include <doctest/doctest.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <fstream>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "cuda/backend_cuda.h"
#include "cuda/topk.h"
#include "cuda_test_util.h"
#include "engine/engine.h"
#include "engine/topk.h"
#include "test_util.h"

using namespace llm;
using namespace llm::test;

namespace {

const bool kHaveDevice = require_cuda_device();
constexpr float kInf = std::numeric_limits<float>::infinity();

std::vector<float> make_row(std::mt19937& rng, int V, int kind) {
  std::normal_distribution<float> nd(0.0f, 3.0f);
  std::uniform_int_distribution<int> pick(0, V - 1);
  std::vector<float> x(static_cast<size_t>(V));
  for (float& v : x) v = nd(rng);
  switch (kind % 8) {
    case 0:
      break;
    case 1:  // coarse: exact ties at every level, the top included
      for (float& v : x) v = std::round(v);
      break;
    case 2:  // every other token banned
      for (size_t i = 0; i < x.size(); i += 2) x[i] = -kInf;
      break;
    case 3: {  // only three finite: fewer than k, the rest -inf in id order
      std::vector<float> y(x.size(), -kInf);
      for (int j = 0; j < 3; ++j) y[static_cast<size_t>(pick(rng))] = nd(rng);
      x = y;
      break;
    }
    case 4:  // NaN (never chosen) and +inf (largest)
      for (int j = 0; j < std::max(1, V / 40); ++j) x[static_cast<size_t>(pick(rng))] = NAN;
      x[static_cast<size_t>(pick(rng))] = kInf;
      x[static_cast<size_t>(pick(rng))] = kInf;
      x[static_cast<size_t>(pick(rng))] = FLT_MAX;
      break;
    case 5:  // very negative values; signed zeros tied at the top
      for (float& v : x) v = -1e30f + v * 1e28f;
      for (int j = 0; j < 100; ++j) x[static_cast<size_t>(pick(rng))] = -FLT_MAX;
      for (int j = 0; j < 5; ++j) x[static_cast<size_t>(pick(rng))] = (j % 2) ? 0.0f : -0.0f;
      break;
    case 6: {  // every logit -inf but the last token
      std::fill(x.begin(), x.end(), -kInf);
      x.back() = -3.0f;
      break;
    }
    case 7:  // one value for the whole row: the k lowest ids
      std::fill(x.begin(), x.end(), 1.25f);
      break;
  }
  return x;
}

void check_against_reference(int V, int n_rows, int k, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<float> rows;
  for (int r = 0; r < n_rows; ++r) {
    const std::vector<float> x = make_row(rng, V, r);
    rows.insert(rows.end(), x.begin(), x.end());
  }
  Dev<float> dl(rows);
  Dev<int32_t> ids(static_cast<size_t>(n_rows) * k);
  Dev<float> vals(static_cast<size_t>(n_rows) * k);
  Dev<CandidateStats> st(static_cast<size_t>(n_rows));
  cuda::DeviceBuffer ws(cuda::candidates_workspace_bytes(n_rows, V));
  cuda::check(cudaMemset(ws.get(), 0xff, ws.size()), "poison workspace");
  cuda::select_candidates(dl.p(), n_rows, V, k, ws.get(), ids.p(), vals.p(), st.p(), nullptr);
  const std::vector<int32_t> gi = ids.get();
  const std::vector<float> gv = vals.get();
  const std::vector<CandidateStats> gs = st.get();

  LogitCandidates ref;
  select_candidates_rows(rows.data(), n_rows, V, k, ref);
  for (int r = 0; r < n_rows; ++r) {
    CAPTURE(V);
    CAPTURE(k);
    CAPTURE(r);
    const size_t o = static_cast<size_t>(r) * k;
    const std::vector<int32_t> want_i(ref.ids.begin() + o, ref.ids.begin() + o + k);
    const std::vector<int32_t> got_i(gi.begin() + o, gi.begin() + o + k);
    CHECK(got_i == want_i);
    bool vals_equal = true;  // == : -0 and +0 compare equal, -inf equals -inf
    for (int j = 0; j < k; ++j) vals_equal = vals_equal && gv[o + j] == ref.logits[o + j];
    CHECK(vals_equal);
    const CandidateStats& a = gs[static_cast<size_t>(r)];
    const CandidateStats& b = ref.stats[static_cast<size_t>(r)];
    CHECK(a.max == b.max);
    CHECK(a.n_finite == b.n_finite);
    if (b.max > -kInf) {
      CHECK(std::fabs(a.lse - b.lse) <= 2e-6 * std::max(1.0, std::fabs(b.lse)));
    } else {
      CHECK(a.lse == -static_cast<double>(kInf));
    }
  }
}

}  // namespace

TEST_CASE("cuda topk: the device selection equals the CPU reference") {
  for (int V : {512, 32000, 128256, 151936}) {
    for (int k : {1, 7, 40, 64}) check_against_reference(V, 8, k, static_cast<uint32_t>(V + k));
  }
  // Edge shapes: one token, a last chunk of one logit, chunks longer than 4096 (a
  // vocabulary beyond 64 chunks), and one that needs opted-in shared memory.
  check_against_reference(1, 3, 1, 1);
  check_against_reference(63, 8, 63, 2);
  check_against_reference(4097, 8, 64, 3);
  check_against_reference(300000, 8, 64, 4);
  check_against_reference(1000000, 3, 64, 5);
}

TEST_CASE("cuda topk: a k outside 1..64 is an llm::Error") {
  Dev<float> dl(std::vector<float>(100, 1.0f));
  Dev<int32_t> ids(100);
  Dev<float> vals(100);
  Dev<CandidateStats> st(1);
  cuda::DeviceBuffer ws(cuda::candidates_workspace_bytes(1, 100));
  CHECK_THROWS_AS(
      cuda::select_candidates(dl.p(), 1, 100, 65, ws.get(), ids.p(), vals.p(), st.p(), nullptr),
      Error);
  CHECK_THROWS_AS(
      cuda::select_candidates(dl.p(), 1, 100, 0, ws.get(), ids.p(), vals.p(), st.p(), nullptr),
      Error);
  CHECK_THROWS_AS(
      cuda::select_candidates(dl.p(), 1, 10, 11, ws.get(), ids.p(), vals.p(), st.p(), nullptr),
      Error);
}

namespace {

std::vector<int32_t> linear_blocks(int first, int n) {
  std::vector<int32_t> b(static_cast<size_t>(n));
  std::iota(b.begin(), b.end(), first);
  return b;
}

BackendOptions gpu_options() {
  BackendOptions o;
  o.device = DeviceKind::Cuda;
  o.block_size = 16;
  o.kv_tokens = 4096;
  o.verbose = false;
  return o;
}

// forward_candidates(b, k) against forward(b) followed by the reference selection: the
// same logits reach both (the batch rewrites the same K/V), so ids and logits are equal.
void check_backend_step(cuda::CudaBackend& be, const Batch& b, int k) {
  const int V = be.config().n_vocab;
  std::vector<float> logits(static_cast<size_t>(b.n_logits()) * V);
  be.forward(b, logits.data());
  LogitCandidates ref, got;
  select_candidates_rows(logits.data(), b.n_logits(), V, k, ref);
  be.forward_candidates(b, k, got);
  REQUIRE(got.n_rows() == b.n_logits());
  CHECK(got.k == k);
  CHECK(got.ids == ref.ids);
  CHECK(got.logits == ref.logits);
  for (int r = 0; r < got.n_rows(); ++r) {
    CAPTURE(r);
    CHECK(got.stats[static_cast<size_t>(r)].max == ref.stats[static_cast<size_t>(r)].max);
    CHECK(got.stats[static_cast<size_t>(r)].n_finite == ref.stats[static_cast<size_t>(r)].n_finite);
    CHECK(std::fabs(got.stats[static_cast<size_t>(r)].lse - ref.stats[static_cast<size_t>(r)].lse) <
          1e-5);
  }
}

}  // namespace

TEST_CASE("cuda topk: CudaBackend::forward_candidates equals forward + the reference") {
  const std::string m = shared_file("models/stories260K.gguf");
  if (m.empty()) LLM_SKIP("../shared/models/stories260K.gguf absent");
  auto model = Model::load(m);
  for (bool graphs : {true, false}) {
    CAPTURE(graphs);
    cuda::CudaBackend be(*model, gpu_options());
    be.set_graphs(graphs);
    // Decode steps of 1, 3 and 9 sequences (graph buckets 1, 4, 16: padding rows after).
    for (int n : {1, 3, 9}) {
      Batch b;
      for (int s = 0; s < n; ++s) {
        const int32_t tok = 10 + 37 * s;
        b.add_sequence(&tok, 1, 0, linear_blocks(s, 1), 16, true);
      }
      for (int k : {1, 20, 64}) check_backend_step(be, b, k);
    }
  }
  // Prefill with a logit row for every third token, in the GEMM path.
  cuda::CudaBackend be(*model, gpu_options());
  std::vector<int32_t> prompt(400);
  for (int i = 0; i < 400; ++i) prompt[static_cast<size_t>(i)] = (i * 7919) % 500 + 3;
  Batch b;
  b.add_sequence(prompt.data(), 200, 0, linear_blocks(0, 13), 16, false);
  for (int i = 0; i < 200; i += 3) b.logit_rows.push_back(i);
  check_backend_step(be, b, 33);
  // More rows (2400) than the buffers hold (2048): consecutive row ranges, the forward's
  // split path, with every row's candidates.
  Batch big;
  for (int s = 0; s < 6; ++s)
    big.add_sequence(prompt.data(), 400, 0, linear_blocks(25 * s, 25), 16, false);
  for (int r = 0; r < big.n_tokens(); ++r) big.logit_rows.push_back(r);
  check_backend_step(be, big, 5);
}

TEST_CASE("cuda topk: the engine on the CUDA backend gives the same tokens either way") {
  const std::string m = shared_file("models/stories260K.gguf");
  if (m.empty()) LLM_SKIP("../shared/models/stories260K.gguf absent");
  auto model = Model::load(m);
  cuda::CudaBackend be(*model, gpu_options());
  const int V = model->config.n_vocab;
  std::mt19937 rng(3);
  std::vector<Request> reqs;
  for (int i = 0; i < 24; ++i) {
    Request r;
    for (int j = 0; j < 1 + i % 9; ++j)
      r.prompt.push_back(std::uniform_int_distribution<int>(1, V - 1)(rng));
    r.stop.max_tokens = 40;
    r.stop.ignore_eos = true;
    r.sampling.seed = 900 + static_cast<uint64_t>(i);
    if (i % 3 == 0) r.sampling.temperature = 0;
    if (i % 4 == 1) r.n_logprobs = 4;
    if (i % 5 == 2) r.sampling.top_k = 64;
    reqs.push_back(r);
  }
  std::vector<std::vector<GenerationResult>> res;
  std::vector<EngineMetrics> ms;
  for (bool cand : {false, true}) {
    EngineConfig cfg;
    cfg.logit_candidates = cand;
    Engine e(be, cfg);
    res.push_back(e.generate_all(reqs));
    ms.push_back(e.metrics());
  }
  CHECK(ms[0].candidate_steps == 0);
  CHECK(ms[1].candidate_steps > 0);
  for (size_t i = 0; i < reqs.size(); ++i) {
    CAPTURE(i);
    CHECK(res[0][i].tokens == res[1][i].tokens);
    REQUIRE(res[0][i].logprobs.size() == res[1][i].logprobs.size());
    for (size_t t = 0; t < res[0][i].logprobs.size(); ++t)
      CHECK(std::fabs(res[0][i].logprobs[t] - res[1][i].logprobs[t]) < 1e-5);
    REQUIRE(res[0][i].top.size() == res[1][i].top.size());
    for (size_t t = 0; t < res[0][i].top.size(); ++t)
      for (size_t j = 0; j < res[0][i].top[t].size(); ++j)
        CHECK(res[0][i].top[t][j].id == res[1][i].top[t][j].id);
  }
}
