// `llm info`: what is in a GGUF file — architecture, hyperparameters, tokenizer, chat
// template, and where the bytes go (tensor types, sizes, bits per weight). Reads the
// file directly, so it also describes files the engine cannot run (vocab-only files,
// unsupported architectures) as far as it can.
#include <cstdio>
#include <map>
#include <set>
#include <string>

#include "engine/error.h"
#include "engine/gguf.h"
#include "engine/model.h"
#include "server/args.h"
#include "server/cli.h"

namespace llm {
namespace {

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) out += (i ? " x " : "") + std::to_string(s[i]);
  return out;
}

std::string human_bytes(double b) {
  char buf[32];
  if (b >= 1024.0 * 1024 * 1024)
    std::snprintf(buf, sizeof buf, "%.2f GiB", b / (1024.0 * 1024 * 1024));
  else if (b >= 1024.0 * 1024)
    std::snprintf(buf, sizeof buf, "%.2f MiB", b / (1024.0 * 1024));
  else if (b >= 1024.0)
    std::snprintf(buf, sizeof buf, "%.2f KiB", b / 1024.0);
  else
    std::snprintf(buf, sizeof buf, "%.0f B", b);
  return buf;
}

void print_config(const ModelConfig& c) {
  const char* rope =
      c.rope_type == RopeType::Norm ? "norm (pairs 2i, 2i+1)" : "neox (pairs i, i+d/2)";
  std::printf("architecture:    %s\n", c.arch_name.c_str());
  std::printf("name:            %s\n", c.name.empty() ? "(none)" : c.name.c_str());
  std::printf("vocab:           %d\n", c.n_vocab);
  std::printf("context (train): %d\n", c.n_ctx_train);
  std::printf("embedding:       %d\n", c.n_embd);
  std::printf("layers:          %d\n", c.n_layer);
  std::printf("heads:           %d\n", c.n_head);
  std::printf("kv heads:        %d%s\n", c.n_head_kv, c.n_head_kv < c.n_head ? " (GQA)" : "");
  std::printf("head dim:        %d\n", c.head_dim);
  std::printf("feed-forward:    %d\n", c.n_ff);
  std::printf("rope:            base %g, scale %g, dims %d, %s\n", c.rope_freq_base,
              c.rope_freq_scale, c.rope_dim, rope);
  std::printf("rms eps:         %g\n", c.rms_eps);
  std::printf("qkv bias:        %s\n", c.has_qkv_bias ? "yes" : "no");
  std::printf("output:          %s\n",
              c.tied_output ? "tied to token_embd" : "separate output.weight");
}

void print_tokenizer(const GgufFile& f) {
  auto model = f.get_string("tokenizer.ggml.model");
  auto pre = f.get_string("tokenizer.ggml.pre");
  auto tokens = f.get_string_array("tokenizer.ggml.tokens");
  std::printf("tokenizer:       %s", model ? model->c_str() : "(none)");
  if (pre) std::printf(", pre %s", pre->c_str());
  if (tokens) std::printf(", %zu tokens", tokens->size());
  std::printf("\n");
  const char* specials[][2] = {
      {"bos", "tokenizer.ggml.bos_token_id"},      {"eos", "tokenizer.ggml.eos_token_id"},
      {"eot", "tokenizer.ggml.eot_token_id"},      {"eom", "tokenizer.ggml.eom_token_id"},
      {"unk", "tokenizer.ggml.unknown_token_id"},  {"pad", "tokenizer.ggml.padding_token_id"},
      {"sep", "tokenizer.ggml.seperator_token_id"}};
  std::string ids;
  for (auto& s : specials) {
    auto v = f.get_int(s[1]);
    // Files mark an absent token with -1 or 0xFFFFFFFF: show only real ids.
    if (!v || *v < 0 || (tokens && static_cast<size_t>(*v) >= tokens->size())) continue;
    ids += std::string(ids.empty() ? "" : ", ") + s[0] + " " + std::to_string(*v);
    if (tokens) ids += " '" + std::string((*tokens)[static_cast<size_t>(*v)]) + "'";
  }
  std::printf("special tokens:  %s\n", ids.empty() ? "(none)" : ids.c_str());
  if (auto b = f.get_bool("tokenizer.ggml.add_bos_token"))
    std::printf("add bos:         %s\n", *b ? "yes" : "no");
  if (auto b = f.get_bool("tokenizer.ggml.add_eos_token"))
    std::printf("add eos:         %s\n", *b ? "yes" : "no");
  auto tmpl = f.get_string("tokenizer.chat_template");
  std::printf("chat template:   %s\n",
              tmpl ? ("present (" + std::to_string(tmpl->size()) + " chars)").c_str() : "absent");
}

}  // namespace

int cmd_info(int argc, char** argv) {
  Args args("info", "-m MODEL [--tensors]",
            "Shows a GGUF model's architecture, hyperparameters, tokenizer and tensor types.");
  args.flag("-m, --model", "FILE", "the GGUF file");
  args.flag("--tensors", "", "also list every tensor: name, type, shape, size");
  if (!args.parse(argc, argv)) return 0;
  std::string path = args.str("model");
  if (path.empty() && !args.positional().empty()) path = args.positional()[0];
  if (path.empty()) throw Error("llm info: which model? give -m MODEL (see 'llm info --help')");

  GgufFile f = GgufFile::open(path);
  std::printf("file:            %s (GGUF v%u, %s)\n", path.c_str(), f.version(),
              human_bytes(static_cast<double>(f.file_size())).c_str());
  try {
    print_config(ModelConfig::from_gguf(f));
  } catch (const Error& e) {
    // Still describe what is there: tokenizer and tensors.
    std::printf("model:           not runnable by llm: %s\n", e.what());
  }
  print_tokenizer(f);

  struct TypeStats {
    int count = 0;
    int64_t elements = 0;
    size_t bytes = 0;
  };
  std::map<std::string, TypeStats> by_type;
  TypeStats total;
  for (const GgufTensor& t : f.tensors()) {
    TypeStats& s = by_type[dtype_name(t.type)];
    ++s.count;
    s.elements += t.n_elements();
    s.bytes += t.bytes;
    ++total.count;
    total.elements += t.n_elements();
    total.bytes += t.bytes;
  }
  std::printf("tensors:         %d\n", total.count);
  if (total.count > 0) {
    std::printf("\n  %-6s %7s %15s %12s %8s\n", "type", "count", "elements", "size", "bits/w");
    for (const auto& [name, s] : by_type)
      std::printf("  %-6s %7d %15lld %12s %8.2f\n", name.c_str(), s.count,
                  static_cast<long long>(s.elements),
                  human_bytes(static_cast<double>(s.bytes)).c_str(),
                  8.0 * s.bytes / std::max<int64_t>(1, s.elements));
    std::printf("  %-6s %7d %15lld %12s %8.2f\n", "total", total.count,
                static_cast<long long>(total.elements),
                human_bytes(static_cast<double>(total.bytes)).c_str(),
                8.0 * total.bytes / std::max<int64_t>(1, total.elements));
    std::printf("\nweights:         %.3f GiB, %lld parameters, %.2f bits per weight\n",
                static_cast<double>(total.bytes) / (1024.0 * 1024 * 1024),
                static_cast<long long>(total.elements),
                8.0 * total.bytes / std::max<int64_t>(1, total.elements));
    // Tensor infos may share data (make-model --share-layers): say how much is stored.
    std::set<uint64_t> offsets;
    size_t stored = 0;
    for (const GgufTensor& t : f.tensors())
      if (offsets.insert(t.offset).second) stored += t.bytes;
    if (offsets.size() < f.tensors().size())
      std::printf("shared data:     %zu tensors point at other tensors' data; %s stored\n",
                  f.tensors().size() - offsets.size(),
                  human_bytes(static_cast<double>(stored)).c_str());
  }
  if (args.on("tensors")) {
    std::printf("\n  %-32s %-6s %-22s %12s\n", "name", "type", "shape", "size");
    for (const GgufTensor& t : f.tensors())
      std::printf("  %-32s %-6s %-22s %12s\n", t.name.c_str(), dtype_name(t.type),
                  shape_str(t.shape).c_str(), human_bytes(static_cast<double>(t.bytes)).c_str());
  }
  return 0;
}

}  // namespace llm
