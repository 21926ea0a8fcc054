// The engine every front end drives (llm run / serve / chat / bench): requests in, a
// stream of token events out, many requests sharing one backend through continuous
// batching over the paged KV cache.
//
// One step (nano-vllm's three calls):
//   schedule()   Scheduler: which sequences compute how many tokens (engine/scheduler.h)
//   run          block copies, then Backend::forward over the flat Batch
//   postprocess  sample each sequence that reached its token count (engine/sampler.h),
//                append, check stops, emit events, free what finished
//
// Threads: submit(), cancel() and metrics() may be called from any thread. The steps run
// on the engine's own loop thread after start(), or on the caller's thread through step()
// and generate_all() when the loop is not running. Callbacks run on the stepping thread,
// must return quickly and must not throw; they may call submit() and cancel(), not step().
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "engine/backend.h"
#include "engine/block_pool.h"
#include "engine/sampler.h"
#include "engine/scheduler.h"
#include "engine/sequence.h"
#include "engine/spec_decode.h"
#include "engine/token_constraint.h"

namespace llm {

struct Request {
  std::vector<int32_t> prompt;  // token ids, BOS included if the model wants one
  SamplingParams sampling;
  StopConditions stop;
  int priority = 0;    // lower first, under SchedulePolicy::Priority
  Deadline deadline;   // TTFT/TPOT targets, under SchedulePolicy::Deadline
  int n_logprobs = 0;  // top logprobs reported per token (0..Sampler::kMaxProbs)
  // Grammar-constrained decoding (engine/token_constraint.h), in its start state: the
  // engine works on its own clone(), masking each step's logits before sampling and
  // advancing it with the sampled token. Null: unconstrained.
  std::shared_ptr<const TokenConstraint> constraint;
};

// One generated token, or the end of a request. Exactly one event per request has
// finished = true, and none follow it.
struct TokenEvent {
  RequestId id = 0;
  int32_t token = -1;             // -1 when the event carries no token (cancelled, error)
  float logprob = 0;              // of token, log-softmax of the (penalised) logits
  std::vector<TokenLogprob> top;  // (n_logprobs) best first
  bool finished = false;
  FinishReason finish_reason = FinishReason::None;
  std::string error;   // what went wrong, for FinishReason::Error
  RequestStats stats;  // filled when finished
};

using TokenCallback = std::function<void(const TokenEvent&)>;

// A thread-safe queue of events, for front ends that prefer pulling to callbacks.
class EventQueue {
 public:
  // A callback that pushes into this queue (which must outlive the request).
  TokenCallback callback();
  TokenEvent pop();                     // blocks until an event is there
  std::optional<TokenEvent> try_pop();  // never blocks
  bool empty() const;

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<TokenEvent> q_;
};

struct EngineConfig {
  SchedulerConfig sched;
  bool prefix_caching = true;
  int max_model_len = 0;         // tokens per sequence; 0 = min(n_ctx_train, KV pool)
  std::vector<int32_t> eog_ids;  // end-of-generation ids (from the tokenizer)
  SpecConfig spec;               // speculative decoding; off without a proposer
  // Steps in which every sampling sequence can be sampled exactly from its logits' best
  // few (Sampler::candidates_needed: greedy or top-k within kMaxCandidates, no penalties,
  // logit_bias or grammar; not verifying drafts) ask the backend for candidates
  // (Backend::forward_candidates) instead of full logits rows: same tokens, same
  // logprobs, a fraction of the device-to-host copy and host work. LLM_GPU_TOPK=0 in the
  // environment turns it off (A/B measurements).
  bool logit_candidates = true;
};

// A snapshot, taken at the end of each step.
struct EngineMetrics {
  int waiting = 0;
  int running = 0;
  int64_t steps = 0;
  int64_t preemptions = 0;
  KvUsage kv;
  int64_t prefix_query_tokens = 0;  // tokens of sequences at admission
  int64_t prefix_hit_tokens = 0;    // of which found in the prefix cache
  int64_t requests_finished = 0;    // any reason, cancellations included
  int64_t prompt_tokens = 0;        // of finished requests
  int64_t generated_tokens = 0;     // all tokens sampled so far
  int64_t ttft_misses = 0;          // finished requests that missed their TTFT target
  int64_t tpot_misses = 0;
  double ttft_sum = 0, tpot_sum = 0, e2e_sum = 0;  // seconds, over finished requests that have one
  int64_t ttft_count = 0, tpot_count = 0, e2e_count = 0;

  // Where the time goes, for benchmarks (llama-batched-bench's S_TG is
  // decode_tokens / decode_s at a fixed number of sequences).
  int64_t batched_tokens = 0;  // tokens computed by forward steps
  double step_s = 0;           // whole steps: schedule, forward, sampling, events
  double forward_s = 0;        // block copies and Backend::forward
  int64_t decode_steps = 0;    // steps in which every sequence computed one token
  int64_t decode_tokens = 0;
  double decode_s = 0;
  int64_t candidate_steps = 0;  // steps whose logits came back as candidates (EngineConfig)

  SpecStats spec;  // speculative decoding: drafted, accepted, tokens per verifying step

  double prefix_hit_rate() const {
    return prefix_query_tokens ? double(prefix_hit_tokens) / double(prefix_query_tokens) : 0.0;
  }
};

// What generate_all returns per request, in request order.
struct GenerationResult {
  RequestId id = 0;
  std::vector<int32_t> tokens;                 // generated tokens (stop token included)
  std::vector<float> logprobs;                 // (tokens.size())
  std::vector<std::vector<TokenLogprob>> top;  // (tokens.size()) when n_logprobs > 0
  FinishReason finish_reason = FinishReason::None;
  std::string error;
  RequestStats stats;
};

class Engine {
 public:
  // The backend must outlive the engine; its KV pool becomes the engine's block pool.
  // Throws llm::Error for a configuration that cannot work.
  Engine(Backend& backend, const EngineConfig& cfg);
  ~Engine();  // stops the loop; every unfinished request gets a cancelled event
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Queues a request; its events go to `cb`. Throws llm::Error for a request that can
  // never run (empty prompt, unknown token, prompt filling max_model_len, bad sampling
  // parameters). Thread-safe.
  RequestId submit(Request r, TokenCallback cb);
  // Cancels an unfinished request: it gets a final event with FinishReason::Cancelled
  // (unless it finishes first). Returns false for an unknown or finished id. Thread-safe.
  bool cancel(RequestId id);
  // Cancels every unfinished request (server shutdown). Thread-safe.
  void cancel_all();

  // The step loop on the engine's own thread. Call start() and stop() from one
  // controlling thread (the one that owns the engine).
  void start();
  void stop();  // returns after the current step; requests stay queued
  bool running() const { return loop_running_.load(); }

  // One step on the calling thread (the loop must not be running). Returns whether
  // requests remain.
  bool step();
  // Runs the requests to the end and returns their results in order: on the loop thread
  // if it runs, else by stepping on the calling thread. Throws like submit().
  std::vector<GenerationResult> generate_all(const std::vector<Request>& requests);

  EngineMetrics metrics() const;  // thread-safe
  int max_model_len() const { return max_model_len_; }
  const Backend& backend() const { return backend_; }

 private:
  struct Pending {
    RequestId id;
    Request req;
    std::unique_ptr<Sampler> sampler;
    TokenCallback cb;
    double arrival;
  };
  struct Active {
    std::unique_ptr<Sampler> sampler;
    TokenCallback cb;
    std::unique_ptr<TokenConstraint> constraint;  // this sequence's own state, or null
  };

  double now() const;
  bool step_once();
  void drain_inbox();
  void finish(RequestId id, FinishReason reason, const std::string& error, TokenEvent* ev);
  void emit(const TokenEvent& ev);
  // Candidates per row for this step's sampling rows, or 0: full logits. drafted: the
  // step verifies drafts (which then must be greedy to take candidates).
  int candidates_for(const ScheduleOutput& out, bool drafted) const;
  void sample_all(const ScheduleOutput& out, bool drafted, bool candidates);
  void publish_metrics();
  void loop();

  Backend& backend_;
  EngineConfig cfg_;
  int n_vocab_;
  int max_model_len_;
  bool use_candidates_;  // cfg_.logit_candidates, unless LLM_GPU_TOPK=0
  std::chrono::steady_clock::time_point t0_;

  // Owned by the stepping thread.
  BlockPool pool_;
  Scheduler sched_;
  std::unordered_map<RequestId, Active> active_;
  Batch batch_;
  std::vector<float> logits_;          // (n_sample, n_vocab)
  LogitCandidates cand_;               // (n_sample, k) in steps that use candidates
  EngineMetrics totals_;               // the finished-request part of the metrics
  std::unique_ptr<SpecDecoder> spec_;  // null without speculation

  // Shared with submitters, guarded by mu_.
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Pending> inbox_;
  std::vector<RequestId> cancels_;
  std::unordered_set<RequestId> live_;  // submitted and not finished
  RequestId next_id_ = 1;
  EngineMetrics snapshot_;
  bool stop_ = false;
  std::thread loop_;  // touched by start() and stop() only
  std::atomic<bool> loop_running_{false};
};

}  // namespace llm
