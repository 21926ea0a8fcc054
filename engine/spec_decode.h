// Speculative decoding (Leviathan, Kalman, Matias 2023, "Fast Inference from Transformers
// via Speculative Decoding"; Chen et al. 2023, "Accelerating Large Language Model Decoding
// with Speculative Sampling").
//
// At small batches a decode step reads every weight to produce one token per sequence.
// A cheap proposer guesses the next k tokens d1..dk; the target scores the k+1 positions
// [last, d1, .., dk] of the sequence in one forward (its cost is close to one position's
// while the step stays bound by weight reads), and the longest acceptable prefix of the
// guesses plus one token of the target's own is kept. Nothing is lost:
//   greedy    d_i is kept while it equals the target's argmax at its position; the first
//             disagreement is replaced by that argmax, and after k agreements the argmax of
//             row k is a bonus token. The output is exactly the target's greedy output.
//   sampling  d_i drawn from the proposer's q is kept with probability min(1, p(d_i)/q(d_i)),
//             where p is the target's processed distribution (Sampler::distribution:
//             penalties, top-k/p, min-p and temperature applied to the target's logits with
//             the history up to d_i); on rejection the token is drawn from
//             norm(max(0, p - q)) and the step ends; after k acceptances one more token is
//             drawn from p. Each emitted token is distributed exactly as p (the paper's
//             Theorem 1). A deterministic proposal (n-gram) is a point mass q = δ(d_i).
//
// In the engine (one rule, as the scheduler's): a verifying sequence is a sequence that
// computes k+1 new tokens in a step. The SpecDecoder runs between Scheduler::schedule and
// the forward: it picks each decoding sequence's k, asks the proposer, and grows the
// sequence's block table over the draft positions from free blocks and the step's leftover
// token budget only (drafts never preempt anyone). After the forward it verifies, and once
// the engine has emitted the tokens (stop conditions checked per token), commits: the
// sequence's num_computed covers the accepted positions, and blocks past them go back to
// the pool (rejected positions are rolled back; their K/V is garbage past num_computed).
// Draft tokens never enter Sequence::tokens, so preemption, prefix caching and stop
// handling see only real tokens.
//
// Adaptive: each sequence keeps a decayed estimate α̂ of its per-token acceptance; its k is
// the one (<= k_max) with the most tokens per unit of time (best_k): (1 + α̂ + ... + α̂^k)
// tokens for a target step plus k guesses, each costing the measured draft cost (relative
// to a target step) and verify_cost. Where no k beats plain decoding by min_gain the
// sequence stops speculating and probes with k = 1 now and then. A step with
// more decoding sequences than off_batch does not speculate at all (verification stops
// being nearly free once the step is bound by compute rather than weight reads).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "engine/batch.h"
#include "engine/block_pool.h"
#include "engine/sampler.h"
#include "engine/scheduler.h"
#include "engine/sequence.h"
#include "engine/token_constraint.h"
#include "engine/topk.h"

namespace llm {

// A distribution over tokens as Sampler::distribution returns it: (id, probability) in
// ascending id order, tokens absent have probability 0.
using TokenDist = std::vector<std::pair<int32_t, double>>;

double dist_prob(const TokenDist& d, int32_t id);
// The token whose cumulative probability (ascending ids) first exceeds u * total; u in [0, 1).
int32_t dist_sample(const TokenDist& d, double u);
// A draw from norm(max(0, p - q)) with uniform u; q == nullptr means the point mass at
// `point`. Falls back to p when the residual has no mass (p == q up to rounding).
int32_t residual_sample(const TokenDist& p, const TokenDist* q, int32_t point, double u);

// One position of speculative sampling: d was drawn from q (nullptr: proposed
// deterministically, the point mass at d). Keeps d with probability min(1, p(d) / q(d)),
// else draws its replacement from the residual. Uses two RNG draws at most.
struct SpecVerdict {
  int32_t token;
  bool accepted;
};
SpecVerdict speculative_step(const TokenDist& p, const TokenDist* q, int32_t d, Xoshiro256& rng);

// --- proposers -------------------------------------------------------------------

// One sequence asking for drafts.
struct DraftRequest {
  RequestId id = 0;
  const std::vector<int32_t>* tokens = nullptr;  // (n) prompt + generated; the last is the
                                                 // token the target is about to compute
  int k = 0;                                     // drafts wanted at most
  const Sampler* sampler = nullptr;              // the target's sampler: parameters and history
  const TokenConstraint* constraint = nullptr;   // the sequence's grammar state, if any
  // Filled by the proposer:
  std::vector<int32_t> draft;  // (<= k) guessed tokens[n], tokens[n+1], ...
  std::vector<TokenDist> q;    // (draft.size()) the distribution each guess was drawn from
                               // when sampling; empty: deterministic guesses (point masses)
};

class Proposer {
 public:
  virtual ~Proposer() = default;
  virtual std::string name() const = 0;
  // Fills draft (and q) of every request; a request may get fewer than k guesses or none.
  // Called on the engine's stepping thread with every sequence that speculates this step,
  // so that a draft model runs them as one batch.
  virtual void propose(std::vector<DraftRequest>& reqs) = 0;
  // The request is gone: drop whatever is kept for it.
  virtual void release(RequestId) {}
};

// Prompt lookup (Saxena 2023) / n-gram speculation: finds the most recent earlier
// occurrence of the sequence's last n tokens (n from max_n down to min_n) in its prompt
// or output and proposes the tokens that followed it. No model, no state.
class NgramProposer : public Proposer {
 public:
  explicit NgramProposer(int min_n = 1, int max_n = 4);
  std::string name() const override {
    return "ngram (" + std::to_string(min_n_) + ".." + std::to_string(max_n_) + ")";
  }
  void propose(std::vector<DraftRequest>& reqs) override;
  // The guesses for one token sequence, at most k.
  std::vector<int32_t> lookup(const std::vector<int32_t>& tokens, int k) const;

 private:
  int min_n_, max_n_;
};

// --- the engine's side -------------------------------------------------------------

enum class SpecMethod { None, Draft, Ngram, Self };
const char* to_string(SpecMethod m);
// "none", "draft", "ngram", "self"; throws llm::Error otherwise.
SpecMethod parse_spec_method(const std::string& s);

struct SpecConfig {
  Proposer* proposer = nullptr;  // not owned, outlives the engine; nullptr: no speculation
  int k_max = 5;                 // drafts per sequence and step at most
  int off_batch = 32;            // no speculation in steps with more decoding sequences
  bool adaptive = true;          // false: always k_max (benchmarks)
  double min_gain = 0.1;         // speculate where tokens per unit of time gain this much
  // Target step time with k guesses per sequence, relative to the step without: r(k) ≈ 1 +
  // k (verify_cost + verify_cost_per_seq * sequences) (H100, 7B F16 target, 512 positions:
  // r(3) 1.07 / 1.22 / 1.45 / 1.60 at 1 / 8 / 16 / 32 sequences; PERF.md).
  double verify_cost = 0.02;
  double verify_cost_per_seq = 0.006;
  int probe_interval = 16;  // steps between k = 1 probes of a sequence that stopped
};

// The k (0..cfg.k_max) with the most tokens per unit of time for per-token acceptance
// alpha, a guess's cost relative to a target step and a step of n_seqs decoding sequences
// (SpecDecoder's adaptive rule); 0 where none beats plain decoding by cfg.min_gain.
int best_k(double alpha, double cost, const SpecConfig& cfg, int n_seqs = 1);
// A guessed position's share of a target step's time in a step of n_seqs sequences.
double verify_cost(const SpecConfig& cfg, int n_seqs);

// Counters since the engine started.
struct SpecStats {
  int64_t steps = 0;            // engine steps in which some sequence verified drafts
  int64_t off_batch_steps = 0;  // decode steps skipped because the batch was too large
  int64_t verifications = 0;    // sequence-steps that verified drafts
  int64_t drafted = 0;          // draft tokens proposed (and verified)
  int64_t accepted = 0;         // of which accepted
  double propose_s = 0;         // time spent in the proposer

  double acceptance_rate() const { return drafted ? double(accepted) / double(drafted) : 0.0; }
  // Tokens a verifying sequence gains per step: its accepted drafts plus the target's own.
  double tokens_per_step() const {
    return verifications ? double(accepted + verifications) / double(verifications) : 0.0;
  }
};

class SpecDecoder {
 public:
  SpecDecoder(const SpecConfig& cfg, int n_vocab);

  // After Scheduler::schedule. Gives every decoding sequence of `out` (one new token that
  // samples) its drafts: chooses k, asks the proposer, grows the block table over the
  // draft positions (copy-on-write copies go to out.copies). samplers, constraints:
  // (out.seqs.size()); a null sampler: the sequence does not speculate; a null constraint:
  // it is unconstrained (else drafts and verification follow the grammar).
  // token_budget: tokens the step may still add. Returns whether any sequence got drafts.
  bool plan(ScheduleOutput& out, const std::vector<Sampler*>& samplers,
            const std::vector<TokenConstraint*>& constraints, BlockPool& pool, int token_budget,
            int max_model_len);

  // The step's batch: a drafted sequence contributes its rows [last, d1..dk] with logits for
  // all of them; the others as ScheduleOutput::fill_batch would.
  void fill_batch(const ScheduleOutput& out, Batch& batch, int block_size);
  bool has_drafts(int i) const { return !cur_.empty() && !cur_[i].draft.empty(); }
  // First logits row of out.seqs[i] (which samples) in the step's logits.
  int logit_row(int i) const { return cur_[i].logit_row; }

  // Verifies out.seqs[i]'s drafts against its k+1 logits rows (k+1, n_vocab): returns the
  // accepted drafts and the token after them, each already accepted into the sampler and
  // the constraint (if any), which masks each row used first, in its state at that row.
  // Thread-safe for distinct i.
  std::vector<SampleResult> verify(int i, Sampler& sampler, TokenConstraint* constraint,
                                   float* logits);
  // The same for a greedy sequence without a constraint, from the candidates of its k+1
  // rows (cand rows row0..row0+k, cand.k >= sampler.candidates_needed() > 0): the same
  // tokens and logprobs as verify() on the full rows (Sampler::sample_candidates).
  std::vector<SampleResult> verify_candidates(int i, Sampler& sampler, const LogitCandidates& cand,
                                              int row0);

  // After the engine appended the verified tokens to out.seqs[i] (seq; nullptr when the
  // request finished in this step): its K/V of the accepted positions counts as computed,
  // full blocks enter the prefix cache, and the blocks past the computed positions return
  // to the pool. Counts the statistics either way.
  void commit(int i, Sequence* seq, BlockPool& pool);
  void observe_forward(double seconds);  // the step's forward time (cost estimate)
  void release(RequestId id);

  const SpecStats& stats() const { return stats_; }
  const SpecConfig& config() const { return cfg_; }

 private:
  struct SeqState {
    double hits = 1.2, tries = 2.0;  // decayed acceptance counts; prior α̂ = 0.6
    int idle = 0;                    // steps without speculation, for probing
    Xoshiro256 rng{0};
  };
  struct Cur {  // one sequence of the current step
    SeqState* st = nullptr;
    std::vector<int32_t> draft;
    std::vector<TokenDist> q;
    int logit_row = 0;
    int n_accepted = 0;
  };
  int choose_k(SeqState& st, int n_seqs);
  void note_verdict(Cur& c, int accepted, int k);  // the verdict's statistics
  template <typename Step>
  std::vector<SampleResult> verify_rows(Cur& c, Sampler& sampler, TokenConstraint* constraint,
                                        const Step& step);

  SpecConfig cfg_;
  int n_vocab_;
  SpecStats stats_;
  // Measured proposer time per draft position / the target step without guesses (EWMA).
  double cost_ = 0;
  int last_n_ = 0;  // decoding sequences of the last drafted step
  double last_propose_s_ = 0;
  int last_k_ = 0;
  std::unordered_map<RequestId, SeqState> seqs_;
  std::vector<Cur> cur_;  // (out.seqs.size()) of the current step
};

}  // namespace llm
