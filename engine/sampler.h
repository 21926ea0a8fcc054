// The reference token sampler: the CPU implementation that the GPU sampler is checked
// against, so every step below is specified exactly (order, tie-breaking, RNG).
//
// One sample() applies, in this order (llama.cpp's default chain, common/sampling.cpp:
// logit-bias -> penalties -> top-k -> top-p -> min-p -> temperature -> dist):
//
//   1. copy the logits; NaN becomes -inf (a NaN would break every comparison below)
//   2. logit_bias: l[id] += bias (a -inf bias bans the token)
//   3. penalties:
//        repeat (llama.cpp): every distinct token among the last `repeat_last_n` accepted
//          tokens (prompt included): l > 0 ? l / repeat_penalty : l * repeat_penalty
//        presence/frequency (OpenAI): over generated tokens only, c = times generated:
//          l -= c * frequency_penalty + (c > 0) * presence_penalty
//      The result is the "penalised logits". SampleResult::logprob and ::top are the
//      log-softmax of the penalised logits over the whole vocabulary (no temperature, no
//      truncation), as OpenAI reports them.
//   4. temperature <= 0: greedy, the argmax of the penalised logits (ties: lowest id).
//      The steps below are skipped.
//   5. candidates: every token with a finite penalised logit.
//   6. top-k (k > 0): keep the k best. "Best" is always the total order
//      (logit descending, id ascending), so ties are broken the same way everywhere.
//   7. top-p (p < 1): softmax over the candidates (temperature 1); keep the shortest
//      best-first prefix whose probability mass is >= p (the token that crosses p is kept).
//   8. min-p (p > 0): keep tokens with prob >= min_p * max prob, i.e.
//      exp(l - l_max) >= min_p, computed in double.
//   9. temperature: softmax of l / temperature over the survivors, in double, as
//      w = exp((l - l_max) / temperature), p = w / sum(w).
//  10. dist: u = a uniform double in [0, 1) from the RNG (53 high bits of one xoshiro256**
//      output); walk the survivors in ascending token-id order accumulating probability,
//      and choose the first token whose running sum exceeds u * total.
//
// Filters never remove the best token, so at least one candidate always survives; when
// every logit is -inf (all tokens banned) sample() throws llm::Error.
//
// RNG: xoshiro256** (Blackman & Vigna, https://prng.di.unimi.it/) seeded by expanding the
// 64-bit seed with splitmix64; exactly one RNG output is consumed per non-greedy sample(),
// none for greedy. The same seed gives the same tokens on every machine.
#pragma once
#include <cstddef>
#include <cstdint>
#include <unordered_map>
#include <utility>
#include <vector>

#include "engine/topk.h"

namespace llm {

// seed value meaning "pick a random seed" (read it back with Sampler::seed()).
constexpr uint64_t kRandomSeed = ~0ull;

struct SamplingParams {
  float temperature = 0.8f;     // <= 0: greedy
  int top_k = 40;               // <= 0: off
  float top_p = 0.95f;          // >= 1: off
  float min_p = 0.05f;          // <= 0: off
  float repeat_penalty = 1.0f;  // 1: off
  int repeat_last_n = 64;       // window of accepted tokens; 0: off, < 0: all of them
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  std::vector<std::pair<int32_t, float>> logit_bias;  // (token id, added to its logit)
  uint64_t seed = kRandomSeed;
  int n_probs = 0;  // top-N logprobs to report, 0..kMaxProbs
};

struct TokenLogprob {
  int32_t id;
  float logprob;
};

struct SampleResult {
  int32_t id = -1;
  float logprob = 0;              // of `id`, under the full softmax of the penalised logits
  std::vector<TokenLogprob> top;  // (n_probs) best first, same log-softmax
};

// The random generator, public so that other samplers (GPU) can draw the same numbers.
class Xoshiro256 {
 public:
  explicit Xoshiro256(uint64_t seed);
  uint64_t next();
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }  // [0, 1)

 private:
  uint64_t s_[4];
};

class Sampler {
 public:
  static constexpr int kMaxProbs = 20;

  // Throws llm::Error for parameters a request may carry wrongly (n_probs out of range,
  // a logit_bias id outside the vocabulary, NaN values, negative penalties).
  Sampler(const SamplingParams& p, int n_vocab);

  // logits: (n_vocab). Does not record the token: call accept() with it.
  SampleResult sample(const float* logits);

  // The distribution the next sample() would draw from (steps 1-9, no RNG used):
  // survivors in ascending id order with their probabilities. Greedy gives the argmax
  // with probability 1. For tests, and for checking other samplers against this one.
  std::vector<std::pair<int32_t, double>> distribution(const float* logits);

  // What sample() would report had it drawn `id` (chosen elsewhere, e.g. by speculative
  // decoding's verification): its logprob and the top n_probs of the same penalised
  // logits. No RNG used; does not record the token.
  SampleResult score(const float* logits, int32_t id);

  // How many candidates per row (engine/topk.h) sample_candidates() needs to give
  // exactly what sample() gives on the full row: greedy 1, top-k sampling top_k, and at
  // least n_probs; without top-k, the whole vocabulary. 0 when the full row is needed:
  // logit_bias or penalties change logits that need not be among the candidates.
  int candidates_needed() const;

  // sample() from a row's candidates: ids, logits (k) best first and the row's stats
  // (engine/topk.h), k >= candidates_needed() > 0. The same token, logprob and top
  // logprobs as sample() on the full row, drawing the same RNG numbers: every step of
  // the header runs on the candidates in the same order, since no token outside them can
  // survive top-k (or be reported in the top n_probs).
  SampleResult sample_candidates(const int32_t* ids, const float* logits, int k,
                                 const CandidateStats& stats);

  // Records a token for the penalties. Prompt tokens (prompt = true) enter only the
  // repeat-penalty window; generated ones also count for presence/frequency penalties.
  void accept(int32_t id, bool prompt = false);

  // Forgets the history and restarts the RNG from seed(): the same calls then give the
  // same tokens again.
  void reset();

  uint64_t seed() const { return seed_; }  // the effective seed (drawn if kRandomSeed)
  const SamplingParams& params() const { return p_; }

 private:
  double prepare(const float* logits, int32_t* best);  // steps 1-3 into work_; returns log-sum-exp
  void apply_penalties();
  void top_logprobs(double lse, SampleResult& out);
  // Steps 5-8 over the logits l (n) into cand_; n_finite: finite logits of the whole
  // row, which decides whether top-k truncates (l may hold only the best of them).
  void filter(const float* l, size_t n, size_t n_finite, int32_t best);
  double weight(const float* l, int32_t id) const;  // exp((l - max) / temperature)
  int32_t draw(const float* l);                     // steps 9-10

  SamplingParams p_;
  int n_vocab_;
  uint64_t seed_;
  Xoshiro256 rng_;
  std::vector<int32_t> window_;                 // ring of the last repeat_last_n tokens
  size_t window_pos_ = 0;                       // next slot to overwrite when full
  std::unordered_map<int32_t, int> generated_;  // token -> times generated
  std::vector<float> work_;                     // (n_vocab) penalised logits
  std::vector<int32_t> cand_;                   // candidate ids, scratch
  std::vector<int32_t> cand_ids_;               // (k) sample_candidates: ids, ascending
  std::vector<float> cand_logits_;              // (k) their logits
  double max_ = 0;                              // best penalised logit of this step
  size_t n_finite_ = 0;                         // finite penalised logits of this step
};

}  // namespace llm
