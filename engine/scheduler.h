// Iteration-level scheduling (Orca; vLLM v1's scheduler; nano-vllm's restatement).
//
// Each step spends a token budget (max_num_batched_tokens):
//   1. running sequences, most urgent first, each gets min(num_uncomputed, budget left)
//      tokens: one for a decode, a chunk for a prefill in progress. When the pool cannot
//      grow a sequence, the least urgent running sequence is preempted (blocks freed,
//      requeued to recompute later; prefix caching usually gives most of it back) until
//      it fits, or the sequence itself was the least urgent.
//   2. waiting sequences, most urgent first, are admitted while seats (max_num_seqs),
//      budget and blocks last; a prefix-cache hit marks its leading full blocks computed,
//      and the rest is prefilled in budget-sized chunks (chunked prefill). No admission
//      in a step that preempted: the memory it would take is what just ran out.
//   Under the priority and deadline policies, a waiting sequence more urgent than the
//   least urgent running one first preempts it when it lacks a seat or blocks (under
//   deadline, only for its first token: see make_room_for_urgent).
//
// Urgency: fcfs = arrival; priority = (priority, arrival); deadline = earliest next due
// time (the slack of the request's TTFT or TPOT target), then arrival.
//
// The ScheduleOutput is the single contract with whoever runs the model: which sequences
// compute how many tokens, which of them sample, and which block copies come first.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/batch.h"
#include "engine/block_pool.h"
#include "engine/sequence.h"

namespace llm {

enum class SchedulePolicy { Fcfs, Priority, Deadline };
const char* to_string(SchedulePolicy p);
// "fcfs", "priority", "deadline"; throws llm::Error otherwise.
SchedulePolicy parse_schedule_policy(const std::string& s);

struct SchedulerConfig {
  int max_num_seqs = 256;             // running sequences at most
  int max_num_batched_tokens = 2048;  // tokens per step: decodes plus prefill chunks
  SchedulePolicy policy = SchedulePolicy::Fcfs;
};

struct ScheduledSeq {
  Sequence* seq;
  int n_tokens;  // computes tokens [seq->num_computed, seq->num_computed + n_tokens)
  bool sample;   // reaches num_tokens: its last row's logits give the next token
};

struct ScheduleOutput {
  std::vector<ScheduledSeq> seqs;     // (n_seqs) in batch order
  std::vector<BlockCopy> copies;      // copy-on-write, to run in order before the forward
  std::vector<RequestId> preempted;   // sent back to waiting this step
  std::vector<RequestId> cannot_fit;  // can never fit the KV pool: finish them with an error
  int n_tokens = 0;                   // sum of n_tokens
  int n_sample() const;
  bool empty() const { return seqs.empty(); }

  // The backend input: each scheduled sequence's rows in order, logits for those that
  // sample (in the order of `seqs`). Call before Scheduler::update.
  void fill_batch(Batch& batch, int block_size) const;
};

struct SchedulerStats {
  int64_t steps = 0;
  int64_t preemptions = 0;
  int64_t prefix_query_tokens = 0;  // tokens of sequences at admission
  int64_t prefix_hit_tokens = 0;    // of which computed from the prefix cache
};

class Scheduler {
 public:
  // The pool must outlive the scheduler and serve only it.
  Scheduler(const SchedulerConfig& cfg, BlockPool& pool);

  const SchedulerConfig& config() const { return cfg_; }
  const BlockPool& pool() const { return pool_; }
  const SchedulerStats& stats() const { return stats_; }
  int num_waiting() const { return static_cast<int>(waiting_.size()); }
  int num_running() const { return static_cast<int>(running_.size()); }
  bool has_work() const { return !waiting_.empty() || !running_.empty(); }

  // Queues a new sequence (status Waiting, nothing computed).
  void add(std::unique_ptr<Sequence> seq);
  // The sequence with this id, or null when it is not here.
  Sequence* find(RequestId id) const;

  // Plans one step and commits its block operations.
  ScheduleOutput schedule();

  // After the step's forward ran: advances each scheduled sequence's num_computed and
  // registers its newly full blocks in the prefix cache.
  void update(const ScheduleOutput& out);

  // Removes a sequence (finished, cancelled or failed), freeing its blocks; returns it
  // with status Finished, or null when the id is unknown.
  std::unique_ptr<Sequence> finish(RequestId id, FinishReason reason, double now);

 private:
  bool before(const Sequence& a, const Sequence& b) const;  // a is more urgent
  void preempt_last_running(ScheduleOutput& out);
  void make_room_for_urgent(int budget, ScheduleOutput& out);
  // Tokens to compute from a fresh admission of s: leading ones hit in the cache.
  int cached_start(const Sequence& s, PrefixHit& hit) const;

  SchedulerConfig cfg_;
  BlockPool& pool_;
  SchedulerStats stats_;
  std::vector<std::unique_ptr<Sequence>> waiting_;  // most urgent first
  std::vector<std::unique_ptr<Sequence>> running_;  // most urgent first
};

}  // namespace llm
