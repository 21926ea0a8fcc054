// `llm bench`: prefill (pp) and generation (tg) speed of a model on a device, each next to
// its ceiling. Generation is bound by memory bandwidth (every weight byte and the KV cache
// are read once per token): ceiling = measured copy bandwidth / bytes per token. Prefill is
// bound by the matrix units: ceiling = measured GEMM rate / FLOPs per token.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "engine/backend.h"
#include "engine/error.h"
#include "engine/model.h"
#include "engine/topk.h"
#include "quant/mix.h"
#include "server/args.h"
#include "server/bench_batch.h"
#include "server/bench_spec.h"
#include "server/cli.h"
#include "server/cli_common.h"
#include "server/op_profile.h"

#ifdef LLM_HAVE_CUDA
#include "cuda/backend_cuda.h"
#include "cuda/device_info.h"
#endif

namespace llm {
namespace {

using Clock = std::chrono::steady_clock;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// What one token costs: weight bytes read and matrix FLOPs (attention added per context).
struct Cost {
  double weight_bytes = 0;        // all matrices read once (one embedding row)
  double matmul_flops = 0;        // 2 * parameters of the matrices used per token
  double kv_bytes_per_pos = 0;    // K and V of one position, all layers (f16 on CUDA, f32 on CPU)
  double attn_flops_per_pos = 0;  // q·k and p·v of one position, all layers and heads
};

Cost model_cost(const Model& m, int kv_elem_bytes) {
  const ModelConfig& c = m.config;
  const ModelWeights& w = m.weights;
  Cost k;
  auto mat = [&](const TensorRef& t) {
    k.weight_bytes += static_cast<double>(t.bytes);
    k.matmul_flops += 2.0 * static_cast<double>(t.rows) * static_cast<double>(t.cols);
  };
  for (const LayerWeights& L : w.layers)
    for (const TensorRef* t : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down}) mat(*t);
  mat(w.output);
  k.weight_bytes += static_cast<double>(w.tok_embd.row_bytes());  // one embedding row
  k.kv_bytes_per_pos = static_cast<double>(c.n_layer) * 2 * c.kv_dim() * kv_elem_bytes;
  k.attn_flops_per_pos = static_cast<double>(c.n_layer) * 4.0 * c.q_dim();
  return k;
}

std::string model_type(const Model& m) {
  if (auto ft = m.file.get_int("general.file_type"))
    if (auto f = file_type_from_gguf(static_cast<uint32_t>(*ft))) return file_type_name(*f);
  std::map<std::string, size_t> bytes;
  for (const GgufTensor& t : m.file.tensors()) bytes[dtype_name(t.type)] += t.bytes;
  return std::max_element(bytes.begin(), bytes.end(),
                          [](auto& a, auto& b) { return a.second < b.second; })
      ->first;
}

// Host memory bandwidth (read + write) of a large memcpy on n threads.
double cpu_copy_gbs(int n_threads) {
  const size_t bytes = size_t(512) << 20, per = bytes / static_cast<size_t>(n_threads);
  std::vector<char> a(bytes, 1), b(bytes, 0);
  std::vector<double> t;
  for (int rep = 0; rep < 4; ++rep) {
    const auto t0 = Clock::now();
    std::vector<std::thread> th;
    for (int i = 0; i < n_threads; ++i)
      th.emplace_back([&, i] { std::memcpy(b.data() + i * per, a.data() + i * per, per); });
    for (auto& x : th) x.join();
    t.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  t.erase(t.begin());  // first pass faults the pages in
  return 2.0 * static_cast<double>(per * n_threads) / median(t) / 1e9;
}

struct Result {
  std::string test;
  int n_tokens = 0;
  double tok_s = 0, ceiling = 0;
  double bytes_per_tok = 0, flops_per_tok = 0;
  std::vector<double> runs;  // tok/s of each run
};

}  // namespace

int cmd_bench(int argc, char** argv) {
  Args args("bench", "-m MODEL [options]",
            "Measures prefill (pp) and generation (tg) throughput of one sequence, median of "
            "several runs after a warm-up, next to the device's measured ceilings.");
  args.flag("-m, --model", "FILE", "GGUF model to benchmark");
  args.flag("-p, --n-prompt", "N", "prompt tokens of the prefill test (0: skip)", "512");
  args.flag("-n, --n-gen", "N", "generated tokens of the generation test (0: skip)", "128");
  args.flag("-r, --repetitions", "N", "runs per test; the median is reported", "3");
  args.flag("--device", "cuda|cpu", "where to run", "cuda when a GPU is present");
  args.flag("--gpu", "N", "CUDA device ordinal", "0");
  add_f16_copy_flag(args);
  add_deterministic_flag(args);
  add_tp_flag(args);
  args.flag("-t, --threads", "N", "CPU threads", "all");
  args.flag("--json", "", "print one JSON object instead of the table");
  args.flag(
      "--full-logits", "",
      "tg: copy every step's whole logit row back and pick the token on the host, instead "
      "of the greedy decode path of run/serve (the device selects, one candidate comes back)");
  args.flag("--profile", "",
            "CUDA: also time every op (no graphs, an event per op) of tg's decode steps, of "
            "each --concurrency run and of --prefix-ttft's cached request");
  args.flag(
      "--concurrency", "N,N,...",
      "batched mode: aggregate generation throughput of N sequences of -p prompt and -n generated "
      "tokens each, through the batching engine (like llama-batched-bench)");
  args.flag("--shared-prefix", "N",
            "batched mode: the first N prompt tokens are shared (prefix caching)", "0");
  args.flag("--prefix-ttft", "N",
            "time to first token of a request whose first N tokens are cached vs uncached");
  args.flag("--batch-tokens", "N", "batched mode: engine token budget per step", "4096");
  add_bench_spec_flags(args);  // speculative decoding's factors (server/bench_spec.h)
  if (!args.parse(argc, argv)) return 0;
  const std::string path = args.str("model");
  if (path.empty()) throw Error("bench: -m MODEL is required (see llm bench --help)");
  const int n_prompt = static_cast<int>(args.i64("n-prompt", 512));
  const int n_gen = static_cast<int>(args.i64("n-gen", 128));
  const int reps = static_cast<int>(args.i64("repetitions", 3));
  if (n_prompt < 0 || n_gen < 0 || reps < 1)
    throw Error("bench: -p and -n must be >= 0 and -r >= 1");
  std::string dev = args.str("device", cuda_device_count() > 0 ? "cuda" : "cpu");
  if (dev != "cuda" && dev != "cpu")
    throw Error("bench: --device must be cuda or cpu, got '" + dev + "'");
  const bool json = args.on("json");

  BackendOptions opt;
  opt.device = dev == "cuda" ? DeviceKind::Cuda : DeviceKind::Cpu;
  opt.gpu = static_cast<int>(args.i64("gpu", 0));
  opt.tp = tp_of(args);
  opt.n_threads = static_cast<int>(args.i64("threads", 0));
  opt.f16_copy = f16_copy_of(args);
  opt.deterministic = args.on("deterministic");
  opt.block_size = 16;
  opt.kv_tokens = ((n_prompt + n_gen + 16) / 16 + 1) * 16;
  opt.verbose = !json;
  std::vector<int> concurrency;
  if (args.has("concurrency")) {
    std::string list = args.str("concurrency");
    size_t pos = 0;
    while (pos <= list.size()) {
      size_t comma = list.find(',', pos);
      std::string item =
          list.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
      char* end = nullptr;
      long v = std::strtol(item.c_str(), &end, 10);
      if (item.empty() || *end != '\0' || v < 1 || v > 4096)
        throw Error("bench: --concurrency expects a list of sequence counts like 1,8,32, got '" +
                    list + "'");
      concurrency.push_back(static_cast<int>(v));
      if (comma == std::string::npos) break;
      pos = comma + 1;
    }
    const int max_n = *std::max_element(concurrency.begin(), concurrency.end());
    opt.kv_tokens = static_cast<int64_t>(max_n) * ((n_prompt + n_gen + 15) / 16 + 1) * 16;
  }
  const int shared_prefix = static_cast<int>(args.i64("shared-prefix", 0));
  const int prefix_ttft = static_cast<int>(args.i64("prefix-ttft", 0));
  if (shared_prefix < 0 || shared_prefix > n_prompt)
    throw Error("bench: --shared-prefix must be 0..-p");
  if (prefix_ttft < 0) throw Error("bench: --prefix-ttft must be positive");
  if (prefix_ttft > 0)
    opt.kv_tokens = std::max<int64_t>(opt.kv_tokens, 4 * (prefix_ttft + 64 + 16));
  if (bench_spec_requested(args)) {
    if (opt.tp != 1)
      throw Error("bench: --tp does not combine with the speculative-decoding benchmarks");
    return run_bench_spec(args, opt);
  }

  // Ceilings first, while the device is empty.
  std::string dev_name;
  double copy_gbs = 0, peak_tflops = 0;
  if (opt.device == DeviceKind::Cuda) {
#ifdef LLM_HAVE_CUDA
    const cuda::DeviceCeiling c = cuda::measure_device_ceiling(opt.gpu);
    dev_name = c.name;
    copy_gbs = c.copy_gbs;
    peak_tflops = c.gemm_tflops;
#else
    throw Error("bench: this llm was built without CUDA; use --device cpu");
#endif
  } else {
    const int nt = opt.n_threads > 0
                       ? opt.n_threads
                       : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    dev_name = "cpu (" + std::to_string(nt) + " threads)";
    copy_gbs = cpu_copy_gbs(nt);
  }
  if (opt.tp > 1 && opt.device == DeviceKind::Cuda) {  // TP: the GPUs' bandwidth and FLOP/s add up
    dev_name = std::to_string(opt.tp) + " x " + dev_name;
    copy_gbs *= opt.tp;
    peak_tflops *= opt.tp;
  }

  auto model = Model::load(path);
  const ModelConfig& c = model->config;
  auto backend = make_backend(*model, opt);
  const Cost cost = model_cost(*model, opt.device == DeviceKind::Cuda ? 2 : 4);
  const int V = c.n_vocab;
  const int n_blocks = static_cast<int>(opt.kv_tokens / opt.block_size);
  std::vector<int32_t> blocks(static_cast<size_t>(n_blocks));
  std::iota(blocks.begin(), blocks.end(), 0);
  std::vector<float> logits(static_cast<size_t>(V));
  std::vector<int32_t> prompt(static_cast<size_t>(std::max(n_prompt, 1)));
  for (size_t i = 0; i < prompt.size(); ++i)
    prompt[i] = static_cast<int32_t>((i * 7919 + 13) % static_cast<size_t>(V));

  auto prefill = [&](int n) {
    Batch b;
    b.add_sequence(prompt.data(), n, 0, blocks, opt.block_size, true);
    backend->forward(b, logits.data());
  };
  // Generation from an empty context, as llama-bench's tg, one greedy token per step the
  // way the engine decodes it: the backend selects the best logit where it computed them
  // (Backend::forward_candidates) and only that candidate comes back. --full-logits copies
  // the whole row back and takes the argmax here instead (what llama-bench's tg pays).
  const bool full_logits = args.on("full-logits");
  LogitCandidates cand;
  auto generate = [&](int n) {
    Batch b;
    int32_t tok = 1;
    for (int i = 0; i < n; ++i) {
      b.clear();
      b.add_sequence(&tok, 1, i, blocks, opt.block_size, true);
      if (full_logits) {
        backend->forward(b, logits.data());
        tok = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
      } else {
        backend->forward_candidates(b, 1, cand);
        tok = cand.row_ids(0)[0];
      }
    }
  };

  if (!concurrency.empty() || prefix_ttft > 0) {
    if (!json) {
      std::printf("device: %s — copy bandwidth %.0f GB/s (read + write)", dev_name.c_str(),
                  copy_gbs);
      if (peak_tflops > 0) std::printf(", f16 GEMM %.0f TFLOP/s", peak_tflops);
      std::printf("\nmodel: %s (%s, %d layers, n_embd %d)\n", path.c_str(),
                  model_type(*model).c_str(), c.n_layer, c.n_embd);
    }
    if (!concurrency.empty()) {
      BatchBenchOptions bo;
      bo.concurrency = concurrency;
      bo.n_prompt = std::max(n_prompt, 1);
      bo.n_gen = std::max(n_gen, 1);
      bo.shared_prefix = shared_prefix;
      bo.repetitions = reps;
      bo.max_batched_tokens = static_cast<int>(args.i64("batch-tokens", 4096));
      bo.bandwidth_gbs = copy_gbs;
      bo.peak_tflops = peak_tflops;
      bo.json = json;
      run_batch_bench(*backend, *model, bo);
#ifdef LLM_HAVE_CUDA
      auto* cb = dynamic_cast<cuda::CudaBackend*>(backend.get());
      if (args.on("profile") && cb) {
        for (int n : concurrency) {
          BatchBenchOptions one = bo;
          one.concurrency = {n};
          one.repetitions = 1;
          one.json = true;  // the profile's table only
          one.quiet = true;
          cb->set_profiling(true);
          const std::vector<BatchBenchRow> r = run_batch_bench(*backend, *model, one);
          print_op_profile(*model, cb->profile(), static_cast<int>(r[0].steps),
                           ("an engine step, " + std::to_string(n) + " sequences").c_str());
          cb->set_profiling(false);
        }
      }
#endif
    }
    if (prefix_ttft > 0) {
      std::function<void(bool)> around_cached;
#ifdef LLM_HAVE_CUDA
      auto* cb = dynamic_cast<cuda::CudaBackend*>(backend.get());
      if (args.on("profile") && cb)
        around_cached = [&](bool start) {
          if (!start)
            print_op_profile(*model, cb->profile(), 1,
                             ("the cached-prefix request (" + std::to_string(prefix_ttft) +
                              " cached + 64 new tokens, one step)")
                                 .c_str());
          cb->set_profiling(start);  // clears the accumulated times
        };
#endif
      run_prefix_bench(*backend, *model, prefix_ttft, 64, reps, json, around_cached);
    }
    return 0;
  }

  std::vector<Result> results;
  if (n_prompt > 0) {
    prefill(n_prompt);  // warm-up: kernels loaded, cuBLAS heuristics, caches
    Result r;
    r.test = "pp" + std::to_string(n_prompt);
    r.n_tokens = n_prompt;
    for (int i = 0; i < reps; ++i) {
      const auto t0 = Clock::now();
      prefill(n_prompt);
      r.runs.push_back(n_prompt / std::chrono::duration<double>(Clock::now() - t0).count());
    }
    r.tok_s = median(r.runs);
    const double avg_ctx = (n_prompt + 1) / 2.0;
    r.flops_per_tok = cost.matmul_flops + cost.attn_flops_per_pos * avg_ctx;
    r.bytes_per_tok = (cost.weight_bytes + cost.kv_bytes_per_pos * n_prompt) / n_prompt;
    r.ceiling = peak_tflops > 0 ? peak_tflops * 1e12 / r.flops_per_tok : 0;
    results.push_back(r);
  }
  if (n_gen > 0) {
    generate(std::min(n_gen, 8));  // warm-up (and graph capture)
    Result r;
    r.test = "tg" + std::to_string(n_gen);
    r.n_tokens = n_gen;
    for (int i = 0; i < reps; ++i) {
      const auto t0 = Clock::now();
      generate(n_gen);
      r.runs.push_back(n_gen / std::chrono::duration<double>(Clock::now() - t0).count());
    }
    r.tok_s = median(r.runs);
    const double avg_ctx = (n_gen + 1) / 2.0;  // keys read per step, on average
    r.bytes_per_tok = cost.weight_bytes + cost.kv_bytes_per_pos * avg_ctx;
    r.flops_per_tok = cost.matmul_flops + cost.attn_flops_per_pos * avg_ctx;
    r.ceiling = copy_gbs * 1e9 / r.bytes_per_tok;
    results.push_back(r);
  }

  if (args.on("profile")) {
#ifdef LLM_HAVE_CUDA
    auto* cb = dynamic_cast<cuda::CudaBackend*>(backend.get());
    if (cb) {
      const int steps = 32;
      cb->set_profiling(true);
      generate(steps);
      print_op_profile(*model, cb->profile(), steps, "a decode step (batch 1)");
      cb->set_profiling(false);
    }
#endif
  }

  const std::string type = model_type(*model);
  const double size_gib = static_cast<double>(model->weight_bytes()) / (1024.0 * 1024 * 1024);
  if (json) {
    std::printf(
        "{\"model\": \"%s\", \"type\": \"%s\", \"size_gib\": %.3f, \"backend\": \"%s\", "
        "\"device\": \"%s\", "
        "\"copy_gbs\": %.1f, \"gemm_tflops\": %.1f, \"results\": [",
        path.c_str(), type.c_str(), size_gib, backend->name().c_str(), dev_name.c_str(), copy_gbs,
        peak_tflops);
    for (size_t i = 0; i < results.size(); ++i) {
      const Result& r = results[i];
      std::printf(
          "%s{\"test\": \"%s\", \"tok_s\": %.2f, \"bytes_per_tok\": %.0f, \"flops_per_tok\": %.0f, "
          "\"ceiling_tok_s\": %.2f, \"pct_of_ceiling\": %.2f, \"runs\": [",
          i ? ", " : "", r.test.c_str(), r.tok_s, r.bytes_per_tok, r.flops_per_tok, r.ceiling,
          r.ceiling > 0 ? 100.0 * r.tok_s / r.ceiling : 0.0);
      for (size_t j = 0; j < r.runs.size(); ++j) std::printf("%s%.2f", j ? ", " : "", r.runs[j]);
      std::printf("]}");
    }
    std::printf("]}\n");
    return 0;
  }
  std::printf("device: %s — copy bandwidth %.0f GB/s (read + write)", dev_name.c_str(), copy_gbs);
  if (peak_tflops > 0) std::printf(", f16 GEMM %.0f TFLOP/s", peak_tflops);
  std::printf("\nmodel: %s (%s, %.2f GiB, %d layers, n_embd %d)\n\n", path.c_str(), type.c_str(),
              size_gib, c.n_layer, c.n_embd);
  std::printf("| %-8s | %-6s | %12s | %10s | %10s | %9s | %14s | %7s |\n", "type", "test", "tok/s",
              "MB/tok", "GFLOP/tok", "bound", "ceiling tok/s", "% ceil");
  std::printf(
      "|----------|--------|--------------|------------|------------|-----------|----------------|-"
      "--------|\n");
  for (const Result& r : results) {
    const bool tg = r.test[0] == 't';
    std::printf("| %-8s | %-6s | %12.2f | %10.1f | %10.2f | %9s | %14.1f | %6.1f%% |\n",
                type.c_str(), r.test.c_str(), r.tok_s, r.bytes_per_tok / 1e6, r.flops_per_tok / 1e9,
                tg ? "memory" : "compute", r.ceiling,
                r.ceiling > 0 ? 100.0 * r.tok_s / r.ceiling : 0.0);
  }
  return 0;
}

}  // namespace llm
