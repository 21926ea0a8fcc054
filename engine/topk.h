// Logit candidates: each logits row reduced to its k best tokens plus two numbers about
// the whole row, which is all the sampler needs when no penalty, bias or grammar touches
// the logits (Sampler::candidates_needed). A device returns this instead of the full rows:
// at 128 sequences of a 128K vocabulary that is 64 KiB per step instead of 64 MiB.
//
// For one row of n_vocab logits, after the sampler's sanitising (engine/sampler.h step 1:
// NaN -> -inf, +inf -> FLT_MAX):
//   ids, logits   the k best (id, logit) in the sampler's total order "logit descending,
//                 then id ascending" (-inf entries included when fewer than k are finite)
//   lse           log(sum_i exp(l_i)) over the whole row, as Sampler computes it: max +
//                 log(sum exp(l - max)), the exponentials in float, the sum in double
//                 (-inf when every logit is -inf)
//   max           the largest logit (== logits[0])
//   n_finite      how many logits are > -inf (top-k truncates only when top_k < n_finite)
//
// select_candidates() is the reference (the CPU backend uses it; cuda/topk is checked
// against it). Its lse is bit-identical to Sampler's, so candidates sampled on the host
// give the same tokens and the same logprobs as full rows.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace llm {

// The most candidates a step may ask for (a device kernel's compile-time bound).
constexpr int kMaxCandidates = 64;

struct CandidateStats {
  double lse = 0;
  float max = 0;
  int32_t n_finite = 0;
};
static_assert(sizeof(CandidateStats) == 16, "CUDA writes this layout");

// Candidates of n_rows rows, k per row.
//   column   shape         meaning
//   ids      (n_rows, k)   token ids, best first
//   logits   (n_rows, k)   their sanitised logits
//   stats    (n_rows)      lse, max, n_finite of the whole row
//   full     (n_rows, n_vocab) the full logits, where a backend selected on the host
//                          (the default Backend::forward_candidates); else empty
struct LogitCandidates {
  int k = 0;
  std::vector<int32_t> ids;
  std::vector<float> logits;
  std::vector<CandidateStats> stats;
  std::vector<float> full;

  int n_rows() const { return static_cast<int>(stats.size()); }
  void resize(int n_rows, int k);
  const int32_t* row_ids(int r) const { return ids.data() + static_cast<std::size_t>(r) * k; }
  const float* row_logits(int r) const { return logits.data() + static_cast<std::size_t>(r) * k; }
  // Copies row src_row of src (same k) to row dst of this.
  void copy_row(int dst, const LogitCandidates& src, int src_row);
};

// The reference selection of one row. row: (n_vocab); ids, logits: (k); 1 <= k <= n_vocab.
void select_candidates(const float* row, int n_vocab, int k, int32_t* ids, float* logits,
                       CandidateStats* stats);

// Every row of logits (n_rows, n_vocab) into out (resized to n_rows, k), rows in parallel.
void select_candidates_rows(const float* logits, int n_rows, int n_vocab, int k,
                            LogitCandidates& out);

}  // namespace llm
