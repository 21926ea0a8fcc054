// A simple single-sequence generation loop: prefill the prompt (in chunks), then decode
// one token per step until an end-of-generation token, n_predict tokens or a full
// context. It serves `llm run` until the batching engine exists, and measures the
// latencies that `llm run` reports.
//
// It works on token ids: tokenizing the prompt, detokenizing the output and sampling
// policy belong to the caller (sample is typically Sampler::sample + Sampler::accept).
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "engine/backend.h"

namespace llm {

struct GenerateOptions {
  int n_predict = 128;      // tokens to generate; < 0: until EOG or the context is full
  int batch_size = 512;     // prompt tokens per prefill forward step
  int64_t n_ctx = 0;        // context limit in tokens; 0: the whole KV pool of the backend
  bool ignore_eos = false;  // keep generating past end-of-generation tokens
};

struct GenerateTimings {
  int prompt_tokens = 0;
  double prefill_s = 0;      // all prefill forward steps
  double ttft_s = 0;         // from the call to the first generated token's callback
  int generated_tokens = 0;  // tokens passed to on_token
  int decode_steps = 0;  // forward steps after the prefill (one per generated token but the first)
  double decode_s = 0;   // those steps, with their sampling
  bool stopped_by_eog = false;
  bool context_full = false;
};

// logits (n_vocab) -> the chosen token.
using SampleFn = std::function<int32_t(const float* logits)>;
// Called with each generated token in order (EOG tokens excluded); return false to stop.
using TokenFn = std::function<bool(int32_t id)>;

// Generates a continuation of `prompt` (non-empty; the caller adds BOS) in blocks
// 0, 1, ... of the backend's pool, overwriting whatever they hold. is_eog may be empty.
// Throws llm::Error when the prompt is empty or does not fit the context.
GenerateTimings generate(Backend& backend, const std::vector<int32_t>& prompt,
                         const SampleFn& sample, const std::function<bool(int32_t)>& is_eog,
                         const TokenFn& on_token, const GenerateOptions& opt);

}  // namespace llm
