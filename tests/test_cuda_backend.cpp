// The CUDA backend end to end against the CPU backend: stories260K (a trained model)
// must decode the golden greedy run; synthetic F16 / Q8_0 / Q4_0 / Q4_K_M models, whose
// random weights give near-flat distributions, are compared teacher-forced: the logits of
// every position relative to their spread, and the top-1 wherever the CPU's margin is clear.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <numeric>
#include <random>
#include <vector>

#include "cuda/backend_cuda.h"
#include "cuda_test_util.h"
#include "engine/backend_cpu.h"
#include "engine/engine.h"
#include "engine/gguf.h"
#include "engine_test_util.h"
#include "invariance_test_util.h"
#include "quant/mix.h"
#include "quant/quants.h"
#include "test_util.h"

using namespace llm;
using namespace llm::test;

namespace {

const bool kHaveDevice = require_cuda_device();

int argmax(const float* v, int n) {
  return static_cast<int>(std::max_element(v, v + n) - v);
}

std::vector<int32_t> linear_blocks(int first, int n) {
  std::vector<int32_t> b(static_cast<size_t>(n));
  std::iota(b.begin(), b.end(), first);
  return b;
}

std::vector<int32_t> read_ids(const std::string& path) {
  std::ifstream f(path);
  std::vector<int32_t> ids;
  int32_t x;
  while (f >> x) ids.push_back(x);
  return ids;
}

BackendOptions gpu_options(int block_size = 16) {
  BackendOptions o;
  o.device = DeviceKind::Cuda;
  o.block_size = block_size;
  o.kv_tokens = 4096;
  o.verbose = false;
  return o;
}

// Per position: ||gpu - cpu|| / ||cpu - mean(cpu)|| (error relative to the logits' spread);
// the worst position, and how many clear-margin positions disagree on the top-1.
struct Agreement {
  double worst = 0;
  int top1_checked = 0, top1_wrong = 0;
};
Agreement compare_logits(const std::vector<float>& gpu, const std::vector<float>& cpu, int V,
                         double margin_frac) {
  Agreement a;
  const size_t n = cpu.size() / static_cast<size_t>(V);
  for (size_t p = 0; p < n; ++p) {
    const float* g = gpu.data() + p * V;
    const float* c = cpu.data() + p * V;
    double mean = 0;
    for (int i = 0; i < V; ++i) mean += c[i];
    mean /= V;
    double num = 0, den = 0;
    for (int i = 0; i < V; ++i) {
      if (!std::isfinite(g[i])) num = INFINITY;
      num += (static_cast<double>(g[i]) - c[i]) * (static_cast<double>(g[i]) - c[i]);
      den += (c[i] - mean) * (c[i] - mean);
    }
    a.worst = std::max(a.worst, std::sqrt(num / den));
    // Top-1 only where the CPU's best beats its second by margin_frac of the spread.
    std::vector<float> s(c, c + V);
    std::partial_sort(s.begin(), s.begin() + 2, s.end(), std::greater<float>());
    if (s[0] - s[1] > margin_frac * std::sqrt(den / V)) {
      ++a.top1_checked;
      if (argmax(g, V) != argmax(c, V)) ++a.top1_wrong;
    }
  }
  return a;
}

// N random tokens of the model's vocabulary (seeded) as one prompt in b, every row's logits
// wanted, and the CPU backend's logits of them.
std::vector<float> cpu_reference(const Model& model, int N, uint32_t seed,
                                 std::vector<int32_t>& toks, Batch& b) {
  const int V = model.config.n_vocab;
  std::mt19937 rng(seed);
  toks.assign(static_cast<size_t>(N), 0);
  for (int32_t& t : toks) t = static_cast<int32_t>(rng() % V);
  BackendOptions copt;
  copt.n_threads = 2;
  CpuBackend cpu(model, copt);
  b.clear();
  b.add_sequence(toks.data(), N, 0, linear_blocks(0, N / 16), 16, false);
  for (int i = 0; i < N; ++i) b.logit_rows.push_back(i);
  std::vector<float> ref(size_t(N) * V);
  cpu.forward(b, ref.data());
  return ref;
}

}  // namespace

TEST_CASE("cuda backend: stories260K greedy decode reproduces the golden 200 ids") {
  const std::string m = shared_file("models/stories260K.gguf"),
                    g = shared_file("models/stories260K.greedy200.ids");
  if (m.empty() || g.empty()) LLM_SKIP("../shared/models/stories260K.* absent");
  auto model = Model::load(m);
  const std::vector<int32_t> golden = read_ids(g);
  REQUIRE(golden.size() == 201);
  const int V = model->config.n_vocab;
  for (bool graphs : {true, false}) {
    CAPTURE(graphs);
    cuda::CudaBackend be(*model, gpu_options());
    be.set_graphs(graphs);
    const auto blocks = linear_blocks(0, 201 / 16 + 1);
    std::vector<float> logits(static_cast<size_t>(V));
    std::vector<int32_t> got = {1};
    Batch b;
    for (int step = 0; step < 200; ++step) {
      b.clear();
      b.add_sequence(&got.back(), 1, step, blocks, 16, true);
      be.forward(b, logits.data());
      got.push_back(argmax(logits.data(), V));
    }
    CHECK(got == golden);
  }
}

TEST_CASE("cuda backend: stories260K prefill and mixed batches agree with the CPU backend") {
  const std::string m = shared_file("models/stories260K.gguf"),
                    g = shared_file("models/stories260K.greedy200.ids");
  if (m.empty() || g.empty()) LLM_SKIP("../shared/models/stories260K.* absent");
  auto model = Model::load(m);
  const std::vector<int32_t> golden = read_ids(g);
  const int V = model->config.n_vocab;
  BackendOptions copt;
  copt.n_threads = 2;
  copt.block_size = 8;
  CpuBackend cpu(*model, copt);
  cuda::CudaBackend gpu(*model, gpu_options(8));

  // The golden run as one prompt: every row's logits.
  Batch b;
  b.add_sequence(golden.data(), 200, 0, linear_blocks(0, 25), 8, false);
  for (int i = 0; i < 200; ++i) b.logit_rows.push_back(i);
  std::vector<float> lc(size_t(200) * V), lg(size_t(200) * V);
  cpu.forward(b, lc.data());
  gpu.forward(b, lg.data());
  const Agreement a = compare_logits(lg, lc, V, 0.0);
  CAPTURE(a.worst);
  CHECK(a.worst < 2e-3);  // F32 weights; f16 KV cache and f16 GEMM operands
  CHECK(a.top1_wrong == 0);

  // Two sequences in one batch over interleaved blocks: A decodes from BOS while B is
  // prefilled with 40 tokens in the first step and then decodes.
  std::vector<int32_t> ba, bb;
  for (int i = 0; i < 26; ++i) {
    ba.push_back(100 + 2 * i);
    bb.push_back(101 + 2 * i);
  }
  std::vector<int32_t> sa = {1}, sb(golden.begin(), golden.begin() + 40);
  std::vector<float> out(size_t(2) * V);
  for (int step = 0; step < 100; ++step) {
    b.clear();
    b.add_sequence(&sa.back(), 1, int(sa.size()) - 1, ba, 8, true);
    if (step == 0)
      b.add_sequence(sb.data(), 40, 0, bb, 8, true);
    else
      b.add_sequence(&sb.back(), 1, int(sb.size()) - 1, bb, 8, true);
    gpu.forward(b, out.data());
    sa.push_back(argmax(out.data(), V));
    sb.push_back(argmax(out.data() + V, V));
  }
  CHECK(std::equal(sa.begin(), sa.end(), golden.begin()));
  CHECK(std::equal(sb.begin(), sb.end(), golden.begin()));

  // copy_kv_block: a copied block serves a second sequence like the original.
  gpu.copy_kv_block(100, 7);
  b.clear();
  std::vector<int32_t> blocks2 = ba;
  blocks2[0] = 7;
  b.add_sequence(&sa[8], 1, 8, blocks2, 8, true);  // position 8: reads block 0 (copied) and block 1
  std::vector<float> l1(V), l2(V);
  gpu.forward(b, l1.data());
  b.clear();
  b.add_sequence(&sa[8], 1, 8, ba, 8, true);
  gpu.forward(b, l2.data());
  CHECK(rel_err(l1, l2) < 1e-6);
}

TEST_CASE("cuda backend: malformed batches throw llm::Error") {
  const std::string m = shared_file("models/stories260K.gguf");
  if (m.empty()) LLM_SKIP("../shared/models/stories260K.gguf absent");
  auto model = Model::load(m);
  cuda::CudaBackend gpu(*model, gpu_options());
  std::vector<float> logits(static_cast<size_t>(model->config.n_vocab) * 2);
  Batch b;
  const int32_t bad_tok = 100000, tok = 1;
  b.add_sequence(&bad_tok, 1, 0, {0}, 16, true);
  CHECK_THROWS_AS(gpu.forward(b, logits.data()), Error);
  b.clear();
  b.add_sequence(&tok, 1, 0, {gpu.kv_blocks()}, 16, true);  // block past the pool
  CHECK_THROWS_AS(gpu.forward(b, logits.data()), Error);
  CHECK_THROWS_AS(gpu.copy_kv_block(0, gpu.kv_blocks()), Error);
}

TEST_CASE(
    "cuda backend: synthetic F16 / Q8_0 / Q4_0 / Q4_K_M models, teacher-forced over 128 "
    "positions") {
  struct Case {
    FileType ft;
    double tol_prefill, tol_decode, tol_alone;
  };
  // Prefill runs f16 GEMMs; decode runs GEMVs with f32 (float weights) or int8 (quantized
  // weights) activations. Both read an f16 KV cache where the CPU keeps f32.
  // Measured on an H100: prefill 5e-4..8e-4 for all four, decode 2.6e-4 (F16) and
  // 1.3e-2..1.4e-2 (int8 activations).
  // Alone vs in a batch (c): measured on an H100 4.9e-3 (Q8_0), 6.6e-3 (Q4_0), 4.0e-4
  // (F16: f16 activations in the batch's warpgroup-MMA products on sm_90a, f32 in the
  // GEMV alone; the GEMV both ways elsewhere); Q4_K_M runs the GEMV both ways (1e-4 holds).
  const Case cases[] = {{FileType::F16, 5e-3, 3e-3, 2e-3},
                        {FileType::Q8_0, 5e-3, 5e-2, 2e-2},
                        {FileType::Q4_0, 5e-3, 5e-2, 2e-2},
                        {FileType::Q4_K_M, 5e-3, 5e-2, 1e-4}};
  const int N = 128;
  for (const Case& c : cases) {
    const std::string ft_name = file_type_name(c.ft);
    CAPTURE(ft_name);
    const std::string path =
        write_synthetic(c.ft, "llama", std::string("synth_") + file_type_name(c.ft) + ".gguf");
    auto model = Model::load(path);
    const int V = model->config.n_vocab;
    std::vector<int32_t> toks;
    Batch b;
    const std::vector<float> ref = cpu_reference(*model, N, 99, toks, b);

    cuda::CudaBackend gpu(*model, gpu_options());
    // (a) the whole sequence as one prompt (GEMM + prefill attention)
    std::vector<float> pre(size_t(N) * V);
    gpu.forward(b, pre.data());
    const Agreement ap = compare_logits(pre, ref, V, 0.05);
    MESSAGE(ft_name << " prefill: worst relative error " << ap.worst << ", top-1 checked "
                    << ap.top1_checked << " wrong " << ap.top1_wrong);
    CHECK(ap.worst < c.tol_prefill);
    CHECK(ap.top1_wrong == 0);

    // (b) three copies decoded token by token in one batch (GEMV, split-K decode, graphs)
    std::vector<float> dec(size_t(N) * V), dec3(size_t(N) * V), out(size_t(3) * V);
    for (int p = 0; p < N; ++p) {
      b.clear();
      for (int s = 0; s < 3; ++s)
        b.add_sequence(&toks[size_t(p)], 1, p, linear_blocks(16 * s + 100, N / 16), 16, true);
      gpu.forward(b, out.data());
      std::copy(out.begin(), out.begin() + V, dec.begin() + size_t(p) * V);
      std::copy(out.begin() + 2 * V, out.begin() + 3 * V, dec3.begin() + size_t(p) * V);
    }
    const Agreement ad = compare_logits(dec, ref, V, 0.05);
    MESSAGE(ft_name << " decode: worst relative error " << ad.worst << ", top-1 checked "
                    << ad.top1_checked << " wrong " << ad.top1_wrong);
    CHECK(ad.worst < c.tol_decode);
    CHECK(ad.top1_wrong == 0);
    // Rows of one batch are computed independently: the copies agree exactly.
    CHECK(rel_err(dec3, dec) == 0.0);

    // (b') two copies in a batch: the skinny products' sums do not depend on how many rows
    // share a step (and at these lengths the attention is not split): the same bits.
    std::vector<float> dec2(size_t(N) * V), out2(size_t(2) * V);
    for (int p = 0; p < N; ++p) {
      b.clear();
      for (int s = 0; s < 2; ++s)
        b.add_sequence(&toks[size_t(p)], 1, p, linear_blocks(16 * s + 150, N / 16), 16, true);
      gpu.forward(b, out2.data());
      std::copy(out2.begin() + V, out2.end(), dec2.begin() + size_t(p) * V);
    }
    CHECK(rel_err(dec2, dec) == 0.0);

    // (b'') 20 copies in a batch: steps of 16+ rows take the persistent decode attention
    // (head_dim 64) and the 17-32-row products; against the CPU as (b), and every copy's
    // row is computed alike.
    const int n20 = 20;
    std::vector<float> dec20(size_t(N) * V), last20(size_t(N) * V), out20(size_t(n20) * V);
    for (int p = 0; p < N; ++p) {
      b.clear();
      for (int s = 0; s < n20; ++s)
        b.add_sequence(&toks[size_t(p)], 1, p, linear_blocks(8 * s, N / 16), 16, true);
      gpu.forward(b, out20.data());
      std::copy(out20.begin(), out20.begin() + V, dec20.begin() + size_t(p) * V);
      std::copy(out20.end() - V, out20.end(), last20.begin() + size_t(p) * V);
    }
    const Agreement a20 = compare_logits(dec20, ref, V, 0.05);
    MESSAGE(ft_name << " decode, 20 rows: worst relative error " << a20.worst << ", top-1 wrong "
                    << a20.top1_wrong);
    CHECK(a20.worst < c.tol_decode);
    CHECK(a20.top1_wrong == 0);
    CHECK(rel_err(last20, dec20) < 1e-6);

    // (c) one sequence alone without graphs: the GEMV (f32 activations for F16 weights)
    // where a batch takes the skinny tensor-core products (f16 activations; quantized: the
    // same integer sums in another float order, which q8 requantization downstream
    // amplifies), so within a tolerance, not to the bit.
    gpu.set_graphs(false);
    std::vector<float> one(size_t(N) * V);
    for (int p = 0; p < N; ++p) {
      b.clear();
      b.add_sequence(&toks[size_t(p)], 1, p, linear_blocks(200, N / 16), 16, true);
      gpu.forward(b, one.data() + size_t(p) * V);
    }
    const double e_alone = rel_err(one, dec);
    MESSAGE(ft_name << " alone vs batch: relative difference " << e_alone);
    CHECK(e_alone < c.tol_alone);
    // The GEMV alone against the CPU too, not only against the batch.
    const Agreement a1 = compare_logits(one, ref, V, 0.05);
    MESSAGE(ft_name << " alone: worst relative error " << a1.worst << ", top-1 wrong "
                    << a1.top1_wrong);
    CHECK(a1.worst < c.tol_decode);
    CHECK(a1.top1_wrong == 0);
  }
}

TEST_CASE(
    "cuda backend: a 2,048-wide Q4_0 model's one-row steps (norms inside the products, SwiGLU "
    "inside gate/up, keys read before the PDL wait) give the separate launches' bits") {
  // Llama-3.2-1B's width and heads (the draft of speculative decoding), two layers.
  SynthDims d;
  d.E = 2048;
  d.H = 32;
  d.Hkv = 8;
  d.F = 2048;
  const std::string path = write_synthetic(FileType::Q4_0, "llama", "synth_wide_q4_0.gguf", d);
  auto model = Model::load(path);
  const int V = model->config.n_vocab, N = 48;
  std::vector<int32_t> toks;
  Batch b;
  const std::vector<float> ref = cpu_reference(*model, N, 5, toks, b);

  // One sequence decoded token by token (graphs), with the fusions (default) or without.
  auto decode = [&](bool fused) {
    const char* vars[] = {"LLM_CUDA_MV_GLU", "LLM_CUDA_MV_NORM", "LLM_CUDA_ATTN_PREFETCH"};
    for (const char* v : vars) fused ? unsetenv(v) : setenv(v, "0", 1);
    cuda::CudaBackend gpu(*model, gpu_options());
    for (const char* v : vars) unsetenv(v);
    std::vector<float> out(size_t(N) * V);
    for (int p = 0; p < N; ++p) {
      b.clear();
      b.add_sequence(&toks[size_t(p)], 1, p, linear_blocks(100, N / 16), 16, true);
      gpu.forward(b, out.data() + size_t(p) * V);
    }
    return out;
  };
  const std::vector<float> fused = decode(true), apart = decode(false);
  const Agreement a = compare_logits(fused, ref, V, 0.05);
  MESSAGE("2,048-wide Q4_0 one-row decode: worst relative error "
          << a.worst << ", top-1 checked " << a.top1_checked << " wrong " << a.top1_wrong);
  CHECK(a.worst < 5e-2);
  CHECK(a.top1_wrong == 0);
  CHECK(same_bits(fused, apart, "fused vs separate launches"));
}

TEST_CASE(
    "cuda engine: concurrent requests give each greedy request's tokens alone (stories260K)") {
  // The batch invariance on CUDA: many requests at once (mixed prompt lengths,
  // shared prefixes, chunked prefill, preemption by a tiny KV pool) against each one alone.
  // Steps of different sizes take different kernels (GEMV, GEMM, decode or prefill
  // attention), so logits agree to rounding, not bits; the greedy tokens must be equal.
  const std::string m = shared_file("models/stories260K.gguf"),
                    g = shared_file("models/stories260K.greedy200.ids");
  if (m.empty() || g.empty()) LLM_SKIP("../shared/models/stories260K.* absent");
  auto model = Model::load(m);
  const std::vector<int32_t> text = read_ids(g);
  REQUIRE(text.size() == 201);
  const std::vector<Request> reqs = invariance_requests(model->config.n_vocab, text);

  BackendOptions roomy = gpu_options(16);
  roomy.kv_tokens = 1024;
  cuda::CudaBackend alone_be(*model, roomy);
  EngineConfig cfg;
  const std::vector<GenerationResult> alone = run_alone(alone_be, cfg, reqs);

  BackendOptions tiny = roomy;
  tiny.kv_tokens = 160;  // 10 blocks of 16 for 13 requests of up to ~100 tokens
  cuda::CudaBackend tiny_be(*model, tiny);
  cfg.sched.max_num_batched_tokens = 24;
  cfg.sched.max_num_seqs = 8;
  Engine e(tiny_be, cfg);
  const std::vector<GenerationResult> together = e.generate_all(reqs);
  for (size_t i = 0; i < reqs.size(); ++i) {
    CAPTURE(i);
    CHECK(together[i].finish_reason == FinishReason::Length);
    if (reqs[i].sampling.temperature != 0) continue;  // sampled: a draw may land on a rounding edge
    CHECK(together[i].tokens == alone[i].tokens);
    REQUIRE(together[i].logprobs.size() == alone[i].logprobs.size());
    for (size_t t = 0; t < alone[i].logprobs.size(); ++t)
      CHECK(std::abs(together[i].logprobs[t] - alone[i].logprobs[t]) < 2e-3);
  }
  const EngineMetrics em = e.metrics();
  MESSAGE("preemptions " << em.preemptions << ", prefix hit rate " << em.prefix_hit_rate()
                         << ", steps " << em.steps << ", candidate steps " << em.candidate_steps);
  CHECK(em.preemptions > 0);
  CHECK(em.prefix_hit_tokens > 0);
  CHECK(em.kv.used == 0);
}

TEST_CASE("cuda backend: steps of m rows a sequence replay graphs with the eager step's logits") {
  // A speculative verification (every sequence k + 1 rows, logits for all of them) replays
  // the graph of (m, the sequence count's power of two). From 4 rows a sequence the rows
  // take attention_rows, whose key splits a graph fixes at the most the workspace allows:
  // the same ranges, so the same bits as the eager step. Below, the per-row attention's
  // split count follows the context eagerly and not in a graph: within rounding.
  const std::string path = write_synthetic(FileType::F16, "llama", "synth_graph_rows.gguf");
  auto model = Model::load(path);
  const int V = model->config.n_vocab, P = 100;
  std::mt19937 rng(5);
  std::vector<int32_t> toks(P + 8);
  for (int32_t& t : toks) t = static_cast<int32_t>(rng() % V);
  cuda::CudaBackend gpu(*model, gpu_options());
  for (int n_seqs : {1, 3}) {
    Batch b;  // the prompts: sequence s in blocks 10 s ..
    for (int s = 0; s < n_seqs; ++s)
      b.add_sequence(toks.data(), P, 0, linear_blocks(10 * s, 8), 16, s == n_seqs - 1);
    std::vector<float> pre(size_t(1) * V);
    gpu.forward(b, pre.data());
    for (int m : {2, 5, 8}) {
      CAPTURE(n_seqs);
      CAPTURE(m);
      b.clear();
      for (int s = 0; s < n_seqs; ++s)
        b.add_sequence(&toks[P], m, P, linear_blocks(10 * s, 8), 16, false);
      for (int i = 0; i < n_seqs * m; ++i) b.logit_rows.push_back(i);
      std::vector<float> graph(size_t(n_seqs) * m * V), eager(graph.size()), again(graph.size());
      gpu.set_graphs(true);
      gpu.forward(b, graph.data());  // captures
      gpu.forward(b, again.data());  // replays
      gpu.set_graphs(false);
      gpu.forward(b, eager.data());
      CHECK(same_bits(again, graph, "replay vs capture"));
      if (m >= 4)
        CHECK(same_bits(graph, eager, "graph vs eager"));
      else
        CHECK(rel_err(graph, eager) < 1e-4);
    }
  }
}
