// Helpers of the tensor-parallel tests (test_tp, test_cuda_tp): synthetic models,
// teacher-forced and greedy runs of one sequence through any Backend, and the logits'
// error relative to their spread.
#pragma once
#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include "engine/backend.h"
#include "engine/convert.h"
#include "test_util.h"

namespace llm::test {

inline std::string synthetic(const std::string& shape, FileType type) {
  MakeModelOptions o;
  o.shape = shape;
  o.type = type;
  o.seed = 7;
  o.n_threads = 2;
  const std::string path =
      temp_path("tp_" + shape + "_" + std::to_string(static_cast<int>(type)) + ".gguf");
  make_model(o, path);
  return path;
}

inline std::vector<int32_t> iota_blocks(int first, int n) {
  std::vector<int32_t> b(static_cast<size_t>(n));
  std::iota(b.begin(), b.end(), first);
  return b;
}

inline int argmax(const float* v, int n) {
  return static_cast<int>(std::max_element(v, v + n) - v);
}

// Teacher-forced logits of one sequence: a prefill of `n_prefill` tokens with logits for
// every row, then one token per step. (n_tokens, n_vocab).
inline std::vector<float> teacher_forced(Backend& be, const std::vector<int32_t>& toks,
                                         int n_prefill) {
  const int V = be.config().n_vocab, n = static_cast<int>(toks.size());
  const auto blocks = iota_blocks(3, n / be.block_size() + 1);  // not starting at block 0
  std::vector<float> out(static_cast<size_t>(n) * V);
  Batch b;
  b.add_sequence(toks.data(), n_prefill, 0, blocks, be.block_size(), false);
  for (int i = 0; i < n_prefill; ++i) b.logit_rows.push_back(i);
  be.forward(b, out.data());
  for (int p = n_prefill; p < n; ++p) {
    b.clear();
    b.add_sequence(&toks[static_cast<size_t>(p)], 1, p, blocks, be.block_size(), true);
    be.forward(b, out.data() + static_cast<size_t>(p) * V);
  }
  return out;
}

// Greedy continuation of `prompt` by n tokens.
inline std::vector<int32_t> greedy(Backend& be, std::vector<int32_t> seq, int n) {
  const int V = be.config().n_vocab;
  const auto blocks = iota_blocks(0, (static_cast<int>(seq.size()) + n) / be.block_size() + 1);
  std::vector<float> logits(static_cast<size_t>(V));
  Batch b;
  b.add_sequence(seq.data(), static_cast<int>(seq.size()), 0, blocks, be.block_size(), true);
  be.forward(b, logits.data());
  for (int i = 0; i < n; ++i) {
    seq.push_back(argmax(logits.data(), V));
    b.clear();
    b.add_sequence(&seq.back(), 1, static_cast<int>(seq.size()) - 1, blocks, be.block_size(), true);
    be.forward(b, logits.data());
  }
  return seq;
}

// Worst over positions of ||a - ref|| / ||ref - mean(ref)||: the error relative to the
// logits' spread.
inline double worst_rel(const std::vector<float>& a, const std::vector<float>& ref, int V) {
  double worst = 0;
  for (size_t p = 0; p < ref.size() / static_cast<size_t>(V); ++p) {
    const float* r = ref.data() + p * V;
    const float* x = a.data() + p * V;
    double mean = 0;
    for (int i = 0; i < V; ++i) mean += r[i];
    mean /= V;
    double num = 0, den = 0;
    for (int i = 0; i < V; ++i) {
      if (!std::isfinite(x[i])) return INFINITY;
      num += (x[i] - r[i]) * static_cast<double>(x[i] - r[i]);
      den += (r[i] - mean) * (r[i] - mean);
    }
    worst = std::max(worst, std::sqrt(num / den));
  }
  return worst;
}

inline std::vector<int32_t> prompt_tokens(int V, int n) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) t[static_cast<size_t>(i)] = static_cast<int32_t>((i * 37 + 11) % V);
  t[0] = 1;
  return t;
}

}  // namespace llm::test
