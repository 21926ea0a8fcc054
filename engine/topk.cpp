#include "engine/topk.h"

#include <algorithm>
#include <cassert>
#include <cfloat>
#include <cmath>
#include <limits>

namespace llm {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// The sampler's sanitising (engine/sampler.cpp, Sampler::prepare).
float sanitise(float l) {
  if (std::isnan(l)) return kNegInf;
  if (l == std::numeric_limits<float>::infinity()) return FLT_MAX;
  return l;
}

struct Entry {
  float l;
  int32_t id;
};
// a before b in the total order (logit descending, id ascending).
bool better(const Entry& a, const Entry& b) {
  return a.l > b.l || (a.l == b.l && a.id < b.id);
}

}  // namespace

void LogitCandidates::resize(int n_rows, int k_) {
  assert(n_rows >= 0 && k_ >= 0);
  k = k_;
  ids.resize(static_cast<size_t>(n_rows) * k_);
  logits.resize(static_cast<size_t>(n_rows) * k_);
  stats.resize(static_cast<size_t>(n_rows));
}

void LogitCandidates::copy_row(int dst, const LogitCandidates& src, int src_row) {
  assert(src.k == k);
  const size_t d = static_cast<size_t>(dst) * k, s = static_cast<size_t>(src_row) * k;
  std::copy_n(src.ids.data() + s, k, ids.data() + d);
  std::copy_n(src.logits.data() + s, k, logits.data() + d);
  stats[static_cast<size_t>(dst)] = src.stats[static_cast<size_t>(src_row)];
}

void select_candidates(const float* row, int n_vocab, int k, int32_t* ids, float* logits,
                       CandidateStats* stats) {
  assert(row && k >= 1 && k <= n_vocab);
  // One pass: a heap of the k best so far, whose front is the worst of them. Scanning
  // ids upwards, an entry equal to the worst never displaces it (its id is larger).
  Entry heap[kMaxCandidates];
  std::vector<Entry> big;  // k > kMaxCandidates: tests of the reference only
  Entry* h = heap;
  if (k > kMaxCandidates) {
    big.resize(static_cast<size_t>(k));
    h = big.data();
  }
  int n = 0;
  float mx = kNegInf;
  int32_t n_finite = 0;
  for (int i = 0; i < n_vocab; ++i) {
    const Entry e{sanitise(row[i]), i};
    mx = std::max(mx, e.l);
    n_finite += e.l > kNegInf;
    if (n < k) {
      h[n++] = e;
      std::push_heap(h, h + n, better);
    } else if (better(e, h[0])) {
      std::pop_heap(h, h + n, better);
      h[n - 1] = e;
      std::push_heap(h, h + n, better);
    }
  }
  std::sort_heap(h, h + n, better);  // best first
  for (int j = 0; j < k; ++j) {
    ids[j] = h[j].id;
    logits[j] = h[j].l;
  }
  // Exactly Sampler::prepare's log-sum-exp: float exponentials, a double sum in id order.
  double lse = kNegInf;
  if (mx > kNegInf) {
    double sum = 0;
    for (int i = 0; i < n_vocab; ++i) sum += std::exp(sanitise(row[i]) - mx);
    lse = static_cast<double>(mx) + std::log(sum);
  }
  stats->lse = lse;
  stats->max = mx;
  stats->n_finite = n_finite;
}

void select_candidates_rows(const float* logits, int n_rows, int n_vocab, int k,
                            LogitCandidates& out) {
  out.resize(n_rows, k);
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (n_rows >= 4)
#endif
  for (int r = 0; r < n_rows; ++r)
    select_candidates(logits + static_cast<size_t>(r) * n_vocab, n_vocab, k,
                      out.ids.data() + static_cast<size_t>(r) * k,
                      out.logits.data() + static_cast<size_t>(r) * k,
                      &out.stats[static_cast<size_t>(r)]);
}

}  // namespace llm
