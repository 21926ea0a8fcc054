#include "server/metrics.h"

#include <cassert>
#include <cstdio>

namespace llm {

namespace {
std::string num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}
}  // namespace

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(std::move(upper_bounds)), counts_(bounds_.size() + 1, 0) {
  for (size_t i = 1; i < bounds_.size(); ++i) assert(bounds_[i - 1] < bounds_[i]);
}

void Histogram::observe(double v) {
  std::lock_guard<std::mutex> lock(mu_);
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  counts_[i]++;
  sum_ += v;
  n_++;
}

uint64_t Histogram::count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return n_;
}

std::string Histogram::render(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out;
  uint64_t cum = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cum += counts_[i];
    out += name + "_bucket{le=\"" + num(bounds_[i]) + "\"} " + std::to_string(cum) + "\n";
  }
  cum += counts_.back();
  out += name + "_bucket{le=\"+Inf\"} " + std::to_string(cum) + "\n";
  out += name + "_sum " + num(sum_) + "\n";
  out += name + "_count " + std::to_string(n_) + "\n";
  return out;
}

ServerMetrics::ServerMetrics()
    : ttft_({0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}),
      tpot_({0.002, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28}),
      e2e_({0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}) {}

void ServerMetrics::on_request_finished(double ttft_s, double tpot_s, double e2e_s, int prompt_tokens,
                                        int generated_tokens, const std::string& finish_reason) {
  if (generated_tokens > 0) ttft_.observe(ttft_s);
  if (generated_tokens > 1) tpot_.observe(tpot_s);
  e2e_.observe(e2e_s);
  std::lock_guard<std::mutex> lock(mu_);
  prompt_tokens_ += static_cast<uint64_t>(prompt_tokens);
  generated_tokens_ += static_cast<uint64_t>(generated_tokens);
  if (finish_reason == "stop" || finish_reason == "tool_calls")
    finished_stop_++;
  else if (finish_reason == "length")
    finished_length_++;
  else
    finished_other_++;
}

void ServerMetrics::on_request_rejected(int status) {
  std::lock_guard<std::mutex> lock(mu_);
  (status >= 500 ? rejected_5xx_ : rejected_4xx_)++;
}

std::string ServerMetrics::render(const ServerGauges& g) const {
  std::string o;
  auto family = [&](const char* name, const char* type, const char* help) {
    o += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
  };
  family("llm_time_to_first_token_seconds", "histogram", "Time from request arrival to its first generated token.");
  o += ttft_.render("llm_time_to_first_token_seconds");
  family("llm_time_per_output_token_seconds", "histogram", "Mean time between generated tokens of a request.");
  o += tpot_.render("llm_time_per_output_token_seconds");
  family("llm_e2e_request_latency_seconds", "histogram", "Time from request arrival to its last token.");
  o += e2e_.render("llm_e2e_request_latency_seconds");
  std::lock_guard<std::mutex> lock(mu_);
  family("llm_prompt_tokens_total", "counter", "Prompt tokens of finished requests.");
  o += "llm_prompt_tokens_total " + std::to_string(prompt_tokens_) + "\n";
  family("llm_generation_tokens_total", "counter", "Tokens generated for finished requests.");
  o += "llm_generation_tokens_total " + std::to_string(generated_tokens_) + "\n";
  family("llm_requests_finished_total", "counter", "Finished requests by finish reason.");
  o += "llm_requests_finished_total{reason=\"stop\"} " + std::to_string(finished_stop_) + "\n";
  o += "llm_requests_finished_total{reason=\"length\"} " + std::to_string(finished_length_) + "\n";
  o += "llm_requests_finished_total{reason=\"other\"} " + std::to_string(finished_other_) + "\n";
  family("llm_requests_rejected_total", "counter", "Requests answered with an error status.");
  o += "llm_requests_rejected_total{class=\"4xx\"} " + std::to_string(rejected_4xx_) + "\n";
  o += "llm_requests_rejected_total{class=\"5xx\"} " + std::to_string(rejected_5xx_) + "\n";
  family("llm_requests_running", "gauge", "Requests being generated now.");
  o += "llm_requests_running " + std::to_string(g.requests_running) + "\n";
  family("llm_requests_waiting", "gauge", "Requests queued for their first step.");
  o += "llm_requests_waiting " + std::to_string(g.requests_waiting) + "\n";
  family("llm_kv_cache_blocks", "gauge", "KV cache blocks by state.");
  o += "llm_kv_cache_blocks{state=\"total\"} " + std::to_string(g.kv_blocks_total) + "\n";
  o += "llm_kv_cache_blocks{state=\"used\"} " + std::to_string(g.kv_blocks_used) + "\n";
  o += "llm_kv_cache_blocks{state=\"cached\"} " + std::to_string(g.kv_blocks_cached) + "\n";
  family("llm_kv_cache_usage_ratio", "gauge", "Share of KV cache blocks in use.");
  o += "llm_kv_cache_usage_ratio " +
       num(g.kv_blocks_total ? static_cast<double>(g.kv_blocks_used) / g.kv_blocks_total : 0.0) + "\n";
  family("llm_prefix_cache_hit_rate", "gauge", "Prompt tokens served from the prefix cache over all prompt tokens.");
  o += "llm_prefix_cache_hit_rate " + num(g.prefix_cache_hit_rate) + "\n";
  family("llm_preemptions_total", "counter", "Sequences preempted for lack of KV blocks.");
  o += "llm_preemptions_total " + std::to_string(g.preemptions) + "\n";
  family("llm_spec_draft_tokens_total", "counter",
         "Speculative draft tokens verified by the model.");
  o += "llm_spec_draft_tokens_total " + std::to_string(g.spec_drafted) + "\n";
  family("llm_spec_accepted_tokens_total", "counter", "Speculative draft tokens accepted.");
  o += "llm_spec_accepted_tokens_total " + std::to_string(g.spec_accepted) + "\n";
  family("llm_spec_verifications_total", "counter",
         "Sequence-steps that verified drafts; each also yields one token of the model's own.");
  o += "llm_spec_verifications_total " + std::to_string(g.spec_verifications) + "\n";
  family("llm_spec_acceptance_rate", "gauge", "Accepted over drafted speculative tokens.");
  o += "llm_spec_acceptance_rate " +
       num(g.spec_drafted ? static_cast<double>(g.spec_accepted) / g.spec_drafted : 0.0) + "\n";
  family("llm_spec_tokens_per_step", "gauge", "Tokens a verifying sequence gains per step.");
  o += "llm_spec_tokens_per_step " +
       num(g.spec_verifications
               ? static_cast<double>(g.spec_accepted + g.spec_verifications) / g.spec_verifications
               : 0.0) +
       "\n";
  return o;
}

}  // namespace llm
