// Batch invariance checks shared by the CPU test of --deterministic (test_deterministic)
// and the CUDA one (test_cuda_deterministic): synthetic models, sequences over fresh KV
// blocks, and one sequence's logits compared bit for bit (memcmp, never a tolerance)
// between its prompt in one step, in chunks, beside other sequences, and decoded.
#pragma once
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "engine/backend.h"
#include "engine/engine.h"
#include "engine/gguf.h"
#include "engine_test_util.h"
#include "quant/mix.h"
#include "quant/quants.h"
#include "test_util.h"

namespace llm::test {

// Whether a and b hold the same bits; on a difference, says where and by how much.
inline bool same_bits(const float* a, const float* b, size_t n, const char* what) {
  if (std::memcmp(a, b, n * sizeof(float)) == 0) return true;
  size_t first = 0, count = 0;
  double worst = 0;
  for (size_t i = 0; i < n; ++i) {
    uint32_t x, y;
    std::memcpy(&x, a + i, 4);
    std::memcpy(&y, b + i, 4);
    if (x == y) continue;
    if (count++ == 0) first = i;
    worst = std::max(worst, std::fabs(static_cast<double>(a[i]) - b[i]));
  }
  MESSAGE(what << ": " << count << " of " << n << " values differ, first at " << first
               << ", largest difference " << worst);
  return false;
}
inline bool same_bits(const std::vector<float>& a, const std::vector<float>& b, const char* what) {
  REQUIRE(a.size() == b.size());
  return same_bits(a.data(), b.data(), a.size(), what);
}

constexpr int kBlock = 16;

// Shape of a synthetic model (the default: small and quick on the CPU).
struct SynthDims {
  int vocab = 1000, E = 256, L = 2, H = 4, Hkv = 2, D = 64, F = 512;
};

// A synthetic llama (or qwen2: q/k/v biases, Neox RoPE, so the unfused RoPE/KV-store path)
// of the given file type, with a context long enough for the long-context test.
inline std::string write_synthetic(FileType ft, const std::string& arch, const std::string& name,
                                   const SynthDims& dims = {}) {
  const int vocab = dims.vocab, E = dims.E, L = dims.L, H = dims.H, Hkv = dims.Hkv, D = dims.D,
            F = dims.F;
  const bool bias = arch == "qwen2";
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  GgufWriter w;
  const std::string a = arch + ".";
  w.set_string("general.architecture", arch);
  w.set_u32("general.file_type", gguf_file_type(ft));
  w.set_u32(a + "embedding_length", E);
  w.set_u32(a + "block_count", L);
  w.set_u32(a + "feed_forward_length", F);
  w.set_u32(a + "attention.head_count", H);
  w.set_u32(a + "attention.head_count_kv", Hkv);
  w.set_u32(a + "context_length", 4096);
  w.set_f32(a + "attention.layer_norm_rms_epsilon", 1e-5f);
  struct T {
    std::string name;
    int64_t cols, rows;
  };
  std::vector<T> ts = {
      {"token_embd.weight", E, vocab}, {"output_norm.weight", E, 1}, {"output.weight", E, vocab}};
  for (int l = 0; l < L; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    ts.push_back({p + "attn_norm.weight", E, 1});
    ts.push_back({p + "attn_q.weight", E, H * D});
    ts.push_back({p + "attn_k.weight", E, Hkv * D});
    ts.push_back({p + "attn_v.weight", E, Hkv * D});
    if (bias) {
      ts.push_back({p + "attn_q.bias", H * D, 1});
      ts.push_back({p + "attn_k.bias", Hkv * D, 1});
      ts.push_back({p + "attn_v.bias", Hkv * D, 1});
    }
    ts.push_back({p + "attn_output.weight", H * D, E});
    ts.push_back({p + "ffn_norm.weight", E, 1});
    ts.push_back({p + "ffn_gate.weight", E, F});
    ts.push_back({p + "ffn_up.weight", E, F});
    ts.push_back({p + "ffn_down.weight", F, E});
  }
  MixModel mm;
  mm.arch = arch;
  mm.n_layer = L;
  mm.n_head = H;
  mm.n_head_kv = Hkv;
  std::vector<DType> types;
  for (const T& t : ts) {
    const bool vec = t.rows == 1;
    const DType type = vec ? DType::F32 : choose_tensor_type(ft, mm, t.name, 2, t.cols, DType::F32);
    types.push_back(type);
    vec ? w.add_tensor(t.name, DType::F32, {t.cols}) : w.add_tensor(t.name, type, {t.cols, t.rows});
  }
  const std::string path = temp_path(name);
  w.begin(path);
  for (size_t i = 0; i < ts.size(); ++i) {
    const T& t = ts[i];
    const bool is_bias = t.name.find(".bias") != std::string::npos;
    // Unit-variance embeddings; other matrices scaled by 1/sqrt(cols) so activations stay O(1).
    const float sd = t.rows == 1                     ? 0.1f
                     : t.name == "token_embd.weight" ? 1.0f
                                                     : 1.0f / std::sqrt(float(t.cols));
    std::vector<float> v(static_cast<size_t>(t.cols * t.rows));
    for (float& x : v)
      x = is_bias ? 0.5f * nd(rng) : t.rows == 1 ? 1.0f + sd * nd(rng) : sd * nd(rng);
    std::vector<uint8_t> bytes(row_bytes(types[i], t.cols) * static_cast<size_t>(t.rows));
    for (int64_t r = 0; r < t.rows; ++r)
      quantize_row(types[i], v.data() + r * t.cols, bytes.data() + r * row_bytes(types[i], t.cols),
                   t.cols);
    w.write_tensor_data(bytes.data(), bytes.size());
  }
  w.finish();
  return path;
}

// Hands out fresh KV blocks, so that every run of a sequence writes its own cache.
struct Blocks {
  int next = 0;
  int limit = 0;
  std::vector<int32_t> take(int n_tokens) {
    std::vector<int32_t> b(static_cast<size_t>((n_tokens + kBlock - 1) / kBlock));
    std::iota(b.begin(), b.end(), next);
    next += static_cast<int>(b.size());
    REQUIRE(next <= limit);
    return b;
  }
};

// One sequence's tokens and blocks; rows [from, to) go into a batch with every row's logits.
struct Seq {
  std::vector<int32_t> toks;
  std::vector<int32_t> blocks;
  void add(Batch& b, int from, int to) const {
    const int r0 = b.n_tokens();
    b.add_sequence(toks.data() + from, to - from, from, blocks, kBlock, false);
    for (int r = r0; r < b.n_tokens(); ++r) b.logit_rows.push_back(r);
  }
};

inline Seq make_seq(std::mt19937& rng, int n, int n_vocab, Blocks& blocks) {
  Seq s;
  s.toks = random_tokens(rng, n, 0, n_vocab - 1);
  s.blocks = blocks.take(n);
  return s;
}

// Logits (n, V) of all rows of s's tokens [0, n), prefilled in chunks of `chunk` rows, each
// chunk a step of its own; the sequence gets fresh blocks.
inline std::vector<float> prefill(Backend& be, Seq s, int n, int chunk, Blocks& blocks) {
  const size_t V = static_cast<size_t>(be.config().n_vocab);
  s.blocks = blocks.take(n);
  std::vector<float> out(static_cast<size_t>(n) * V);
  Batch b;
  for (int p = 0; p < n; p += chunk) {
    b.clear();
    s.add(b, p, std::min(n, p + chunk));
    be.forward(b, out.data() + static_cast<size_t>(p) * V);
  }
  return out;
}

// Rows [from, to) of a (rows, V) logits matrix.
inline std::vector<float> rows_of(const std::vector<float>& l, int from, int to, int V) {
  return std::vector<float>(l.begin() + static_cast<ptrdiff_t>(from) * V,
                            l.begin() + static_cast<ptrdiff_t>(to) * V);
}

// ||gpu - cpu|| / ||cpu - mean(cpu)|| over each row, the worst row.
inline double worst_rel(const std::vector<float>& gpu, const std::vector<float>& cpu, int V) {
  double worst = 0;
  for (size_t p = 0; p < cpu.size() / static_cast<size_t>(V); ++p) {
    const float* g = gpu.data() + p * V;
    const float* c = cpu.data() + p * V;
    double mean = 0, num = 0, den = 0;
    for (int i = 0; i < V; ++i) mean += c[i];
    mean /= V;
    for (int i = 0; i < V; ++i) {
      if (!std::isfinite(g[i])) return INFINITY;
      num += (double(g[i]) - c[i]) * (double(g[i]) - c[i]);
      den += (c[i] - mean) * (c[i] - mean);
    }
    worst = std::max(worst, std::sqrt(num / den));
  }
  return worst;
}

struct InvarianceRef {
  Seq a;                   // the sequence the checks follow (kSeqA tokens)
  std::vector<float> ref;  // (kSeqA, n_vocab) its logits, the whole prompt in one step
};
constexpr int kSeqA = 150;  // more rows than one attention launch of the CUDA backend (128)

// On a fresh backend with room for about 300 KV blocks: sequence A's logits (the
// reference, its prompt in one step) must come out with the same bits
//   (a) from its prompt in chunks of 1 (decode steps), 7, 64 and 149 tokens;
//   (b) from its whole prompt in one step beside a prefill (B), a decode row (C) and the
//       second chunk of a prompt (D), whose rows must match their own runs alone too;
//   (c) decoded one token per step after a 100-token prefix beside 0, 2 or 4 sequences
//       decoding elsewhere (and once a prefill chunk), with set_graphs(true) and (false)
//       when set_graphs is given (CUDA graphs).
inline InvarianceRef check_batch_invariance(Backend& be,
                                            const std::function<void(bool)>& set_graphs = {}) {
  const int V = be.config().n_vocab, NA = kSeqA;
  Blocks blocks{0, be.kv_blocks()};
  std::mt19937 rng(1234);
  const Seq A = make_seq(rng, NA, V, blocks);
  const std::vector<float> ref = prefill(be, A, NA, NA, blocks);

  // (a) The prompt in other chunks, down to one token per step (decode graphs, bucket 1).
  for (int chunk : {1, 7, 64, 149}) {
    CAPTURE(chunk);
    CHECK(same_bits(prefill(be, A, NA, chunk, blocks), ref, "chunked prompt"));
  }

  // (b) A's whole prompt in one step beside a prefill (B), a decode row (C) and a chunk
  // in the middle of a prompt (D), each checked against its own run alone.
  const Seq B = make_seq(rng, 37, V, blocks), C = make_seq(rng, 60, V, blocks),
            D = make_seq(rng, 130, V, blocks);
  const std::vector<float> ref_b = prefill(be, B, 37, 37, blocks),
                           ref_c = prefill(be, C, 60, 60, blocks),
                           ref_d = prefill(be, D, 130, 130, blocks);
  {
    Seq a2 = A, c2 = C, d2 = D;
    a2.blocks = blocks.take(NA);
    c2.blocks = blocks.take(60);
    d2.blocks = blocks.take(130);
    Batch b;
    std::vector<float> tmp(size_t(130) * V);
    c2.add(b, 0, 59);  // C's first 59 positions and D's first 40 in a step of their own
    d2.add(b, 0, 40);
    be.forward(b, tmp.data());
    b.clear();
    B.add(b, 0, 37);
    a2.add(b, 0, NA);
    c2.add(b, 59, 60);
    d2.add(b, 40, 130);
    std::vector<float> out(static_cast<size_t>(b.n_logits()) * V);
    be.forward(b, out.data());
    CHECK(same_bits(rows_of(out, 0, 37, V), ref_b, "B beside others"));
    CHECK(same_bits(rows_of(out, 37, 37 + NA, V), ref, "A beside others"));
    CHECK(same_bits(rows_of(out, 37 + NA, 38 + NA, V), rows_of(ref_c, 59, 60, V),
                    "C's decode row beside others"));
    CHECK(same_bits(rows_of(out, 38 + NA, 128 + NA, V), rows_of(ref_d, 40, 130, V),
                    "D's second chunk beside others"));
  }

  // (c) A decoded one token per step after a 100-token prefix, beside 0, 2 or 4 other
  // sequences decoding at other positions (graph buckets 1, 4, 8), once with a prefill
  // chunk in the step too (no graph), and without graphs.
  for (bool graphs : {true, false}) {
    CAPTURE(graphs);
    if (set_graphs) set_graphs(graphs);
    Seq a2 = A;
    a2.blocks = blocks.take(NA);
    std::vector<Seq> others;
    std::vector<int> at;  // next position of each other sequence
    Batch b;
    std::vector<float> out;
    auto forward = [&] {
      out.resize(static_cast<size_t>(b.n_logits()) * V);
      be.forward(b, out.data());
    };
    a2.add(b, 0, 100);
    for (int k = 0; k < 4; ++k) {
      others.push_back(make_seq(rng, 120, V, blocks));
      at.push_back(10 + 17 * k);
      others.back().add(b, 0, at.back());
    }
    forward();
    // The next row of another sequence, a different one each step.
    auto other_row = [&](size_t k) {
      const size_t o = k % others.size();
      others[o].add(b, at[o], at[o] + 1);
      ++at[o];
    };
    const Seq E = make_seq(rng, 40, V, blocks);
    for (int p = 100; p < NA; ++p) {
      CAPTURE(p);
      b.clear();
      const int n_others = p % 3 == 0 ? 0 : p % 3 == 1 ? 2 : 4;
      for (int k = 0; k < n_others / 2; ++k) other_row(static_cast<size_t>(k + p));
      const int row = b.n_tokens();
      a2.add(b, p, p + 1);
      for (int k = n_others / 2; k < n_others; ++k) other_row(static_cast<size_t>(k + p));
      if (p == 121) E.add(b, 0, 40);  // a prefill chunk in the same step
      forward();
      CHECK(same_bits(out.data() + static_cast<size_t>(row) * V,
                      ref.data() + static_cast<size_t>(p) * V, static_cast<size_t>(V),
                      "A's decode row"));
    }
  }
  if (set_graphs) set_graphs(true);
  return {A, ref};
}

// Requests of mixed prompt lengths, shared prefixes, one sampled with a seed
// (engine_test_util.h), all at once on `tiny` (a pool of about 10 blocks of 16: preemption
// and recomputation) with prompts chunked by token budgets of 24 and 7, against each alone
// on `roomy`: the same tokens and the same logprobs, bit for bit. The engine samples from
// full logit rows, as --deterministic makes it (server/cli_common.cpp).
inline void check_engine_invariance(Backend& roomy, Backend& tiny) {
  std::mt19937 rng(5);
  const int V = roomy.config().n_vocab;
  const std::vector<Request> reqs = invariance_requests(V, random_tokens(rng, 64, 3, V - 1));
  EngineConfig cfg;
  cfg.logit_candidates = false;
  const std::vector<GenerationResult> alone = run_alone(roomy, cfg, reqs);
  for (int budget : {24, 7}) {
    CAPTURE(budget);
    EngineConfig c = cfg;
    c.sched.max_num_batched_tokens = budget;
    c.sched.max_num_seqs = budget == 24 ? 8 : 3;
    Engine e(tiny, c);
    const std::vector<GenerationResult> together = e.generate_all(reqs);
    for (size_t i = 0; i < reqs.size(); ++i) {
      CAPTURE(i);
      CHECK(together[i].finish_reason == alone[i].finish_reason);
      CHECK(together[i].tokens == alone[i].tokens);  // the sampled one included
      REQUIRE(together[i].logprobs.size() == alone[i].logprobs.size());
      CHECK(same_bits(together[i].logprobs, alone[i].logprobs, "logprobs"));
    }
    const EngineMetrics em = e.metrics();
    MESSAGE("budget " << budget << ": preemptions " << em.preemptions << ", prefix hit rate "
                      << em.prefix_hit_rate() << ", steps " << em.steps);
    CHECK(em.preemptions > 0);
    CHECK(em.kv.used == 0);
  }
}

}  // namespace llm::test
