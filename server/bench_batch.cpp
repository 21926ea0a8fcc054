#include "server/bench_batch.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "engine/engine.h"

namespace llm {

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// Deterministic prompt tokens that avoid the special ids at the bottom of most vocabularies.
std::vector<int32_t> prompt_tokens(int n, int n_vocab, uint64_t seed) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  const int lo = std::min(n_vocab - 1, 300);
  for (int i = 0; i < n; ++i) {
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    t[static_cast<size_t>(i)] = lo + static_cast<int32_t>((x * 0x2545F4914F6CDD1Dull >> 33) %
                                                          static_cast<uint64_t>(n_vocab - lo));
  }
  return t;
}

Request bench_request(std::vector<int32_t> prompt, int n_gen) {
  Request r;
  r.prompt = std::move(prompt);
  r.sampling.temperature = 0;  // greedy: no sampling cost differences between runs
  r.stop.max_tokens = n_gen;
  r.stop.ignore_eos = true;
  return r;
}

// Decode ceiling for a batch of n sequences at mean context `ctx`: every step reads all
// weights once and each sequence's KV cache; it also needs 2 FLOPs per weight per token.
double decode_ceiling(const Model& m, int n, double ctx, double kv_elem_bytes, double bw_gbs,
                      double peak_tflops) {
  const ModelConfig& c = m.config;
  const double weights = static_cast<double>(m.weight_bytes());
  const double kv = 2.0 * c.n_layer * c.kv_dim() * ctx * kv_elem_bytes * n;
  double step = 0;
  if (bw_gbs > 0) step = (weights + kv) / (bw_gbs * 1e9);
  if (peak_tflops > 0) {
    double params = 0;
    for (const GgufTensor& t : m.file.tensors()) params += static_cast<double>(t.n_elements());
    double flops = 2.0 * params * n + 4.0 * c.n_layer * c.q_dim() * ctx * n;
    step = std::max(step, flops / (peak_tflops * 1e12));
  }
  return step > 0 ? n / step : 0;
}

}  // namespace

std::vector<BatchBenchRow> run_batch_bench(Backend& backend, const Model& model,
                                           const BatchBenchOptions& opt) {
  const int n_vocab = model.config.n_vocab;
  const double kv_elem = backend.name().rfind("cuda", 0) == 0 ? 2.0 : 4.0;
  std::vector<BatchBenchRow> rows;
  const bool print = !opt.json && !opt.quiet;
  if (print) {
    std::printf(
        "\nbatched generation: %d-token prompts%s, %d generated tokens each, greedy\n",
        opt.n_prompt,
        opt.shared_prefix ? (" (" + std::to_string(opt.shared_prefix) + " shared)").c_str() : "",
        opt.n_gen);
    std::printf("| %5s | %9s | %12s | %12s | %9s | %9s | %8s | %6s | %12s | %6s |\n", "seqs",
                "time s", "gen tok/s", "decode tok/s", "TTFT ms", "TPOT ms", "step ms", "fwd %",
                "ceiling t/s", "%");
    std::printf(
        "|------:|----------:|-------------:|-------------:|----------:|----------:|---------:|----"
        "---:|"
        "-------------:|-------:|\n");
  }
  for (int n : opt.concurrency) {
    std::vector<double> secs, decode, ttft, tpot, step_ms, fwd;
    int64_t steps = 0;
    for (int rep = 0; rep < std::max(1, opt.repetitions); ++rep) {
      EngineConfig cfg;
      cfg.sched.max_num_seqs = n;
      cfg.sched.max_num_batched_tokens = std::max(opt.max_batched_tokens, n);
      cfg.prefix_caching = opt.shared_prefix > 0;
      Engine engine(backend, cfg);
      std::vector<Request> reqs;
      std::vector<int32_t> shared = prompt_tokens(opt.shared_prefix, n_vocab, 7);
      for (int i = 0; i < n; ++i) {
        std::vector<int32_t> p = shared;
        std::vector<int32_t> own = prompt_tokens(opt.n_prompt - opt.shared_prefix, n_vocab,
                                                 1000 + static_cast<uint64_t>(i));
        p.insert(p.end(), own.begin(), own.end());
        reqs.push_back(bench_request(std::move(p), opt.n_gen));
      }
      auto t0 = std::chrono::steady_clock::now();
      std::vector<GenerationResult> res = engine.generate_all(reqs);
      double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      double last_first = 0, sum_ttft = 0, sum_tpot = 0;
      for (const GenerationResult& r : res) {
        last_first = std::max(last_first, r.stats.ttft);
        sum_ttft += r.stats.ttft;
        sum_tpot += std::max(0.0, r.stats.tpot);
      }
      secs.push_back(s);
      decode.push_back(s - last_first > 0 ? n * (opt.n_gen - 1) / (s - last_first) : 0);
      ttft.push_back(sum_ttft / n);
      tpot.push_back(sum_tpot / n);
      const EngineMetrics m = engine.metrics();
      steps = m.steps;
      step_ms.push_back(m.decode_steps ? 1e3 * m.decode_s / static_cast<double>(m.decode_steps)
                                       : 0);
      fwd.push_back(m.step_s > 0 ? m.forward_s / m.step_s : 0);
    }
    BatchBenchRow row;
    row.concurrency = n;
    row.seconds = median(secs);
    row.gen_tok_s = n * opt.n_gen / row.seconds;
    row.decode_tok_s = median(decode);
    row.ttft_mean_s = median(ttft);
    row.tpot_mean_s = median(tpot);
    row.ceiling_tok_s = decode_ceiling(model, n, opt.n_prompt + opt.n_gen / 2.0, kv_elem,
                                       opt.bandwidth_gbs, opt.peak_tflops);
    row.steps = steps;
    row.step_ms = median(step_ms);
    row.forward_share = median(fwd);
    rows.push_back(row);
    if (print) {
      std::printf(
          "| %5d | %9.2f | %12.1f | %12.1f | %9.1f | %9.2f | %8.2f | %5.1f%% | %12.0f | %5.1f%% "
          "|\n",
          n, row.seconds, row.gen_tok_s, row.decode_tok_s, row.ttft_mean_s * 1e3,
          row.tpot_mean_s * 1e3, row.step_ms, 100.0 * row.forward_share, row.ceiling_tok_s,
          row.ceiling_tok_s > 0 ? 100.0 * row.decode_tok_s / row.ceiling_tok_s : 0.0);
      std::fflush(stdout);
    }
  }
  if (opt.quiet) return rows;
  if (opt.json) {
    nlohmann::json j = nlohmann::json::array();
    for (const BatchBenchRow& r : rows)
      j.push_back({{"concurrency", r.concurrency},
                   {"n_prompt", opt.n_prompt},
                   {"n_gen", opt.n_gen},
                   {"seconds", r.seconds},
                   {"gen_tok_s", r.gen_tok_s},
                   {"decode_tok_s", r.decode_tok_s},
                   {"ttft_mean_s", r.ttft_mean_s},
                   {"tpot_mean_s", r.tpot_mean_s},
                   {"ceiling_tok_s", r.ceiling_tok_s},
                   {"decode_step_ms", r.step_ms},
                   {"forward_share", r.forward_share}});
    std::printf("%s\n", nlohmann::json({{"batched", j}}).dump(2).c_str());
  } else {
    std::printf(
        "gen tok/s: all generated tokens over the whole run; decode tok/s: after the last first "
        "token.\n"
        "step ms: mean pure-decode engine step; fwd %%: share of step time in the backend's "
        "forward.\n"
        "ceiling: weights + KV read once per step at the measured bandwidth, or FLOPs at the "
        "peak.\n");
  }
  return rows;
}

PrefixBenchResult run_prefix_bench(Backend& backend, const Model& model, int prefix, int suffix,
                                   int repetitions, bool json,
                                   const std::function<void(bool)>& around_cached) {
  const int n_vocab = model.config.n_vocab;
  std::vector<double> uncached, cached;
  int hit = 0;
  const int reps = std::max(1, repetitions);
  const int extra = around_cached ? 1 : 0;  // a profiled repetition, left out of the figures
  for (int rep = 0; rep < reps + extra; ++rep) {
    EngineConfig cfg;
    cfg.prefix_caching = true;
    cfg.sched.max_num_batched_tokens = prefix + suffix;  // one prefill step either way
    Engine engine(backend, cfg);
    std::vector<int32_t> pre = prompt_tokens(prefix, n_vocab, 11 + static_cast<uint64_t>(rep));
    auto with_suffix = [&](uint64_t seed) {
      std::vector<int32_t> p = pre;
      std::vector<int32_t> s = prompt_tokens(suffix, n_vocab, seed);
      p.insert(p.end(), s.begin(), s.end());
      return p;
    };
    GenerationResult a = engine.generate_all({bench_request(with_suffix(100), 1)})[0];
    const bool profiled = rep == reps;
    if (profiled) around_cached(true);
    GenerationResult b = engine.generate_all({bench_request(with_suffix(200), 1)})[0];
    if (profiled) {
      around_cached(false);
      continue;
    }
    uncached.push_back(a.stats.ttft);
    cached.push_back(b.stats.ttft);
    hit = b.stats.n_cached;
  }
  PrefixBenchResult r{median(uncached), median(cached), hit};
  if (json) {
    std::printf("%s\n", nlohmann::json({{"prefix_cache",
                                         {{"prefix", prefix},
                                          {"suffix", suffix},
                                          {"ttft_uncached_s", r.ttft_uncached_s},
                                          {"ttft_cached_s", r.ttft_cached_s},
                                          {"cached_tokens", r.cached_tokens}}}})
                            .dump(2)
                            .c_str());
  } else {
    std::printf("\nprefix cache: %d-token shared prefix + %d new tokens\n", prefix, suffix);
    std::printf(
        "  TTFT uncached %.2f ms, cached %.2f ms (%d tokens from the cache): %.1f%% of uncached\n",
        r.ttft_uncached_s * 1e3, r.ttft_cached_s * 1e3, r.cached_tokens,
        r.ttft_uncached_s > 0 ? 100.0 * r.ttft_cached_s / r.ttft_uncached_s : 0.0);
  }
  return r;
}

}  // namespace llm
