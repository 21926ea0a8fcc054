// `llm bench --concurrency …` and `--prefix-cache`: the batching engine under load.
// Like llama-batched-bench: N sequences with P-token prompts each generate G tokens;
// reported are the aggregate generation throughput, the time to first token, and the
// ceiling that memory bandwidth and tensor-core FLOPs allow for that batch.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "engine/backend.h"
#include "engine/model.h"

namespace llm {

struct BatchBenchOptions {
  std::vector<int> concurrency;  // e.g. {1, 8, 32, 64, 128}
  int n_prompt = 128;
  int n_gen = 128;
  int shared_prefix = 0;         // tokens every prompt shares (prefix caching); 0 = none
  int repetitions = 1;
  int max_batched_tokens = 4096; // engine token budget per step
  double bandwidth_gbs = 0;      // measured copy bandwidth (bytes read + written) / 2; 0 = unknown
  double peak_tflops = 0;        // dense f16 tensor-core peak; 0 = unknown
  bool json = false;
  bool quiet = false;            // print nothing (profiling reruns)
};

struct BatchBenchRow {
  int concurrency = 0;
  double seconds = 0;          // wall time of the whole run (median)
  double gen_tok_s = 0;        // N * n_gen / seconds
  double decode_tok_s = 0;     // N * (n_gen - 1) / (seconds - time until every first token)
  double ttft_mean_s = 0;
  double tpot_mean_s = 0;
  double ceiling_tok_s = 0;    // decode ceiling for this batch (bandwidth or FLOPs, the lower)
  int64_t steps = 0;           // engine steps of the (last) run
  double step_ms = 0;          // mean pure-decode step (every sequence one token)
  double forward_share = 0;    // share of step time in Backend::forward (the rest: host work)
};

// Runs the sweep on a fresh engine per concurrency (so no run warms another's cache,
// except through shared_prefix within a run) and prints a table (or JSON) to stdout.
std::vector<BatchBenchRow> run_batch_bench(Backend& backend, const Model& model, const BatchBenchOptions& opt);

struct PrefixBenchResult {
  double ttft_uncached_s = 0;
  double ttft_cached_s = 0;
  int cached_tokens = 0;
};
// TTFT of a request whose first `prefix` tokens are already in the prefix cache against
// the same request uncached (issue target: cached <= 25% of uncached).
// `around_cached`, when set, is called with true just before the cached request of one more
// repetition, left out of the figures, and with false after it (bench --profile times that
// request's ops).
PrefixBenchResult run_prefix_bench(Backend& backend, const Model& model, int prefix, int suffix, int repetitions,
                                   bool json, const std::function<void(bool)>& around_cached = {});

}  // namespace llm
