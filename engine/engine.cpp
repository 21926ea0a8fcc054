#include "engine/engine.h"

#include <algorithm>
#include <cassert>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <utility>

#include "engine/error.h"

namespace llm {

// --- EventQueue ------------------------------------------------------------------

TokenCallback EventQueue::callback() {
  return [this](const TokenEvent& ev) {
    {
      std::lock_guard<std::mutex> lk(mu_);
      q_.push_back(ev);
    }
    cv_.notify_all();
  };
}

TokenEvent EventQueue::pop() {
  std::unique_lock<std::mutex> lk(mu_);
  cv_.wait(lk, [this] { return !q_.empty(); });
  TokenEvent ev = std::move(q_.front());
  q_.pop_front();
  return ev;
}

std::optional<TokenEvent> EventQueue::try_pop() {
  std::lock_guard<std::mutex> lk(mu_);
  if (q_.empty()) return std::nullopt;
  TokenEvent ev = std::move(q_.front());
  q_.pop_front();
  return ev;
}

bool EventQueue::empty() const {
  std::lock_guard<std::mutex> lk(mu_);
  return q_.empty();
}

// --- Engine ----------------------------------------------------------------------

namespace {

int pick_max_model_len(const Backend& be, const EngineConfig& cfg) {
  const int64_t pool_tokens = int64_t(be.kv_blocks()) * be.block_size();
  if (cfg.max_model_len < 0) throw Error("max_model_len must not be negative");
  if (cfg.max_model_len > pool_tokens)
    throw Error("max_model_len " + std::to_string(cfg.max_model_len) + " exceeds the KV cache (" +
                std::to_string(pool_tokens) + " tokens): lower it or enlarge the KV cache");
  // A sequence must fit the pool alone, or a lone long sequence could never finish.
  if (cfg.max_model_len > 0) return cfg.max_model_len;
  return static_cast<int>(std::min<int64_t>(be.config().n_ctx_train, pool_tokens));
}

}  // namespace

Engine::Engine(Backend& backend, const EngineConfig& cfg)
    : backend_(backend),
      cfg_(cfg),
      n_vocab_(backend.config().n_vocab),
      max_model_len_(pick_max_model_len(backend, cfg)),
      t0_(std::chrono::steady_clock::now()),
      pool_(backend.kv_blocks(), backend.block_size(), cfg.prefix_caching),
      sched_(cfg.sched, pool_) {
  for (int32_t id : cfg_.eog_ids)
    if (id < 0 || id >= n_vocab_)
      throw Error("end-of-generation id " + std::to_string(id) + " is outside the vocabulary");
  if (cfg_.spec.proposer) spec_ = std::make_unique<SpecDecoder>(cfg_.spec, n_vocab_);
  const char* env = std::getenv("LLM_GPU_TOPK");
  use_candidates_ = cfg_.logit_candidates && !(env && std::strcmp(env, "0") == 0);
  publish_metrics();
}

Engine::~Engine() {
  stop();
  // Nobody is left to step: every unfinished request ends here, cancelled.
  drain_inbox();
  std::vector<RequestId> ids;
  for (const auto& [id, a] : active_) ids.push_back(id);
  std::sort(ids.begin(), ids.end());
  for (RequestId id : ids) finish(id, FinishReason::Cancelled, "", nullptr);
}

double Engine::now() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
}

RequestId Engine::submit(Request r, TokenCallback cb) {
  if (r.prompt.empty()) throw Error("the prompt is empty: give at least one token");
  for (int32_t t : r.prompt)
    if (t < 0 || t >= n_vocab_)
      throw Error("prompt token " + std::to_string(t) + " is outside the vocabulary (0.." +
                  std::to_string(n_vocab_ - 1) + ")");
  if (static_cast<int>(r.prompt.size()) >= max_model_len_)
    throw Error("the prompt has " + std::to_string(r.prompt.size()) + " tokens; at most " +
                std::to_string(max_model_len_ - 1) +
                " fit with room to generate (max model length " + std::to_string(max_model_len_) +
                ")");
  if (r.stop.max_tokens < 1) throw Error("max_tokens must be at least 1");
  if (r.n_logprobs < 0 || r.n_logprobs > Sampler::kMaxProbs)
    throw Error("n_logprobs must be between 0 and " + std::to_string(Sampler::kMaxProbs));
  r.sampling.n_probs = r.n_logprobs;
  auto sampler = std::make_unique<Sampler>(r.sampling, n_vocab_);  // validates the parameters
  // Prompt tokens enter the repeat-penalty window.
  for (int32_t t : r.prompt) sampler->accept(t, /*prompt=*/true);
  const double arrival = now();
  RequestId id;
  {
    std::lock_guard<std::mutex> lk(mu_);
    id = next_id_++;
    live_.insert(id);
    inbox_.push_back(Pending{id, std::move(r), std::move(sampler), std::move(cb), arrival});
  }
  cv_.notify_all();
  return id;
}

bool Engine::cancel(RequestId id) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (!live_.count(id)) return false;
    cancels_.push_back(id);
  }
  cv_.notify_all();
  return true;
}

void Engine::cancel_all() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    cancels_.insert(cancels_.end(), live_.begin(), live_.end());
  }
  cv_.notify_all();
}

void Engine::drain_inbox() {
  std::vector<Pending> inbox;
  std::vector<RequestId> cancels;
  {
    std::lock_guard<std::mutex> lk(mu_);
    inbox.swap(inbox_);
    cancels.swap(cancels_);
  }
  for (Pending& p : inbox) {
    auto seq = std::make_unique<Sequence>(p.id, std::move(p.req.prompt), p.arrival);
    seq->stop = p.req.stop;
    seq->priority = p.req.priority;
    seq->deadline = p.req.deadline;
    active_.emplace(p.id, Active{std::move(p.sampler), std::move(p.cb),
                                 p.req.constraint ? p.req.constraint->clone() : nullptr});
    sched_.add(std::move(seq));
  }
  for (RequestId id : cancels)
    if (active_.count(id)) finish(id, FinishReason::Cancelled, "", nullptr);
}

void Engine::emit(const TokenEvent& ev) {
  auto it = active_.find(ev.id);
  assert(it != active_.end());
  if (it->second.cb) it->second.cb(ev);
}

// Ends a request: frees its blocks, records its statistics and sends the final event
// (`ev` when it carries the last token, else an event without one).
void Engine::finish(RequestId id, FinishReason reason, const std::string& error, TokenEvent* ev) {
  std::unique_ptr<Sequence> seq = sched_.finish(id, reason, now());
  assert(seq);
  if (spec_) spec_->release(id);
  TokenEvent own;
  TokenEvent& e = ev ? *ev : own;
  e.id = id;
  e.finished = true;
  e.finish_reason = reason;
  e.error = error;
  e.stats = seq->stats();
  const RequestStats& s = e.stats;
  ++totals_.requests_finished;
  totals_.prompt_tokens += s.n_prompt;
  totals_.ttft_misses += s.ttft_missed ? 1 : 0;
  totals_.tpot_misses += s.tpot_missed ? 1 : 0;
  if (s.ttft >= 0) totals_.ttft_sum += s.ttft, ++totals_.ttft_count;
  if (s.tpot >= 0) totals_.tpot_sum += s.tpot, ++totals_.tpot_count;
  if (s.e2e >= 0) totals_.e2e_sum += s.e2e, ++totals_.e2e_count;
  {
    std::lock_guard<std::mutex> lk(mu_);
    live_.erase(id);  // from here cancel(id) says false
  }
  emit(e);
  active_.erase(id);
}

bool Engine::step() {
  assert(!running() && "step() while the loop runs");
  return step_once();
}

bool Engine::step_once() {
  drain_inbox();
  if (!sched_.has_work()) {
    publish_metrics();
    return false;
  }
  const double t_start = now();
  ScheduleOutput out = sched_.schedule();
  for (RequestId id : out.cannot_fit)
    finish(id, FinishReason::Error, "the request does not fit the KV cache", nullptr);

  if (!out.empty()) {
    bool drafted = false;  // some sequence verifies speculative drafts in this step
    int k_cand = 0;        // candidates per row (0: full logits rows)
    try {
      if (spec_) {
        std::vector<Sampler*> samplers;
        std::vector<TokenConstraint*> constraints;
        for (const ScheduledSeq& s : out.seqs) {
          Active& a = active_.at(s.seq->id);
          samplers.push_back(a.sampler.get());
          constraints.push_back(a.constraint.get());
        }
        drafted = spec_->plan(out, samplers, constraints, pool_,
                              cfg_.sched.max_num_batched_tokens - out.n_tokens, max_model_len_);
      }
      if (drafted)
        spec_->fill_batch(out, batch_, pool_.block_size());
      else
        out.fill_batch(batch_, pool_.block_size());
      k_cand = candidates_for(out, drafted);
      if (k_cand == 0) logits_.resize(static_cast<size_t>(batch_.n_logits()) * n_vocab_);
      const double t_fwd = now();
      for (const BlockCopy& c : out.copies) backend_.copy_kv_block(c.src, c.dst);
      if (k_cand > 0)
        backend_.forward_candidates(batch_, k_cand, cand_);
      else
        backend_.forward(batch_, logits_.data());
      const double dt_fwd = now() - t_fwd;
      totals_.forward_s += dt_fwd;
      if (drafted) spec_->observe_forward(dt_fwd);
    } catch (const std::exception& ex) {
      // The step's K/V is unknown: end what it computed, keep the rest going.
      for (const ScheduledSeq& s : out.seqs)
        finish(s.seq->id, FinishReason::Error, std::string("forward failed: ") + ex.what(),
               nullptr);
      publish_metrics();
      return sched_.has_work();
    }
    sched_.update(out);
    sample_all(out, drafted, k_cand > 0);
    totals_.candidate_steps += k_cand > 0;

    const double dt = now() - t_start;
    const int n_rows = batch_.n_tokens();  // the scheduled tokens plus any drafts
    totals_.step_s += dt;
    totals_.batched_tokens += n_rows;
    if (n_rows == static_cast<int>(out.seqs.size())) {  // one token each: pure decode
      ++totals_.decode_steps;
      totals_.decode_tokens += n_rows;
      totals_.decode_s += dt;
    }
  }
  publish_metrics();
  return sched_.has_work();
}

int Engine::candidates_for(const ScheduleOutput& out, bool drafted) const {
  if (!use_candidates_) return 0;
  int k = 0;
  for (size_t i = 0; i < out.seqs.size(); ++i) {
    const ScheduledSeq& s = out.seqs[i];
    if (!s.sample) continue;
    const Active& a = active_.at(s.seq->id);
    const int need = a.constraint ? 0 : a.sampler->candidates_needed();
    if (need == 0) return 0;
    // Rejection sampling needs the whole distributions; greedy verification only what
    // sampling the row would need (SpecDecoder::verify_candidates).
    if (drafted && spec_->has_drafts(static_cast<int>(i)) && a.sampler->params().temperature > 0)
      return 0;
    k = std::max(k, need);
  }
  return k <= kMaxCandidates ? k : 0;  // k == 0: nothing samples
}

// Samples every sequence that reached its token count (logits row k for the k-th of them,
// or where the SpecDecoder put them), or verifies its drafts, then appends, checks stops
// and emits in batch order: a verified step's tokens one by one, so that nothing past a
// stop is emitted. The samplers are independent, so they run in parallel: 128 sequences of
// a 128K vocabulary are ~16M logits per step.
void Engine::sample_all(const ScheduleOutput& out, bool drafted, bool candidates) {
  std::vector<int> idx;  // index in out.seqs of each sampling sequence
  std::vector<Sequence*> seqs;
  std::vector<Sampler*> samplers;
  std::vector<TokenConstraint*> constraints;
  for (size_t i = 0; i < out.seqs.size(); ++i) {
    const ScheduledSeq& s = out.seqs[i];
    if (!s.sample) continue;
    idx.push_back(static_cast<int>(i));
    seqs.push_back(s.seq);
    Active& a = active_.at(s.seq->id);
    samplers.push_back(a.sampler.get());
    constraints.push_back(a.constraint.get());
  }
  auto verifies = [&](int k) { return drafted && spec_->has_drafts(idx[k]); };
  const int n = static_cast<int>(seqs.size());
  std::vector<std::vector<SampleResult>> results(static_cast<size_t>(n));
  std::vector<std::string> errors(static_cast<size_t>(n));
  // Rows of full logits (a vocabulary each) are worth threads; a few thousand candidates
  // are not: waking the team costs more than they do (H100 host, 32 greedy rows: update +
  // sampling 52-101 us a step with threads, 16-20 us without; PERF.md).
  [[maybe_unused]] const bool threads = n >= 8 && (!candidates || n * cand_.k >= 2048);
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) if (threads)
#endif
  for (int k = 0; k < n; ++k) {
    try {
      const int row = drafted ? spec_->logit_row(idx[k]) : k;
      if (candidates && verifies(k)) {  // greedy, no constraint: Engine::candidates_for
        results[k] = spec_->verify_candidates(idx[k], *samplers[k], cand_, row);
        continue;
      }
      if (candidates) {  // no constraint
        SampleResult r = samplers[k]->sample_candidates(cand_.row_ids(row), cand_.row_logits(row),
                                                        cand_.k, cand_.stats[row]);
        samplers[k]->accept(r.id);
        results[k].push_back(std::move(r));
        continue;
      }
      float* logits = logits_.data() + static_cast<size_t>(row) * n_vocab_;
      if (verifies(k)) {
        results[k] = spec_->verify(idx[k], *samplers[k], constraints[k], logits);
      } else {
        if (constraints[k]) constraints[k]->mask(logits);  // tokens the grammar refuses -> -inf
        SampleResult r = samplers[k]->sample(logits);
        samplers[k]->accept(r.id);
        if (constraints[k]) constraints[k]->accept(r.id);
        results[k].push_back(std::move(r));
      }
    } catch (const std::exception& ex) {  // e.g. every token banned by logit_bias
      errors[k] = ex.what();
    }
  }
  const double t = now();
  for (int k = 0; k < n; ++k) {
    Sequence& q = *seqs[k];
    if (!errors[k].empty()) {
      finish(q.id, FinishReason::Error, errors[k], nullptr);
      continue;
    }
    bool finished = false;
    for (SampleResult& r : results[k]) {
      ++totals_.generated_tokens;
      TokenEvent ev;
      ev.id = q.id;
      ev.token = r.id;
      ev.logprob = r.logprob;
      ev.top = std::move(r.top);
      const FinishReason fr = q.append_token(r.id, cfg_.eog_ids, max_model_len_, t);
      if (fr != FinishReason::None) {
        finish(q.id, fr, "", &ev);  // q is gone from here on
        finished = true;
        break;
      }
      emit(ev);
    }
    if (verifies(k)) spec_->commit(idx[k], finished ? nullptr : &q, pool_);
  }
}

void Engine::publish_metrics() {
  EngineMetrics m = totals_;
  m.waiting = sched_.num_waiting();
  m.running = sched_.num_running();
  const SchedulerStats& st = sched_.stats();
  m.steps = st.steps;
  m.preemptions = st.preemptions;
  m.prefix_query_tokens = st.prefix_query_tokens;
  m.prefix_hit_tokens = st.prefix_hit_tokens;
  m.kv = pool_.usage();
  if (spec_) m.spec = spec_->stats();
  std::lock_guard<std::mutex> lk(mu_);
  m.waiting += static_cast<int>(inbox_.size());
  snapshot_ = m;
}

EngineMetrics Engine::metrics() const {
  std::lock_guard<std::mutex> lk(mu_);
  return snapshot_;
}

void Engine::loop() {
  bool busy = true;
  for (;;) {
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] { return stop_ || busy || !inbox_.empty() || !cancels_.empty(); });
      if (stop_) return;
    }
    busy = step_once();
  }
}

void Engine::start() {
  if (loop_.joinable()) return;
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = false;
  }
  loop_running_ = true;
  loop_ = std::thread([this] { loop(); });
}

void Engine::stop() {
  if (!loop_.joinable()) return;
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  loop_.join();
  loop_running_ = false;
}

std::vector<GenerationResult> Engine::generate_all(const std::vector<Request>& requests) {
  std::vector<GenerationResult> results(requests.size());
  std::mutex mu;
  std::condition_variable cv;
  size_t n_done = 0;
  std::vector<RequestId> ids;
  try {
    for (size_t i = 0; i < requests.size(); ++i) {
      GenerationResult* res = &results[i];
      ids.push_back(submit(requests[i], [res, &mu, &cv, &n_done](const TokenEvent& ev) {
        if (ev.token >= 0) {
          res->tokens.push_back(ev.token);
          res->logprobs.push_back(ev.logprob);
          if (!ev.top.empty()) res->top.push_back(ev.top);
        }
        if (!ev.finished) return;
        res->finish_reason = ev.finish_reason;
        res->error = ev.error;
        res->stats = ev.stats;
        std::lock_guard<std::mutex> lk(mu);
        ++n_done;
        cv.notify_all();
      }));
      results[i].id = ids.back();
    }
  } catch (...) {
    // A bad request: withdraw the ones already queued, whose callbacks point here.
    for (RequestId id : ids) cancel(id);
    for (;;) {
      if (!running()) step();
      std::unique_lock<std::mutex> lk(mu);
      if (running()) cv.wait(lk, [&] { return n_done == ids.size(); });
      if (n_done == ids.size()) break;
    }
    throw;
  }
  if (running()) {
    std::unique_lock<std::mutex> lk(mu);
    cv.wait(lk, [&] { return n_done == requests.size(); });
  } else {
    for (;;) {
      step();
      std::lock_guard<std::mutex> lk(mu);
      if (n_done == requests.size()) break;
    }
  }
  return results;
}

}  // namespace llm
