// Prometheus text exposition (format 0.0.4) of the server's counters, gauges and
// histograms. Thread-safe: request threads observe, /metrics renders.
// Reference: https://prometheus.io/docs/instrumenting/exposition_formats/
#pragma once
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace llm {

class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);  // ascending; +Inf is implicit
  void observe(double v);
  // Lines "name_bucket{le=...} n", "name_sum", "name_count" (cumulative buckets).
  std::string render(const std::string& name) const;
  uint64_t count() const;

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // (bounds_.size() + 1), last is +Inf
  double sum_ = 0;
  uint64_t n_ = 0;
  mutable std::mutex mu_;
};

// The values the server exports. Gauges are sampled from the engine when rendering.
struct ServerGauges {
  int requests_running = 0;
  int requests_waiting = 0;
  int kv_blocks_total = 0;
  int kv_blocks_used = 0;
  int kv_blocks_cached = 0;
  double prefix_cache_hit_rate = 0;  // cached prompt tokens / prompt tokens
  uint64_t preemptions = 0;
  // Speculative decoding (zero without it).
  uint64_t spec_drafted = 0;        // draft tokens verified
  uint64_t spec_accepted = 0;       // of which accepted
  uint64_t spec_verifications = 0;  // sequence-steps that verified drafts
};

class ServerMetrics {
 public:
  ServerMetrics();
  void on_request_finished(double ttft_s, double tpot_s, double e2e_s, int prompt_tokens, int generated_tokens,
                           const std::string& finish_reason);
  void on_request_rejected(int status);
  std::string render(const ServerGauges& g) const;

 private:
  Histogram ttft_, tpot_, e2e_;
  mutable std::mutex mu_;
  uint64_t prompt_tokens_ = 0, generated_tokens_ = 0;
  uint64_t finished_stop_ = 0, finished_length_ = 0, finished_other_ = 0;
  uint64_t rejected_4xx_ = 0, rejected_5xx_ = 0;
};

}  // namespace llm
