#include "engine/sequence.h"

#include <algorithm>
#include <utility>

namespace llm {

const char* to_string(FinishReason r) {
  switch (r) {
    case FinishReason::Stop:
      return "stop";
    case FinishReason::Length:
      return "length";
    case FinishReason::Cancelled:
      return "cancelled";
    case FinishReason::Error:
      return "error";
    case FinishReason::None:
      break;
  }
  return "";
}

Sequence::Sequence(RequestId id_, std::vector<int32_t> prompt, double arrival)
    : id(id_), tokens(std::move(prompt)), n_prompt(static_cast<int>(tokens.size())) {
  times.arrival = arrival;
}

double Sequence::next_due() const {
  if (times.first_token < 0) return deadline.ttft > 0 ? times.arrival + deadline.ttft : kNever;
  if (deadline.tpot > 0) return times.first_token + deadline.tpot * num_generated();
  return kNever;
}

FinishReason Sequence::append_token(int32_t token, const std::vector<int32_t>& eog_ids,
                                    int max_model_len, double now) {
  tokens.push_back(token);
  if (times.first_token < 0) times.first_token = now;
  times.last_token = now;
  auto has = [token](const std::vector<int32_t>& ids) {
    return std::find(ids.begin(), ids.end(), token) != ids.end();
  };
  if (has(stop.stop_ids) || (!stop.ignore_eos && has(eog_ids))) return FinishReason::Stop;
  if (num_generated() >= stop.max_tokens || num_tokens() >= max_model_len)
    return FinishReason::Length;
  return FinishReason::None;
}

RequestStats Sequence::stats() const {
  RequestStats s;
  s.n_prompt = n_prompt;
  s.n_generated = num_generated();
  s.n_cached = std::max(0, n_cached);
  s.n_preemptions = n_preemptions;
  if (times.first_token >= 0) s.ttft = times.first_token - times.arrival;
  if (num_generated() > 1) s.tpot = (times.last_token - times.first_token) / (num_generated() - 1);
  if (times.finished >= 0) s.e2e = times.finished - times.arrival;
  // Without a first token, the target counts as missed once its time had passed.
  const double waited = s.ttft >= 0 ? s.ttft : s.e2e;
  s.ttft_missed = deadline.ttft > 0 && waited > deadline.ttft;
  s.tpot_missed = deadline.tpot > 0 && s.tpot > deadline.tpot;
  return s;
}

}  // namespace llm
