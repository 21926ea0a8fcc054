#include "engine/generate.h"

#include <algorithm>
#include <chrono>
#include <string>

#include "engine/error.h"

namespace llm {

GenerateTimings generate(Backend& backend, const std::vector<int32_t>& prompt,
                         const SampleFn& sample, const std::function<bool(int32_t)>& is_eog,
                         const TokenFn& on_token, const GenerateOptions& opt) {
  using Clock = std::chrono::steady_clock;
  auto seconds = [](Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double>(b - a).count();
  };
  const auto t_start = Clock::now();

  const int bs = backend.block_size();
  const int64_t pool = static_cast<int64_t>(backend.kv_blocks()) * bs;
  const int64_t n_ctx = opt.n_ctx > 0 ? std::min(opt.n_ctx, pool) : pool;
  const int n_prompt = static_cast<int>(prompt.size());
  if (n_prompt == 0) throw Error("nothing to generate from: the prompt has no tokens (and no BOS)");
  if (n_prompt > n_ctx)
    throw Error("the prompt has " + std::to_string(n_prompt) + " tokens but the context holds " +
                std::to_string(n_ctx) + "; use a shorter prompt or a larger context (-c)");
  if (opt.batch_size <= 0) throw Error("batch size must be positive");

  // One sequence owning blocks 0.. in order: slot of position p is p itself.
  std::vector<int32_t> blocks(static_cast<size_t>((n_ctx + bs - 1) / bs));
  for (size_t i = 0; i < blocks.size(); ++i) blocks[i] = static_cast<int32_t>(i);
  std::vector<float> logits(static_cast<size_t>(backend.config().n_vocab));  // (n_vocab)

  GenerateTimings t;
  t.prompt_tokens = n_prompt;
  Batch batch;
  // Prefill in chunks of batch_size; only the last row of the last chunk needs logits.
  const auto t_prefill = Clock::now();
  for (int p0 = 0; p0 < n_prompt; p0 += opt.batch_size) {
    const int n = std::min(opt.batch_size, n_prompt - p0);
    batch.clear();
    batch.add_sequence(prompt.data() + p0, n, p0, blocks, bs, p0 + n == n_prompt);
    backend.forward(batch, logits.data());
  }
  t.prefill_s = seconds(t_prefill, Clock::now());
  if (opt.n_predict == 0) return t;

  int64_t pos = n_prompt;  // position of the next token
  Clock::time_point t_decode{};
  for (;;) {
    const int32_t id = sample(logits.data());
    if (t.generated_tokens == 0) t_decode = Clock::now();
    if (!opt.ignore_eos && is_eog && is_eog(id)) {
      t.stopped_by_eog = true;
      if (t.generated_tokens == 0) t.ttft_s = seconds(t_start, Clock::now());
      break;
    }
    ++t.generated_tokens;
    const bool more = on_token(id);
    if (t.generated_tokens == 1) t.ttft_s = seconds(t_start, Clock::now());
    if (!more || (opt.n_predict >= 0 && t.generated_tokens >= opt.n_predict)) break;
    if (pos >= n_ctx) {
      t.context_full = true;
      break;
    }
    batch.clear();
    batch.add_sequence(&id, 1, static_cast<int>(pos), blocks, bs, true);
    backend.forward(batch, logits.data());
    ++t.decode_steps;
    ++pos;
  }
  if (t.decode_steps > 0) t.decode_s = seconds(t_decode, Clock::now());
  return t;
}

}  // namespace llm
