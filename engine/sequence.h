// Per-request state as the scheduler sees it. One rule drives everything (vLLM v1):
// `num_computed` tokens have K/V in the cache and the sequence simply catches up to its
// token count. Prefill, chunked prefill, decode, prefix-cache hits and recompute after
// preemption are all "compute tokens [num_computed, num_tokens)"; the step that reaches
// num_tokens yields logits for the next token.
//
// Sampling state (engine/sampler.h) lives with the engine, next to the request it came
// from; a Sequence carries what scheduling and stopping need.
#pragma once
#include <cstdint>
#include <limits>
#include <vector>

#include "engine/block_pool.h"

namespace llm {

using RequestId = uint64_t;

enum class FinishReason { None, Stop, Length, Cancelled, Error };
const char* to_string(FinishReason r);  // "stop", "length", "cancelled", "error", ""

enum class SeqStatus { Waiting, Running, Finished };

struct StopConditions {
  int max_tokens = 256;           // generated tokens at most (reason length)
  std::vector<int32_t> stop_ids;  // finish after generating one of these (reason stop)
  bool ignore_eos = false;        // keep going past the model's end-of-generation ids
};

// Service-level targets in seconds; 0 = none. A request misses its TTFT target when its
// first token comes later than arrival + ttft, and its TPOT target when the mean time
// between its later tokens exceeds tpot.
struct Deadline {
  double ttft = 0;
  double tpot = 0;
};

// Seconds on the engine's clock; -1 until it happens.
struct SeqTimes {
  double arrival = -1;
  double first_token = -1;
  double last_token = -1;
  double finished = -1;
};

// What a finished request reports (seconds; -1 where undefined).
struct RequestStats {
  int n_prompt = 0;
  int n_generated = 0;
  int n_cached = 0;  // prompt tokens served from the prefix cache at first admission
  int n_preemptions = 0;
  double ttft = -1;  // first token - arrival
  double tpot = -1;  // mean gap between generated tokens after the first
  double e2e = -1;   // finish - arrival
  bool ttft_missed = false;
  bool tpot_missed = false;
};

class Sequence {
 public:
  Sequence(RequestId id, std::vector<int32_t> prompt, double arrival);

  RequestId id;
  std::vector<int32_t> tokens;  // (num_tokens) the prompt, then generated tokens
  int n_prompt;
  int num_computed = 0;  // tokens [0, num_computed) have K/V in `table`
  BlockTable table;
  SeqStatus status = SeqStatus::Waiting;
  FinishReason finish_reason = FinishReason::None;

  StopConditions stop;
  int priority = 0;  // lower runs first (vLLM's convention) under the priority policy
  Deadline deadline;

  SeqTimes times;
  int n_preemptions = 0;
  int n_cached = -1;  // prompt tokens hit in the prefix cache at first admission; -1 before

  int num_tokens() const { return static_cast<int>(tokens.size()); }
  int num_generated() const { return num_tokens() - n_prompt; }
  int num_uncomputed() const { return num_tokens() - num_computed; }
  bool finished() const { return status == SeqStatus::Finished; }

  // When the next token is due under the deadline targets (+inf without one): the first
  // token at arrival + ttft, the k-th later one at first_token + k * tpot. Its distance
  // from now is the request's slack.
  double next_due() const;

  // Appends a sampled token at time `now` and says whether the request is done:
  // Stop for a stop id (or an end-of-generation id unless ignore_eos), Length at
  // max_tokens or when the sequence fills max_model_len, else None.
  FinishReason append_token(int32_t token, const std::vector<int32_t>& eog_ids, int max_model_len,
                            double now);

  RequestStats stats() const;

  static constexpr double kNever = std::numeric_limits<double>::infinity();
};

}  // namespace llm
