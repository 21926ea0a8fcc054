#include "engine/scheduler.h"

#include <algorithm>
#include <cassert>
#include <tuple>
#include <utility>

#include "engine/error.h"

namespace llm {

const char* to_string(SchedulePolicy p) {
  switch (p) {
    case SchedulePolicy::Fcfs:
      return "fcfs";
    case SchedulePolicy::Priority:
      return "priority";
    case SchedulePolicy::Deadline:
      return "deadline";
  }
  return "";
}

SchedulePolicy parse_schedule_policy(const std::string& s) {
  if (s == "fcfs") return SchedulePolicy::Fcfs;
  if (s == "priority") return SchedulePolicy::Priority;
  if (s == "deadline") return SchedulePolicy::Deadline;
  throw Error("unknown scheduling policy '" + s + "' (expected fcfs, priority or deadline)");
}

int ScheduleOutput::n_sample() const {
  int n = 0;
  for (const ScheduledSeq& s : seqs) n += s.sample ? 1 : 0;
  return n;
}

void ScheduleOutput::fill_batch(Batch& batch, int block_size) const {
  batch.clear();
  // Size the block-table width once, so add_sequence never re-lays the rows.
  for (const ScheduledSeq& s : seqs)
    batch.max_blocks = std::max(batch.max_blocks, static_cast<int>(s.seq->table.blocks.size()));
  batch.block_tables.reserve(seqs.size() * static_cast<size_t>(batch.max_blocks));
  for (const ScheduledSeq& s : seqs) {
    const Sequence& q = *s.seq;
    batch.add_sequence(q.tokens.data() + q.num_computed, s.n_tokens, q.num_computed, q.table.blocks,
                       block_size, s.sample);
  }
}

Scheduler::Scheduler(const SchedulerConfig& cfg, BlockPool& pool) : cfg_(cfg), pool_(pool) {
  if (cfg_.max_num_seqs < 1) throw Error("max_num_seqs must be at least 1");
  if (cfg_.max_num_batched_tokens < 1) throw Error("max_num_batched_tokens must be at least 1");
}

bool Scheduler::before(const Sequence& a, const Sequence& b) const {
  switch (cfg_.policy) {
    case SchedulePolicy::Fcfs:
      break;
    case SchedulePolicy::Priority:
      if (a.priority != b.priority) return a.priority < b.priority;
      break;
    case SchedulePolicy::Deadline: {
      const double da = a.next_due(), db = b.next_due();
      if (da != db) return da < db;
      break;
    }
  }
  return std::tie(a.times.arrival, a.id) < std::tie(b.times.arrival, b.id);
}

void Scheduler::add(std::unique_ptr<Sequence> seq) {
  assert(seq && seq->table.empty() && seq->num_computed == 0 && seq->num_tokens() > 0);
  seq->status = SeqStatus::Waiting;
  waiting_.push_back(std::move(seq));
}

Sequence* Scheduler::find(RequestId id) const {
  for (const auto* list : {&running_, &waiting_})
    for (const auto& s : *list)
      if (s->id == id) return s.get();
  return nullptr;
}

int Scheduler::cached_start(const Sequence& s, PrefixHit& hit) const {
  hit = pool_.match_prefix(s.tokens.data(), s.num_tokens());
  // The last token is always computed again: its logits give the next token. When it
  // falls inside a hit block, the pool copies (or takes over) that block before the write.
  return std::min(hit.n_blocks() * pool_.block_size(), s.num_tokens() - 1);
}

void Scheduler::preempt_last_running(ScheduleOutput& out) {
  assert(!running_.empty());
  std::unique_ptr<Sequence> v = std::move(running_.back());
  running_.pop_back();
  pool_.free(v->table);
  v->num_computed = 0;
  v->status = SeqStatus::Waiting;
  ++v->n_preemptions;
  ++stats_.preemptions;
  out.preempted.push_back(v->id);
  auto pos = std::upper_bound(waiting_.begin(), waiting_.end(), v,
                              [this](const auto& a, const auto& b) { return before(*a, *b); });
  waiting_.insert(pos, std::move(v));
}

void Scheduler::make_room_for_urgent(int budget, ScheduleOutput& out) {
  while (!waiting_.empty() && !running_.empty()) {
    const Sequence& w = *waiting_.front();
    if (!before(w, *running_.back())) return;
    // Under the deadline policy only a first token (TTFT) preempts: TPOT dues move
    // forward with every token on both sides, so they would trade places every step,
    // each time recomputing the other.
    if (cfg_.policy == SchedulePolicy::Deadline && w.num_generated() > 0) return;
    if (static_cast<int>(running_.size()) < cfg_.max_num_seqs) {
      PrefixHit hit;
      const int start = cached_start(w, hit);
      const int n = std::min(w.num_tokens() - start, budget);
      if (pool_.can_allocate(hit, start, start + n)) return;
    }
    preempt_last_running(out);
  }
}

ScheduleOutput Scheduler::schedule() {
  ScheduleOutput out;
  ++stats_.steps;
  auto urgent_first = [this](const auto& a, const auto& b) { return before(*a, *b); };
  std::sort(running_.begin(), running_.end(), urgent_first);
  std::sort(waiting_.begin(), waiting_.end(), urgent_first);
  int budget = cfg_.max_num_batched_tokens;

  if (cfg_.policy != SchedulePolicy::Fcfs) make_room_for_urgent(budget, out);
  const size_t n_preempted_for_urgent = out.preempted.size();

  // 1. Running sequences catch up: decodes and prefills in progress.
  for (size_t i = 0; i < running_.size() && budget > 0;) {
    Sequence& s = *running_[i];
    const int n = std::min(s.num_uncomputed(), budget);
    bool self_preempted = false;
    while (!pool_.can_append(s.table, s.num_computed, s.num_computed + n)) {
      if (running_.size() == 1) {
        // Alone and still too big: no amount of waiting helps (the engine keeps
        // max_model_len within the pool, so this is a caller's misconfiguration).
        out.cannot_fit.push_back(s.id);
        self_preempted = true;
        break;
      }
      self_preempted = running_.back().get() == &s;
      preempt_last_running(out);
      if (self_preempted) break;
    }
    if (self_preempted) break;
    pool_.append(s.table, s.num_computed, s.num_computed + n, out.copies);
    out.seqs.push_back({&s, n, s.num_computed + n == s.num_tokens()});
    budget -= n;
    ++i;
  }

  // 2. Admit waiting sequences, unless memory just ran out.
  const bool grew_short = out.preempted.size() > n_preempted_for_urgent;
  while (!grew_short && !waiting_.empty() && budget > 0 &&
         static_cast<int>(running_.size()) < cfg_.max_num_seqs) {
    Sequence& s = *waiting_.front();
    PrefixHit hit;
    const int start = cached_start(s, hit);
    const int n = std::min(s.num_tokens() - start, budget);
    if (!pool_.can_allocate(hit, start, start + n)) {
      // With nothing running every block is available: it can never fit.
      if (running_.empty()) out.cannot_fit.push_back(s.id);
      break;
    }
    pool_.allocate(s.table, hit, start, start + n, out.copies);
    s.num_computed = start;
    s.status = SeqStatus::Running;
    if (s.n_cached < 0) s.n_cached = std::min(start, s.n_prompt);
    stats_.prefix_query_tokens += s.num_tokens();
    stats_.prefix_hit_tokens += start;
    out.seqs.push_back({&s, n, start + n == s.num_tokens()});
    budget -= n;
    running_.push_back(std::move(waiting_.front()));
    waiting_.erase(waiting_.begin());
  }

  for (const ScheduledSeq& s : out.seqs) out.n_tokens += s.n_tokens;
  return out;
}

void Scheduler::update(const ScheduleOutput& out) {
  for (const ScheduledSeq& s : out.seqs) {
    Sequence& q = *s.seq;
    q.num_computed += s.n_tokens;
    assert(q.num_computed <= q.num_tokens());
    pool_.cache_full_blocks(q.table, q.tokens.data(), q.num_computed);
  }
}

std::unique_ptr<Sequence> Scheduler::finish(RequestId id, FinishReason reason, double now) {
  for (auto* list : {&running_, &waiting_}) {
    for (auto it = list->begin(); it != list->end(); ++it) {
      if ((*it)->id != id) continue;
      std::unique_ptr<Sequence> s = std::move(*it);
      list->erase(it);
      pool_.free(s->table);
      s->status = SeqStatus::Finished;
      s->finish_reason = reason;
      s->times.finished = now;
      return s;
    }
  }
  return nullptr;
}

}  // namespace llm
