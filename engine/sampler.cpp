#include "engine/sampler.h"

#include <algorithm>
#include <cassert>
#include <cfloat>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <string>

#include "engine/error.h"

namespace llm {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t rotl(uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}

uint64_t random_seed() {
  std::random_device rd;
  uint64_t s = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  return s == kRandomSeed ? 0 : s;
}

void check_finite(float v, const char* name) {
  if (!std::isfinite(v)) throw Error(std::string("sampling: ") + name + " must be a finite number");
}

}  // namespace

Xoshiro256::Xoshiro256(uint64_t seed) {
  // splitmix64 expansion, as the xoshiro authors recommend; never yields the all-zero state.
  for (uint64_t& s : s_) s = splitmix64(seed);
}

uint64_t Xoshiro256::next() {
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

Sampler::Sampler(const SamplingParams& p, int n_vocab)
    : p_(p), n_vocab_(n_vocab), seed_(p.seed == kRandomSeed ? random_seed() : p.seed), rng_(seed_) {
  if (n_vocab <= 0) throw Error("sampling: vocabulary is empty");
  check_finite(p.top_p, "top_p");
  check_finite(p.min_p, "min_p");
  check_finite(p.presence_penalty, "presence_penalty");
  check_finite(p.frequency_penalty, "frequency_penalty");
  if (std::isnan(p.temperature)) throw Error("sampling: temperature must be a number");
  if (!(p.repeat_penalty > 0) || !std::isfinite(p.repeat_penalty))
    throw Error("sampling: repeat_penalty must be a positive number (1 = off)");
  if (p.n_probs < 0 || p.n_probs > kMaxProbs)
    throw Error("sampling: n_probs (top logprobs) must be between 0 and " +
                std::to_string(kMaxProbs) + ", got " + std::to_string(p.n_probs));
  for (const auto& [id, bias] : p.logit_bias) {
    if (id < 0 || id >= n_vocab)
      throw Error("sampling: logit_bias token id " + std::to_string(id) +
                  " is outside the vocabulary (0.." + std::to_string(n_vocab - 1) + ")");
    if (std::isnan(bias)) throw Error("sampling: logit_bias value is NaN");
  }
  work_.resize(static_cast<size_t>(n_vocab));
}

void Sampler::accept(int32_t id, bool prompt) {
  if (id < 0 || id >= n_vocab_)
    throw Error("sampling: token id " + std::to_string(id) + " is outside the vocabulary");
  const int n = p_.repeat_last_n;
  if (n < 0 || (n > 0 && window_.size() < static_cast<size_t>(n))) {
    window_.push_back(id);
  } else if (n > 0) {
    window_[window_pos_] = id;
    window_pos_ = (window_pos_ + 1) % static_cast<size_t>(n);
  }
  if (!prompt) ++generated_[id];
}

void Sampler::reset() {
  window_.clear();
  window_pos_ = 0;
  generated_.clear();
  rng_ = Xoshiro256(seed_);
}

void Sampler::apply_penalties() {
  if (p_.repeat_penalty != 1.0f && !window_.empty()) {
    // Each distinct token is penalised once, however often it occurs (llama.cpp).
    cand_.assign(window_.begin(), window_.end());
    std::sort(cand_.begin(), cand_.end());
    cand_.erase(std::unique(cand_.begin(), cand_.end()), cand_.end());
    for (int32_t id : cand_) {
      float& l = work_[static_cast<size_t>(id)];
      l = l <= 0 ? l * p_.repeat_penalty : l / p_.repeat_penalty;
    }
  }
  if (p_.presence_penalty != 0.0f || p_.frequency_penalty != 0.0f) {
    for (const auto& [id, count] : generated_)
      work_[static_cast<size_t>(id)] -=
          static_cast<float>(count) * p_.frequency_penalty + p_.presence_penalty;
  }
}

namespace {
// The total order used by every filter: higher logit first, then lower id.
struct Better {
  const float* l;
  bool operator()(int32_t a, int32_t b) const { return l[a] > l[b] || (l[a] == l[b] && a < b); }
};
}  // namespace

void Sampler::top_logprobs(double lse, SampleResult& out) {
  const size_t n = std::min(static_cast<size_t>(p_.n_probs), work_.size());
  cand_.resize(work_.size());
  std::iota(cand_.begin(), cand_.end(), 0);
  std::partial_sort(cand_.begin(), cand_.begin() + static_cast<ptrdiff_t>(n), cand_.end(),
                    Better{work_.data()});
  out.top.clear();
  for (size_t k = 0; k < n; ++k) {
    const int32_t id = cand_[k];
    out.top.push_back({id, static_cast<float>(work_[static_cast<size_t>(id)] - lse)});
  }
}

double Sampler::prepare(const float* logits, int32_t* best_out) {
  assert(logits);
  const size_t V = work_.size();
  std::copy(logits, logits + V, work_.begin());
  for (const auto& [id, bias] : p_.logit_bias) work_[static_cast<size_t>(id)] += bias;
  apply_penalties();

  // Sanitise once, after everything that can create NaN or inf: NaN never wins a
  // comparison (banned), +inf becomes the largest float so that l - max stays finite.
  float mx = kNegInf;
  int32_t best = -1;
  size_t n_finite = 0;
  for (size_t i = 0; i < V; ++i) {
    float& l = work_[i];
    if (std::isnan(l)) l = kNegInf;
    if (l == std::numeric_limits<float>::infinity()) l = FLT_MAX;
    n_finite += l > kNegInf;
    if (l > mx) {  // strict: ties keep the lowest id
      mx = l;
      best = static_cast<int32_t>(i);
    }
  }
  if (best < 0)
    throw Error("sampling: every token has probability zero (all banned by logit_bias?)");
  *best_out = best;
  n_finite_ = n_finite;

  // log-sum-exp of the penalised logits: exponentials in float, the sum in double.
  double sum = 0;
  for (size_t i = 0; i < V; ++i) sum += std::exp(work_[i] - mx);
  return static_cast<double>(mx) + std::log(sum);
}

SampleResult Sampler::sample(const float* logits) {
  int32_t best;
  const double lse = prepare(logits, &best);
  SampleResult out;
  if (p_.n_probs > 0) top_logprobs(lse, out);
  if (p_.temperature <= 0) {
    out.id = best;
  } else {
    filter(work_.data(), work_.size(), n_finite_, best);
    out.id = draw(work_.data());
  }
  out.logprob = static_cast<float>(work_[static_cast<size_t>(out.id)] - lse);
  return out;
}

int Sampler::candidates_needed() const {
  if (!p_.logit_bias.empty()) return 0;
  if (p_.repeat_penalty != 1.0f && p_.repeat_last_n != 0) return 0;
  if (p_.presence_penalty != 0.0f || p_.frequency_penalty != 0.0f) return 0;
  int need = p_.temperature <= 0 ? 1 : p_.top_k > 0 ? p_.top_k : n_vocab_;
  need = std::max(need, p_.n_probs);
  return std::min(need, n_vocab_);
}

SampleResult Sampler::sample_candidates(const int32_t* ids, const float* logits, int k,
                                        const CandidateStats& stats) {
  const int need = candidates_needed();
  assert(need > 0 && k >= need && k <= n_vocab_);
  (void)need;
  if (!(logits[0] > kNegInf))
    throw Error("sampling: every token has probability zero (all banned by logit_bias?)");
  const double lse = stats.lse;
  SampleResult out;
  // Steps 1-4: the candidates are the sanitised logits' best, in the order top_logprobs
  // sorts them.
  const int n_top = std::min(p_.n_probs, k);
  for (int j = 0; j < n_top; ++j) out.top.push_back({ids[j], static_cast<float>(logits[j] - lse)});
  if (p_.temperature <= 0) {
    out.id = ids[0];
    out.logprob = static_cast<float>(logits[0] - lse);
    return out;
  }
  // Steps 5-10 on local indices 0..k-1 numbered in ascending id order, so that the tie
  // breaks (lower index first) and the draw's walk (ascending index) are those of the ids.
  cand_.resize(static_cast<size_t>(k));
  std::iota(cand_.begin(), cand_.end(), 0);
  std::sort(cand_.begin(), cand_.end(), [&](int32_t a, int32_t b) { return ids[a] < ids[b]; });
  cand_ids_.resize(static_cast<size_t>(k));
  cand_logits_.resize(static_cast<size_t>(k));
  int32_t best = 0;
  for (int j = 0; j < k; ++j) {
    const int32_t from = cand_[static_cast<size_t>(j)];
    cand_ids_[static_cast<size_t>(j)] = ids[from];
    cand_logits_[static_cast<size_t>(j)] = logits[from];
    if (from == 0) best = j;
  }
  filter(cand_logits_.data(), cand_logits_.size(), static_cast<size_t>(stats.n_finite), best);
  const int32_t j = draw(cand_logits_.data());
  out.id = cand_ids_[static_cast<size_t>(j)];
  out.logprob = static_cast<float>(cand_logits_[static_cast<size_t>(j)] - lse);
  return out;
}

SampleResult Sampler::score(const float* logits, int32_t id) {
  if (id < 0 || id >= n_vocab_)
    throw Error("sampling: token id " + std::to_string(id) + " is outside the vocabulary");
  int32_t best;
  const double lse = prepare(logits, &best);
  SampleResult out;
  if (p_.n_probs > 0) top_logprobs(lse, out);
  out.id = id;
  out.logprob = static_cast<float>(work_[static_cast<size_t>(id)] - lse);
  return out;
}

std::vector<std::pair<int32_t, double>> Sampler::distribution(const float* logits) {
  int32_t best;
  prepare(logits, &best);
  if (p_.temperature <= 0) return {{best, 1.0}};
  const float* l = work_.data();
  filter(l, work_.size(), n_finite_, best);
  std::vector<std::pair<int32_t, double>> out;
  double total = 0;
  for (int32_t id : cand_) total += weight(l, id);
  for (int32_t id : cand_) out.emplace_back(id, weight(l, id) / total);
  return out;
}

double Sampler::weight(const float* l, int32_t id) const {
  return std::exp((static_cast<double>(l[id]) - max_) / static_cast<double>(p_.temperature));
}

// Steps 5-8 of the header on l (penalised and sanitised logits: work_, or the candidates
// of sample_candidates); leaves the survivors in cand_ in ascending index order.
void Sampler::filter(const float* l, size_t n, size_t n_finite, int32_t best) {
  const Better better{l};
  cand_.clear();
  for (size_t i = 0; i < n; ++i)
    if (l[i] > kNegInf) cand_.push_back(static_cast<int32_t>(i));
  // Every filter keeps the best token, so its logit stays the candidates' max.
  const double mx = l[best];
  max_ = mx;
  bool by_logit = false;  // cand_ sorted best-first (else ascending id)

  // n_finite, not cand_.size(): with candidates, cand_ may hold just the top_k best of
  // more, and the full row truncates (and so orders best-first) in that case.
  if (p_.top_k > 0 && static_cast<size_t>(p_.top_k) < n_finite) {
    const auto k = static_cast<ptrdiff_t>(std::min(static_cast<size_t>(p_.top_k), cand_.size()));
    std::partial_sort(cand_.begin(), cand_.begin() + k, cand_.end(), better);
    cand_.resize(static_cast<size_t>(k));
    by_logit = true;
  }

  if (p_.top_p < 1.0f) {
    double total = 0;
    for (int32_t id : cand_) total += std::exp(static_cast<double>(l[id]) - mx);
    // Sort only as much of the best-first order as the mass needs: the best 64, then
    // the next 192, ... (x4 each round); each round selects its chunk from the unsorted
    // rest in linear time (nth_element) and sorts only the chunk.
    const size_t n = cand_.size();
    size_t sorted = by_logit ? n : 0;  // cand_[0, sorted) is in best-first order
    size_t keep = n;
    double cum = 0;
    for (size_t i = 0; i < n; ++i) {
      if (i == sorted) {
        const size_t m = std::min(n, std::max<size_t>(64, sorted * 4));
        const auto first = cand_.begin() + static_cast<ptrdiff_t>(sorted);
        const auto mid = cand_.begin() + static_cast<ptrdiff_t>(m);
        if (m < n) std::nth_element(first, mid - 1, cand_.end(), better);
        std::sort(first, mid, better);
        sorted = m;
      }
      cum += std::exp(static_cast<double>(l[cand_[i]]) - mx) / total;
      if (cum >= p_.top_p) {
        keep = i + 1;
        break;
      }
    }
    // keep == n: rounding left the sum just below p, so everything stays.
    cand_.resize(keep);  // a best-first prefix
    by_logit = true;
  }

  if (p_.min_p > 0.0f) {
    const double min_p = p_.min_p;
    cand_.erase(std::remove_if(
                    cand_.begin(), cand_.end(),
                    [&](int32_t id) { return std::exp(static_cast<double>(l[id]) - mx) < min_p; }),
                cand_.end());
  }
  assert(!cand_.empty());
  // The draw walks ascending ids so that its result does not depend on how the
  // survivors were found.
  if (by_logit) std::sort(cand_.begin(), cand_.end());
}

// Steps 9-10: temperature softmax over cand_ and one RNG draw.
int32_t Sampler::draw(const float* l) {
  double total = 0;
  for (int32_t id : cand_) total += weight(l, id);
  const double r = rng_.uniform() * total;
  double cum = 0;
  int32_t last_nonzero = cand_.front();
  for (int32_t id : cand_) {
    const double w = weight(l, id);
    cum += w;
    if (w > 0) last_nonzero = id;
    if (cum > r) return id;
  }
  return last_nonzero;  // r rounded up to total
}

}  // namespace llm
