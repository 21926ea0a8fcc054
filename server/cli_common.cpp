#include "server/cli_common.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "engine/error.h"

namespace llm {

void add_model_flags(Args& a) {
  a.flag("-m, --model", "FILE", "the GGUF model");
  a.flag("-t, --threads", "N", "CPU threads", "all cores");
  a.flag("-c, --ctx-size", "N", "tokens per sequence at most", "min(training context, KV cache)");
  a.flag("--device", "cuda|cpu", "where to run", "cuda when a GPU is present");
  a.flag("--gpu", "N", "CUDA device ordinal", "0");
  add_tp_flag(a);
  a.flag("--kv-tokens", "N", "KV cache capacity in tokens", "CPU: 4 contexts; CUDA: 90% of free memory");
  a.flag("--block-size", "N", "tokens per KV cache block", "16");
  a.flag("--parallel", "N", "sequences decoded together at most", "256");
  a.flag("--batch-tokens", "N", "tokens per engine step (decodes + prefill chunks)", "2048");
  a.flag("--policy", "fcfs|priority|deadline", "scheduling policy", "fcfs");
  a.flag("--no-prefix-cache", "", "do not reuse the KV cache of shared prompt prefixes");
  add_f16_copy_flag(a);
  add_deterministic_flag(a);
  add_spec_flags(a);
}

void add_deterministic_flag(Args& a) {
  a.flag("--deterministic", "",
         "batch-invariant results: a request's logits and greedy text are bit for bit the same "
         "whatever else runs with it (CUDA: slower batches and prompts; the CPU always is)");
}

void add_f16_copy_flag(Args& a) {
  a.flag("--f16-copy", "auto|on|off",
         "CUDA: keep an f16 copy of quantized weights for batched decode and prefill (2 bytes per "
         "weight more device memory; auto: when it takes at most half the free memory)",
         "auto");
}

BackendOptions::F16Copy f16_copy_of(const Args& a) {
  const std::string v = a.str("--f16-copy", "auto");
  if (v == "auto") return BackendOptions::F16Copy::Auto;
  if (v == "on") return BackendOptions::F16Copy::On;
  if (v == "off") return BackendOptions::F16Copy::Off;
  throw Error("llm " + a.command() + ": --f16-copy must be auto, on or off, got '" + v + "'");
}

void add_tp_flag(Args& a) {
  a.flag(
      "--tp", "N",
      "tensor parallelism: split every layer over N GPUs (--gpu .. --gpu + N - 1, through NCCL); "
      "with --device cpu, over N groups of threads",
      "1");
}

int tp_of(const Args& a) {
  const int64_t tp = a.i64("--tp", 1);
  if (tp < 1 || tp > 64)
    throw Error("llm " + a.command() + ": --tp must be 1..64, got " + std::to_string(tp));
  return static_cast<int>(tp);
}

DeviceKind device_of(const Args& a) {
  std::string d = a.str("--device");
  if (d.empty()) return cuda_device_count() > 0 ? DeviceKind::Cuda : DeviceKind::Cpu;
  if (d == "cuda" || d == "gpu") return DeviceKind::Cuda;
  if (d == "cpu") return DeviceKind::Cpu;
  throw Error("llm " + a.command() + ": --device must be cuda or cpu, got '" + d + "'");
}

LoadedModel load_model(const Args& a) {
  std::string path = a.str("--model");
  if (path.empty() && !a.positional().empty()) path = a.positional()[0];
  if (path.empty())
    throw Error("llm " + a.command() + ": which model? give -m MODEL (see 'llm " + a.command() +
                " --help')");
  LoadedModel lm;
  lm.model = Model::load(path);
  lm.tokenizer = std::make_unique<Tokenizer>(Tokenizer::from_gguf(lm.model->file));
  BackendOptions bo;
  bo.device = device_of(a);
  bo.gpu = static_cast<int>(a.i64("--gpu", 0));
  bo.n_threads = static_cast<int>(a.i64("--threads", 0));
  bo.block_size = static_cast<int>(a.i64("--block-size", 16));
  bo.kv_tokens = a.i64("--kv-tokens", 0);
  bo.f16_copy = f16_copy_of(a);
  bo.deterministic = a.on("--deterministic");
  if (bo.n_threads < 0 || bo.block_size < 1 || bo.block_size > 1024 || bo.kv_tokens < 0)
    throw Error("llm " + a.command() +
                ": --threads, --block-size (1..1024) and --kv-tokens must be positive");
  int ctx = static_cast<int>(a.i64("--ctx-size", 0));
  if (ctx <= 0) ctx = std::min(lm.model->config.n_ctx_train, 4096);
  if (bo.device == DeviceKind::Cpu && bo.kv_tokens == 0) {
    // Room for several full contexts so that concurrent requests can batch.
    bo.kv_tokens = static_cast<int64_t>(ctx) * 4;
  }
  // The draft first: on CUDA the target's KV cache takes most of the memory left.
  lm.spec = make_spec(a, *lm.model, bo, draft_kv_tokens_for(ctx));
  bo.tp = tp_of(a);  // the target only: a draft model runs whole, on --gpu
  lm.backend = make_backend(*lm.model, bo);
  return lm;
}

namespace {
std::string read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error("cannot read chat template file '" + path + "'");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}
}  // namespace

ChatTemplate pick_chat_template(const std::string& flag, const GgufFile& file, const Tokenizer& tok,
                                const std::string& who) {
  const std::string bos = tok.bos() >= 0 ? tok.token_text(tok.bos()) : "";
  const std::string eos = tok.eos() >= 0 ? tok.token_text(tok.eos()) : "";
  if (!flag.empty()) {
    if (std::filesystem::is_regular_file(flag))
      return ChatTemplate::from_source(read_all(flag), bos, eos);
    return ChatTemplate::builtin(flag, bos, eos);
  }
  if (auto t = ChatTemplate::from_gguf(file)) return *t;
  std::fprintf(stderr,
               "llm %s: warning: the model has no chat template (tokenizer.chat_template); using "
               "the built-in "
               "'chatml' (choose another with --chat-template NAME|FILE)\n",
               who.c_str());
  return ChatTemplate::builtin("chatml", bos, eos);
}

std::string chat_template_source(const std::string& flag, const GgufFile& file) {
  if (!flag.empty()) return std::filesystem::is_regular_file(flag) ? read_all(flag) : flag;
  return file.get_string("tokenizer.chat_template").value_or("");
}

EngineConfig engine_config(const Args& a, const Tokenizer& tok) {
  EngineConfig c;
  c.sched.max_num_seqs = static_cast<int>(a.i64("--parallel", 256));
  c.sched.max_num_batched_tokens = static_cast<int>(a.i64("--batch-tokens", 2048));
  std::string p = a.str("--policy", "fcfs");
  if (p == "fcfs")
    c.sched.policy = SchedulePolicy::Fcfs;
  else if (p == "priority")
    c.sched.policy = SchedulePolicy::Priority;
  else if (p == "deadline")
    c.sched.policy = SchedulePolicy::Deadline;
  else
    throw Error("llm " + a.command() + ": --policy must be fcfs, priority or deadline, got '" + p +
                "'");
  if (c.sched.max_num_seqs < 1 || c.sched.max_num_batched_tokens < 1)
    throw Error("llm " + a.command() + ": --parallel and --batch-tokens must be positive");
  c.prefix_caching = !a.on("--no-prefix-cache");
  // Candidate steps take logprobs from the device's log-sum-exp, full rows from the host's:
  // which one a step uses depends on every request in it, so one of them, always.
  if (a.on("--deterministic")) c.logit_candidates = false;
  c.max_model_len = static_cast<int>(a.i64("--ctx-size", 0));
  c.eog_ids = tok.eog_ids();
  return c;
}

EngineConfig engine_config(const Args& a, const LoadedModel& lm) {
  EngineConfig c = engine_config(a, *lm.tokenizer);
  c.spec = lm.spec.config;
  return c;
}

}  // namespace llm
