// `llm run`: one prompt, one generated continuation streamed to stdout, and the
// latencies (prompt and generation tokens per second, time to first token) on stderr,
// as llama.cpp reports them.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <string>

#include "engine/backend.h"
#include "engine/engine.h"
#include "engine/error.h"
#include "engine/generate.h"
#include "engine/model.h"
#include "engine/sampler.h"
#include "engine/tokenizer.h"
#include "server/cli_common.h"
#include "server/args.h"
#include "server/cli.h"
#include "server/cli_common.h"
#include "server/spec_cli.h"

namespace llm {
namespace {

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error("llm run: cannot read prompt file '" + path + "'");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

int to_int(const Args& a, const char* name, int64_t def, int64_t lo, int64_t hi) {
  const int64_t v = a.i64(name, def);
  if (v < lo || v > hi)
    throw Error(std::string("llm run: --") + name + " must be in [" + std::to_string(lo) + ", " +
                std::to_string(hi) + "], got " + std::to_string(v));
  return static_cast<int>(v);
}

void print_rate(const char* what, int tokens, double seconds) {
  if (tokens <= 0 || seconds <= 0) {
    std::fprintf(stderr, "%-20s %6d tokens\n", what, tokens);
    return;
  }
  std::fprintf(stderr,
               "%-20s %6d tokens in %9.2f ms (%8.2f ms per token, %9.2f tokens per second)\n", what,
               tokens, seconds * 1e3, seconds * 1e3 / tokens, tokens / seconds);
}

struct RunStats {
  int prompt_tokens = 0;
  int generated = 0;  // tokens of the continuation, an end-of-text token included
  double ttft_s = 0;  // the prompt's prefill and the first token
  double decode_s = 0;
  FinishReason reason = FinishReason::None;
  SpecStats spec;
};

// One request through the engine with speculative decoding; on_token gets each generated
// token in order, end-of-text tokens excluded.
RunStats run_speculative(Backend& backend, const SpecSetup& spec, const std::vector<int32_t>& ids,
                         const SamplingParams& sp, const GenerateOptions& gopt,
                         const Tokenizer& tok, const std::function<void(int32_t)>& on_token) {
  EngineConfig ec;
  ec.max_model_len = static_cast<int>(gopt.n_ctx);
  ec.sched.max_num_batched_tokens = gopt.batch_size;
  ec.eog_ids = tok.eog_ids();
  ec.spec = spec.config;
  Engine engine(backend, ec);
  Request req;
  req.prompt = ids;
  req.sampling = sp;
  req.stop.max_tokens = gopt.n_predict < 0 ? engine.max_model_len() : std::max(gopt.n_predict, 1);
  req.stop.ignore_eos = gopt.ignore_eos;
  RunStats rs;
  std::string error;
  rs.prompt_tokens = static_cast<int>(ids.size());
  engine.submit(req, [&](const TokenEvent& ev) {
    if (ev.token >= 0 && !tok.is_eog(ev.token)) on_token(ev.token);
    if (!ev.finished) return;
    if (ev.finish_reason == FinishReason::Error) error = ev.error;
    rs.generated = ev.stats.n_generated;
    rs.reason = ev.finish_reason;
    rs.ttft_s = std::max(0.0, ev.stats.ttft);
    rs.decode_s = ev.stats.e2e - ev.stats.ttft;
  });
  while (engine.step()) {
  }
  if (!error.empty()) throw Error("llm run: " + error);
  rs.spec = engine.metrics().spec;
  return rs;
}

}  // namespace

int cmd_run(int argc, char** argv) {
  Args args("run", "-m MODEL [-p PROMPT | -f FILE] [options]",
            "Generates a continuation of a prompt and streams it to stdout; speed goes to stderr.");
  args.flag("-m, --model", "FILE", "the GGUF model");
  args.flag("-p, --prompt", "TEXT", "the prompt; empty: generate from BOS alone", "\"\"");
  args.flag("-f, --file", "FILE", "read the prompt from a file");
  args.flag("-n, --n-predict", "N", "tokens to generate; -1: until end of text or a full context",
            "128");
  args.flag("--temp", "T", "temperature; 0: greedy", "0.8");
  args.flag("--top-k", "K", "keep the K most likely tokens; 0: off", "40");
  args.flag("--top-p", "P", "keep the most likely tokens up to probability mass P; 1: off", "0.95");
  args.flag("--min-p", "P", "drop tokens less likely than P times the best; 0: off", "0.05");
  args.flag("--repeat-penalty", "X", "penalise recently seen tokens; 1: off", "1.0");
  args.flag("--repeat-last-n", "N", "window of the repeat penalty in tokens", "64");
  args.flag("-s, --seed", "S", "random seed", "random");
  args.flag("-t, --threads", "N", "CPU threads", "all cores");
  args.flag("-c, --ctx-size", "N", "context size in tokens", "min(training context, 4096)");
  args.flag("-b, --batch-size", "N", "prompt tokens per prefill step", "512");
  args.flag("--device", "cuda|cpu", "where to run", "cuda when a GPU is present");
  args.flag("--gpu", "N", "CUDA device ordinal", "0");
  add_f16_copy_flag(args);
  add_deterministic_flag(args);
  add_tp_flag(args);
  args.flag("--ignore-eos", "", "keep generating past end-of-text tokens");
  args.flag("--no-bos", "", "do not add the BOS token to the prompt");
  args.flag("--verbose-prompt", "", "print the prompt's tokens to stderr");
  add_spec_flags(args);
  if (!args.parse(argc, argv)) return 0;

  std::string model_path = args.str("model");
  if (model_path.empty() && !args.positional().empty()) model_path = args.positional()[0];
  if (model_path.empty()) throw Error("llm run: which model? give -m MODEL (see 'llm run --help')");
  if (args.has("prompt") && args.has("file")) throw Error("llm run: give -p or -f, not both");
  const std::string prompt = args.has("file") ? read_file(args.str("file")) : args.str("prompt");

  SamplingParams sp;
  sp.temperature = static_cast<float>(args.f64("temp", sp.temperature));
  sp.top_k = to_int(args, "top-k", sp.top_k, 0, 1 << 30);
  sp.top_p = static_cast<float>(args.f64("top-p", sp.top_p));
  sp.min_p = static_cast<float>(args.f64("min-p", sp.min_p));
  sp.repeat_penalty = static_cast<float>(args.f64("repeat-penalty", sp.repeat_penalty));
  sp.repeat_last_n = to_int(args, "repeat-last-n", sp.repeat_last_n, -1, 1 << 30);
  if (args.has("seed")) sp.seed = static_cast<uint64_t>(args.i64("seed", 0));
  GenerateOptions gopt;
  gopt.n_predict = to_int(args, "n-predict", 128, -1, 1 << 30);
  gopt.batch_size = to_int(args, "batch-size", 512, 1, 1 << 20);
  gopt.ignore_eos = args.on("ignore-eos");

  BackendOptions bopt;
  const std::string device = args.str("device", cuda_device_count() > 0 ? "cuda" : "cpu");
  if (device == "cuda")
    bopt.device = DeviceKind::Cuda;
  else if (device == "cpu")
    bopt.device = DeviceKind::Cpu;
  else
    throw Error("llm run: --device must be 'cuda' or 'cpu', got '" + device + "'");
  bopt.gpu = to_int(args, "gpu", 0, 0, 1 << 10);
  bopt.n_threads = to_int(args, "threads", 0, 0, 1 << 12);
  bopt.f16_copy = f16_copy_of(args);
  bopt.deterministic = args.on("deterministic");

  const auto t_load = std::chrono::steady_clock::now();
  auto model = Model::load(model_path);
  const Tokenizer tok = Tokenizer::from_gguf(model->file);
  if (tok.n_vocab() != model->config.n_vocab)
    throw Error(model_path + ": the tokenizer has " + std::to_string(tok.n_vocab()) +
                " tokens but token_embd.weight has " + std::to_string(model->config.n_vocab) +
                " rows");
  // One sequence needs no more cache than its context.
  const int64_t n_ctx = args.i64("ctx-size", std::min(model->config.n_ctx_train, 4096));
  if (n_ctx < 1 || n_ctx > (int64_t{1} << 24)) throw Error("llm run: --ctx-size must be positive");
  bopt.kv_tokens = n_ctx;
  gopt.n_ctx = n_ctx;
  // The draft first: on CUDA the target's KV cache takes most of the memory left.
  const SpecSetup spec = make_spec(args, *model, bopt, draft_kv_tokens_for(n_ctx));
  bopt.tp = tp_of(args);  // the target only: a draft model runs whole, on --gpu
  auto backend = make_backend(*model, bopt);
  const double load_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t_load).count();
  const double mib = static_cast<double>(model->weight_bytes()) / (1024.0 * 1024);
  std::fprintf(stderr, "llm run: %s (%s, %d layers, %.2f %s) on %s, loaded in %.2f s\n",
               model_path.c_str(), model->config.arch_name.c_str(), model->config.n_layer,
               mib >= 1024 ? mib / 1024 : mib, mib >= 1024 ? "GiB" : "MiB", backend->name().c_str(),
               load_s);

  std::vector<int32_t> ids = tok.encode(prompt, !args.on("no-bos"), true);
  if (ids.empty() && !args.on("no-bos") && tok.bos() >= 0) ids.push_back(tok.bos());
  if (args.on("verbose-prompt")) {
    std::fprintf(stderr, "prompt: %zu tokens\n", ids.size());
    for (int32_t id : ids)
      std::fprintf(stderr, "%8d -> '%s'\n", id, tok.token_to_piece(id, true).c_str());
  }

  if (spec.proposer) {
    // Speculation needs the engine's verification; the stream and the statistics match
    // the plain loop's below.
    if (sp.seed == kRandomSeed) {  // drawn here, to print it
      std::random_device rd;
      sp.seed = (static_cast<uint64_t>(rd()) << 32 ^ rd()) & ~(uint64_t{1} << 63);
    }
    StreamDecoder sdec(tok, prompt.empty());
    std::fputs(prompt.c_str(), stdout);
    std::fflush(stdout);
    const RunStats rs = run_speculative(*backend, spec, ids, sp, gopt, tok, [&](int32_t id) {
      const std::string piece = sdec.push(id);
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
    });
    const std::string tail = sdec.flush();
    std::fwrite(tail.data(), 1, tail.size(), stdout);
    std::fputc('\n', stdout);
    std::fflush(stdout);
    std::fprintf(stderr, "\n");
    print_rate("prompt eval:", rs.prompt_tokens, rs.ttft_s);
    print_rate("generation:", rs.generated - 1, rs.decode_s);
    std::fprintf(stderr, "%-20s %9.2f ms\n", "time to first token:", rs.ttft_s * 1e3);
    std::fprintf(stderr, "%-20s %6d tokens%s\n", "generated:", rs.generated,
                 rs.reason == FinishReason::Stop ? " (end of text)" : "");
    print_spec_stats(stderr, spec, rs.spec);
    if (sp.temperature > 0)
      std::fprintf(stderr, "%-20s %llu\n", "seed:", static_cast<unsigned long long>(sp.seed));
    return 0;
  }

  Sampler sampler(sp, model->config.n_vocab);
  for (int32_t id : ids) sampler.accept(id, true);
  const SampleFn sample = [&](const float* logits) {
    const int32_t id = sampler.sample(logits).id;
    sampler.accept(id);
    return id;
  };
  // A generation from BOS alone starts the text: SPM's prefix space of the first word is
  // dropped, as when decoding a whole sequence.
  StreamDecoder dec(tok, prompt.empty());
  std::fputs(prompt.c_str(), stdout);
  std::fflush(stdout);
  const TokenFn on_token = [&](int32_t id) {
    const std::string piece = dec.push(id);
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
    return true;
  };
  const GenerateTimings t = generate(
      *backend, ids, sample, [&](int32_t id) { return tok.is_eog(id); }, on_token, gopt);
  const std::string rest = dec.flush();
  std::fwrite(rest.data(), 1, rest.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);

  std::fprintf(stderr, "\n");
  print_rate("prompt eval:", t.prompt_tokens, t.prefill_s);
  print_rate("generation:", t.decode_steps, t.decode_s);
  std::fprintf(stderr, "%-20s %9.2f ms\n", "time to first token:", t.ttft_s * 1e3);
  std::fprintf(stderr, "%-20s %6d tokens%s\n", "generated:", t.generated_tokens,
               t.stopped_by_eog ? " (end of text)"
               : t.context_full ? " (context full)"
                                : "");
  if (sp.temperature > 0)
    std::fprintf(stderr, "%-20s %llu\n", "seed:", static_cast<unsigned long long>(sampler.seed()));
  return 0;
}

}  // namespace llm
