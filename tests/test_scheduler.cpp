// Scheduler: hand-worked cases of chunked prefill, prefix hits and the policies, and a
// property test that runs thousands of steps of random arrivals, lengths and
// cancellations over tiny KV pools. The test plays the model runner itself: a simulated
// K/V store (the token at each slot), and a "model" whose next token is a hash of the
// whole context it reads back through the block table. Any slot that holds the wrong
// token (bad block table, a shared block overwritten, a stale prefix hit, a lost
// preemption) changes that request's output, which is checked against the same model
// run on the request's own token list, without any cache.
#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>

#include "engine/scheduler.h"

using namespace llm;

namespace {

constexpr int kVocab = 24;
constexpr int32_t kEog = 0;

int32_t next_token(const int32_t* ctx, int n) {
  uint64_t h = 0x12345;
  for (int i = 0; i < n; ++i) {
    h = (h ^ static_cast<uint64_t>(ctx[i] + 1)) * 0x100000001b3ull;
    h ^= h >> 29;
  }
  return static_cast<int32_t>(h % kVocab);
}

struct Spec {
  std::vector<int32_t> prompt;
  StopConditions stop;
  int priority = 0;
  Deadline deadline;
};

// The output the request must produce, computed without any KV cache.
std::vector<int32_t> reference(const Spec& s, int max_model_len) {
  Sequence q(0, s.prompt, 0);
  q.stop = s.stop;
  while (q.append_token(next_token(q.tokens.data(), q.num_tokens()), {kEog}, max_model_len, 0) ==
         FinishReason::None) {
  }
  return std::vector<int32_t>(q.tokens.begin() + q.n_prompt, q.tokens.end());
}

// Drives a scheduler as the engine would, with a simulated backend.
struct Sim {
  BlockPool pool;
  Scheduler sched;
  int max_model_len;
  std::vector<int32_t> kv;  // (num_blocks * block_size) token written at each slot
  std::map<RequestId, std::unique_ptr<Sequence>> done;
  std::vector<RequestId> first_token_order;
  RequestId next_id = 1;
  double now = 0;
  int64_t copies = 0;

  Sim(int num_blocks, int block_size, const SchedulerConfig& cfg, int max_len = 0)
      : pool(num_blocks, block_size),
        sched(cfg, pool),
        max_model_len(max_len > 0 ? max_len : num_blocks * block_size),
        kv(static_cast<size_t>(num_blocks) * block_size, -1) {}

  RequestId submit(const Spec& s) {
    auto q = std::make_unique<Sequence>(next_id++, s.prompt, now);
    q->stop = s.stop;
    q->priority = s.priority;
    q->deadline = s.deadline;
    const RequestId id = q->id;
    sched.add(std::move(q));
    return id;
  }

  void finish(RequestId id, FinishReason r) {
    auto q = sched.finish(id, r, now);
    REQUIRE(q);
    done[id] = std::move(q);
  }

  // One engine step; returns the plan for inspection.
  ScheduleOutput step() {
    const int bs = pool.block_size();
    ScheduleOutput out = sched.schedule();
    now += 1;
    // The plan respects its limits and names each sequence once.
    REQUIRE(out.n_tokens <= sched.config().max_num_batched_tokens);
    REQUIRE(sched.num_running() <= sched.config().max_num_seqs);
    std::set<RequestId> ids;
    for (const ScheduledSeq& s : out.seqs) {
      REQUIRE(ids.insert(s.seq->id).second);
      REQUIRE(s.n_tokens >= 1);
      REQUIRE(s.seq->status == SeqStatus::Running);
      REQUIRE(s.seq->num_computed + s.n_tokens <= s.seq->num_tokens());
    }
    for (const BlockCopy& c : out.copies)
      std::copy_n(kv.begin() + c.src * bs, bs, kv.begin() + c.dst * bs);
    copies += static_cast<int64_t>(out.copies.size());
    // The backend's contract: write every row's K/V, then attend through the table.
    Batch batch;
    out.fill_batch(batch, bs);
    for (int r = 0; r < batch.n_tokens(); ++r) {
      // A written block belongs to its sequence alone: written while shared or while in the
      // prefix cache, it would change K/V that others read (even if, here, to equal tokens).
      const int32_t block = batch.slots[r] / bs;
      REQUIRE(pool.ref_count(block) == 1);
      REQUIRE_FALSE(pool.is_registered(block));
      kv[static_cast<size_t>(batch.slots[r])] = batch.tokens[r];
    }
    std::vector<int32_t> sampled;
    for (const ScheduledSeq& s : out.seqs) {
      if (!s.sample) continue;
      const Sequence& q = *s.seq;
      std::vector<int32_t> ctx(static_cast<size_t>(q.num_tokens()));
      for (int p = 0; p < q.num_tokens(); ++p)
        ctx[p] = kv[static_cast<size_t>(q.table.blocks[p / bs]) * bs + p % bs];
      sampled.push_back(next_token(ctx.data(), q.num_tokens()));
    }
    REQUIRE(static_cast<int>(sampled.size()) == batch.n_logits());
    sched.update(out);
    size_t k = 0;
    for (const ScheduledSeq& s : out.seqs) {
      REQUIRE(s.seq->num_computed <= s.seq->num_tokens());
      if (!s.sample) continue;
      if (s.seq->num_generated() == 0) first_token_order.push_back(s.seq->id);
      const FinishReason r = s.seq->append_token(sampled[k++], {kEog}, max_model_len, now);
      if (r != FinishReason::None) finish(s.seq->id, r);
    }
    for (RequestId id : out.cannot_fit) finish(id, FinishReason::Error);
    REQUIRE(pool.check_consistency());
    return out;
  }

  void run_to_end(int max_steps = 100000) {
    for (int i = 0; i < max_steps && sched.has_work(); ++i) step();
    REQUIRE_FALSE(sched.has_work());
  }

  std::vector<int32_t> output(RequestId id) const {
    const Sequence& q = *done.at(id);
    return std::vector<int32_t>(q.tokens.begin() + q.n_prompt, q.tokens.end());
  }
};

std::vector<int32_t> tokens(int n, int32_t first) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) t[i] = 1 + (first + i) % (kVocab - 1);  // never kEog
  return t;
}

Spec spec(std::vector<int32_t> prompt, int max_tokens, bool ignore_eos = true) {
  Spec s;
  s.prompt = std::move(prompt);
  s.stop.max_tokens = max_tokens;
  s.stop.ignore_eos = ignore_eos;
  return s;
}

}  // namespace

TEST_CASE("scheduler: chunked prefill packs with decodes under the token budget") {
  SchedulerConfig cfg;
  cfg.max_num_batched_tokens = 8;
  Sim sim(64, 4, cfg);
  const RequestId a = sim.submit(spec(tokens(5, 0), 6));
  ScheduleOutput o = sim.step();  // a: whole 5-token prompt, samples
  REQUIRE(o.seqs.size() == 1);
  CHECK(o.seqs[0].n_tokens == 5);
  CHECK(o.seqs[0].sample);
  const RequestId b = sim.submit(spec(tokens(20, 7), 3));
  o = sim.step();  // a decodes 1, b prefills 7 of 20
  REQUIRE(o.seqs.size() == 2);
  CHECK(o.seqs[0].seq->id == a);
  CHECK(o.seqs[0].n_tokens == 1);
  CHECK(o.seqs[1].seq->id == b);
  CHECK(o.seqs[1].n_tokens == 7);
  CHECK_FALSE(o.seqs[1].sample);
  o = sim.step();  // 1 + 7 more
  CHECK(o.seqs[1].n_tokens == 7);
  CHECK_FALSE(o.seqs[1].sample);
  o = sim.step();  // b's last 6: samples its first token
  CHECK(o.n_tokens == 7);
  CHECK(o.seqs[1].n_tokens == 6);
  CHECK(o.seqs[1].sample);
  sim.run_to_end();
  CHECK(sim.output(a) == reference(spec(tokens(5, 0), 6), 256));
  CHECK(sim.output(b) == reference(spec(tokens(20, 7), 3), 256));
  CHECK(sim.pool.usage().used == 0);
}

TEST_CASE("scheduler: a cached prefix is not computed again") {
  SchedulerConfig cfg;
  Sim sim(64, 4, cfg);
  std::vector<int32_t> p1 = tokens(14, 0), p2 = tokens(14, 0);
  p2.back() = 9;  // same first 13 tokens: 3 full blocks of 4
  const RequestId a = sim.submit(spec(p1, 4));
  sim.run_to_end();
  const RequestId b = sim.submit(spec(p2, 4));
  ScheduleOutput o = sim.step();
  REQUIRE(o.seqs.size() == 1);
  CHECK(o.seqs[0].seq->num_computed - o.seqs[0].n_tokens == 12);  // 12 of 14 from the cache
  CHECK(o.seqs[0].n_tokens == 2);
  sim.run_to_end();
  CHECK(sim.done.at(b)->stats().n_cached == 12);
  CHECK(sim.sched.stats().prefix_hit_tokens == 12);
  CHECK(sim.sched.stats().prefix_query_tokens == 28);
  // The whole prompt cached: only its last token is computed, into a private block.
  const RequestId c = sim.submit(spec(tokens(12, 0), 4));
  o = sim.step();
  CHECK(o.seqs[0].seq->num_computed - o.seqs[0].n_tokens == 11);
  CHECK(o.seqs[0].n_tokens == 1);
  sim.run_to_end();
  CHECK(sim.output(a) == reference(spec(p1, 4), 256));
  CHECK(sim.output(b) == reference(spec(p2, 4), 256));
  CHECK(sim.output(c) == reference(spec(tokens(12, 0), 4), 256));
}

TEST_CASE("scheduler: two requests with one prompt at once share it through copy-on-write") {
  SchedulerConfig cfg;
  Sim sim(64, 4, cfg);
  const RequestId a = sim.submit(spec(tokens(8, 3), 5));
  sim.step();  // a computes 8 tokens: two full blocks, registered
  const RequestId b = sim.submit(spec(tokens(8, 3), 5));
  ScheduleOutput o = sim.step();
  REQUIRE(o.seqs.size() == 2);
  CHECK(o.seqs[1].seq->id == b);
  CHECK(o.seqs[1].n_tokens == 1);  // position 7 recomputed in a copy of a's block
  CHECK(o.copies.size() == 1);
  sim.run_to_end();
  CHECK(sim.output(a) == sim.output(b));
  CHECK(sim.output(a) == reference(spec(tokens(8, 3), 5), 256));
}

TEST_CASE("scheduler: a pool too small for everyone preempts the newest and recomputes") {
  SchedulerConfig cfg;
  Sim sim(6, 4, cfg);  // 24 token slots
  std::vector<Spec> specs;
  std::vector<RequestId> ids;
  for (int i = 0; i < 3; ++i) {
    specs.push_back(spec(tokens(6, 5 * i), 10));
    ids.push_back(sim.submit(specs.back()));
  }
  sim.run_to_end();
  CHECK(sim.sched.stats().preemptions > 0);
  for (size_t i = 0; i < ids.size(); ++i) CHECK(sim.output(ids[i]) == reference(specs[i], 24));
  // FCFS: the oldest is never the victim.
  CHECK(sim.done.at(ids[0])->n_preemptions == 0);
  CHECK(sim.done.at(ids[2])->n_preemptions > 0);
  CHECK(sim.pool.usage().used == 0);
}

TEST_CASE("scheduler: a request that can never fit is reported, not retried forever") {
  SchedulerConfig cfg;
  Sim sim(4, 4, cfg, /*max_len=*/1000);
  const RequestId a = sim.submit(spec(tokens(17, 0), 2));  // 17 > 16 slots
  const RequestId b = sim.submit(spec(tokens(5, 0), 2));
  sim.run_to_end(100);
  CHECK(sim.done.at(a)->finish_reason == FinishReason::Error);
  CHECK(sim.done.at(b)->finish_reason == FinishReason::Length);
}

TEST_CASE("scheduler: priority policy serves lower values first and preempts for them") {
  SchedulerConfig cfg;
  cfg.policy = SchedulePolicy::Priority;
  cfg.max_num_seqs = 1;
  Sim sim(64, 4, cfg);
  Spec lo = spec(tokens(4, 0), 5), hi = spec(tokens(4, 1), 5);
  lo.priority = 5;
  hi.priority = 1;
  const RequestId a = sim.submit(lo);
  const RequestId b = sim.submit(hi);
  sim.step();
  CHECK(sim.first_token_order == std::vector<RequestId>{b});
  sim.run_to_end();
  CHECK(sim.first_token_order == std::vector<RequestId>{b, a});
  // Arriving while a lower priority one runs, with no free seat: it preempts it.
  const RequestId c = sim.submit(lo);
  sim.step();
  sim.step();
  const RequestId d = sim.submit(hi);
  ScheduleOutput o = sim.step();
  CHECK(o.preempted == std::vector<RequestId>{c});
  REQUIRE(o.seqs.size() == 1);
  CHECK(o.seqs[0].seq->id == d);
  sim.run_to_end();
  CHECK(sim.output(c) == reference(lo, 256));
  CHECK(sim.output(d) == reference(hi, 256));
  CHECK(sim.done.at(c)->n_preemptions == 1);
}

TEST_CASE("scheduler: deadline policy orders by slack and reports misses") {
  SchedulerConfig cfg;
  cfg.policy = SchedulePolicy::Deadline;
  cfg.max_num_seqs = 1;
  Sim sim(64, 4, cfg);
  // One step per time unit and one seat: each request takes 3 steps (prompt + 2 decodes).
  Spec loose = spec(tokens(4, 0), 3), none = spec(tokens(4, 1), 3), tight = spec(tokens(4, 2), 3);
  loose.deadline.ttft = 10;
  tight.deadline.ttft = 2;
  tight.deadline.tpot = 1;
  const RequestId n = sim.submit(none);
  const RequestId l = sim.submit(loose);
  const RequestId t = sim.submit(tight);
  sim.run_to_end();
  // Earliest due first; the request without targets last.
  CHECK(sim.first_token_order == std::vector<RequestId>{t, l, n});
  CHECK_FALSE(sim.done.at(t)->stats().ttft_missed);
  CHECK_FALSE(sim.done.at(t)->stats().tpot_missed);
  CHECK_FALSE(sim.done.at(l)->stats().ttft_missed);
  // A target nobody can meet (first token before the first step ends) is counted missed.
  Spec hopeless = spec(tokens(4, 3), 2);
  hopeless.deadline.ttft = 0.5;
  const RequestId h = sim.submit(hopeless);
  sim.run_to_end();
  CHECK(sim.done.at(h)->stats().ttft_missed);

  // A request with a TTFT target preempts one without a target for the only seat.
  const RequestId slow = sim.submit(spec(tokens(4, 4), 10));
  sim.step();
  sim.step();
  Spec urgent = spec(tokens(4, 5), 2);
  urgent.deadline.ttft = 1.5;
  const RequestId u = sim.submit(urgent);
  ScheduleOutput o = sim.step();
  CHECK(o.preempted == std::vector<RequestId>{slow});
  REQUIRE(o.seqs.size() == 1);
  CHECK(o.seqs[0].seq->id == u);
  sim.run_to_end();
  CHECK_FALSE(sim.done.at(u)->stats().ttft_missed);
  CHECK(sim.output(slow) == reference(spec(tokens(4, 4), 10), 256));
}

TEST_CASE("scheduler: random arrivals, lengths and cancellations over tiny pools") {
  int64_t preemptions = 0, hit_tokens = 0, copies = 0, cancelled = 0, finished = 0, steps = 0;
  for (uint32_t seed = 1; seed <= 300; ++seed) {
    std::mt19937 rng(seed);
    auto uni = [&rng](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
    SchedulerConfig cfg;
    cfg.policy = static_cast<SchedulePolicy>(seed % 3);
    cfg.max_num_seqs = uni(1, 8);
    cfg.max_num_batched_tokens = uni(1, 40);
    const int bs = std::vector<int>{1, 2, 4, 8}[static_cast<size_t>(uni(0, 3))];
    const int n_blocks = uni(48 / bs / 2 + 1, 96 / bs);  // sometimes barely one long request
    const int max_len = std::min(48, n_blocks * bs);
    Sim sim(n_blocks, bs, cfg, max_len);
    std::vector<std::vector<int32_t>> prefixes(3);
    for (auto& p : prefixes)
      for (int i = uni(0, 20); i > 0; --i) p.push_back(uni(1, kVocab - 1));

    std::map<RequestId, Spec> specs;
    std::set<RequestId> cancelled_ids;
    const int n_requests = uni(5, 40);
    int submitted = 0;
    for (int step = 0; step < 20000 && (submitted < n_requests || sim.sched.has_work()); ++step) {
      // Arrivals in bursts.
      while (submitted < n_requests && uni(0, 2) == 0) {
        Spec s;
        s.prompt = prefixes[static_cast<size_t>(uni(0, 2))];
        // Sometimes exactly a shared prefix: whole-prompt hits on blocks still in use.
        for (int i = uni(s.prompt.empty() ? 1 : 0, 16); i > 0; --i)
          s.prompt.push_back(uni(0, kVocab - 1));
        if (static_cast<int>(s.prompt.size()) >= max_len)
          s.prompt.resize(static_cast<size_t>(max_len - 1));
        s.stop.max_tokens = uni(1, 24);
        s.stop.ignore_eos = uni(0, 1) == 1;
        if (uni(0, 3) == 0) s.stop.stop_ids = {uni(1, kVocab - 1)};
        s.priority = uni(0, 3);
        if (uni(0, 1)) s.deadline.ttft = uni(1, 30);
        if (uni(0, 1)) s.deadline.tpot = uni(1, 4);
        const RequestId id = sim.submit(s);
        specs[id] = s;
        ++submitted;
      }
      // Cancellations of waiting or running requests.
      if (uni(0, 14) == 0 && sim.sched.has_work()) {
        const RequestId id = static_cast<RequestId>(uni(1, submitted));
        if (sim.sched.find(id)) {
          sim.finish(id, FinishReason::Cancelled);
          cancelled_ids.insert(id);
        }
      }
      if (sim.sched.has_work()) sim.step();
      const KvUsage u = sim.pool.usage();
      REQUIRE(u.used + u.cached + u.free == u.total);
    }
    REQUIRE_FALSE(sim.sched.has_work());
    REQUIRE(static_cast<int>(sim.done.size()) == n_requests);  // nobody lost
    for (const auto& [id, s] : specs) {
      const Sequence& q = *sim.done.at(id);
      REQUIRE(q.finished());
      if (cancelled_ids.count(id)) {
        REQUIRE(q.finish_reason == FinishReason::Cancelled);
        // What it produced before the cancel is a prefix of its reference.
        const std::vector<int32_t> ref = reference(s, max_len);
        const std::vector<int32_t> out = sim.output(id);
        REQUIRE(out.size() <= ref.size());
        REQUIRE(std::equal(out.begin(), out.end(), ref.begin()));
        ++cancelled;
      } else {
        REQUIRE(q.finish_reason != FinishReason::Error);
        REQUIRE(sim.output(id) == reference(s, max_len));
        ++finished;
      }
    }
    REQUIRE(sim.pool.usage().used == 0);
    for (int b = 0; b < sim.pool.num_blocks(); ++b) REQUIRE(sim.pool.ref_count(b) == 0);
    preemptions += sim.sched.stats().preemptions;
    hit_tokens += sim.sched.stats().prefix_hit_tokens;
    copies += sim.copies;
    steps += sim.sched.stats().steps;
  }
  MESSAGE(steps << " steps, preemptions " << preemptions << ", prefix-hit tokens " << hit_tokens
                << ", copies " << copies << ", finished " << finished << ", cancelled "
                << cancelled);
  CHECK(preemptions > 100);
  CHECK(hit_tokens > 1000);
  CHECK(copies > 10);
  CHECK(cancelled > 20);
}
