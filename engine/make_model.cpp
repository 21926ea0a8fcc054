// Synthetic models of real shapes: the metadata that llama.cpp's convert_hf_to_gguf.py
// writes for the architecture, and seeded random weights at a realistic scale.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <utility>

#include "engine/convert.h"
#include "engine/tensor_stream.h"

namespace llm {

// Sources: each model's config.json on Hugging Face (meta-llama/Llama-3.2-1B,
// meta-llama/Llama-2-7b-hf, meta-llama/Llama-2-70b-hf, meta-llama/Llama-3.1-8B,
// mistralai/Mistral-7B-v0.3, Qwen/Qwen2-0.5B, Qwen/Qwen2.5-7B, TinyLlama/TinyLlama-1.1B-Chat-v1.0).
//
// The tiny test shapes use a larger weight scale (0.08 ~ 1.3 / sqrt(256)) than trained
// models' ~0.02 so that attention scores have a spread of ~2: softmax is then peaked and
// an error in RoPE, masking or head grouping changes the logits visibly. Their embeddings
// are larger too (RMS 1, or 0.25 where tied so that logits keep a spread of ~4): with an
// embedding of RMS 0.08 under blocks that add ~2, the first RMSNorm magnifies rounding in
// the embedding, and a 0.3% weight error grows to ~8% of the logits' spread instead of ~4%,
// which would blunt the comparisons of backends that these models exist for. `tiny` carries
// Llama 3.1 RoPE factors so that rope_freqs.weight is exercised; `tiny-qwen2` covers
// the NeoX RoPE pairing, QKV biases and a tied output.
const std::vector<ModelShape>& model_shapes() {
  static const std::vector<ModelShape> shapes = {
      // name, description, arch, vocab, embd, layers, heads, kv, ff, ctx, eps, base, tied, bias,
      // llama3 factor, matrix std, embedding std
      {"tiny", "Tiny Llama test model", Arch::Llama, 512, 256, 4, 8, 4, 768, 2048, 1e-5f, 10000.0f,
       false, false, 8.0f, 0.08f, 1.0f},
      {"tiny-qwen2", "Tiny Qwen2 test model", Arch::Qwen2, 512, 256, 4, 8, 2, 768, 4096, 1e-6f,
       1e6f, true, true, 0.0f, 0.08f, 0.25f},
      {"llama-1b", "Llama 3.2 1B", Arch::Llama, 128256, 2048, 16, 32, 8, 8192, 131072, 1e-5f,
       500000.0f, true, false, 32.0f, 0.02f, 0.02f},
      {"llama2-7b", "Llama 2 7B", Arch::Llama, 32000, 4096, 32, 32, 32, 11008, 4096, 1e-5f,
       10000.0f, false, false, 0.0f, 0.02f, 0.02f},
      {"llama2-70b", "Llama 2 70B", Arch::Llama, 32000, 8192, 80, 64, 8, 28672, 4096, 1e-5f,
       10000.0f, false, false, 0.0f, 0.02f, 0.02f},
      {"llama3-8b", "Llama 3.1 8B", Arch::Llama, 128256, 4096, 32, 32, 8, 14336, 131072, 1e-5f,
       500000.0f, false, false, 8.0f, 0.02f, 0.02f},
      {"mistral-7b", "Mistral 7B v0.3", Arch::Llama, 32768, 4096, 32, 32, 8, 14336, 32768, 1e-5f,
       1e6f, false, false, 0.0f, 0.02f, 0.02f},
      {"qwen2-0.5b", "Qwen2 0.5B", Arch::Qwen2, 151936, 896, 24, 14, 2, 4864, 32768, 1e-6f, 1e6f,
       true, true, 0.0f, 0.02f, 0.02f},
      {"qwen2.5-7b", "Qwen2.5 7B", Arch::Qwen2, 152064, 3584, 28, 28, 4, 18944, 32768, 1e-6f, 1e6f,
       false, true, 0.0f, 0.02f, 0.02f},
      {"tinyllama-1.1b", "TinyLlama 1.1B", Arch::Llama, 32000, 2048, 22, 32, 4, 5632, 2048, 1e-5f,
       10000.0f, false, false, 0.0f, 0.02f, 0.02f},
  };
  return shapes;
}

int64_t ModelShape::n_params() const {
  const int64_t hd = n_embd / n_head, q = int64_t{n_head} * hd, kv = int64_t{n_head_kv} * hd;
  int64_t layer = 2 * n_embd + n_embd * q * 2 + n_embd * kv * 2 + 3 * int64_t{n_embd} * n_ff;
  if (qkv_bias) layer += q + 2 * kv;
  return int64_t{n_vocab} * n_embd * (tied_output ? 1 : 2) + n_embd + layer * n_layer;
}

const ModelShape& find_shape(std::string_view name) {
  std::string names;
  for (const ModelShape& s : model_shapes()) {
    if (name == s.name) return s;
    names += (names.empty() ? "" : ", ") + std::string(s.name);
  }
  throw Error("unknown model shape '" + std::string(name) + "' (known: " + names + ")");
}

std::vector<float> llama3_rope_factors(float factor, float rope_base, int rope_dim) {
  // Llama 3.1: wavelengths shorter than original_ctx / high_freq_factor keep their
  // frequency, longer than original_ctx / low_freq_factor are slowed by `factor`, and
  // those between are interpolated smoothly.
  const double low_freq_factor = 1.0, high_freq_factor = 4.0, old_ctx = 8192.0;
  const double low_wavelen = old_ctx / low_freq_factor, high_wavelen = old_ctx / high_freq_factor;
  std::vector<float> out;
  for (int i = 0; i < rope_dim; i += 2) {
    // convert_hf_to_gguf computes the frequencies in float32.
    const float freq =
        1.0f / std::pow(rope_base, static_cast<float>(i) / static_cast<float>(rope_dim));
    const double wavelen = 2 * M_PI / freq;
    double f;
    if (wavelen < high_wavelen) {
      f = 1.0;
    } else if (wavelen > low_wavelen) {
      f = factor;
    } else {
      const double smooth =
          (old_ctx / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
      f = 1.0 / ((1.0 - smooth) / factor + smooth);
    }
    out.push_back(static_cast<float>(f));
  }
  return out;
}

namespace {

// --- seeded weights -------------------------------------------------------------
// Counter-based: element i of a tensor is a pure function of (seed, name, i), so chunks
// can be generated in any order on any thread. splitmix64's finaliser (Steele et al.,
// "Fast splittable pseudorandom number generators", 2014) mixes the counter.
uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t tensor_key(uint64_t seed, const std::string& name) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a of the name
  for (unsigned char c : name) h = (h ^ c) * 0x100000001b3ull;
  return mix64(mix64(seed + 0x9e3779b97f4a7c15ull) ^ h);
}

// Approximately N(0, 1): the sum of four 16-bit uniforms (Irwin-Hall, variance 4/12),
// centred and scaled. Bounded at +-3.46, which quantizers handle like real weights.
inline float normal_at(uint64_t key, uint64_t i) {
  const uint64_t r = mix64(key + (i + 1) * 0x9e3779b97f4a7c15ull);
  const uint32_t s = static_cast<uint32_t>(r & 0xffff) + static_cast<uint32_t>((r >> 16) & 0xffff) +
                     static_cast<uint32_t>((r >> 32) & 0xffff) + static_cast<uint32_t>(r >> 48);
  constexpr float kScale = 1.7320508f / 65536.0f;  // sqrt(3) / 2^16
  return (static_cast<float>(s) + 2.0f - 131072.0f) * kScale;
}

// mean + std * N(0, 1) for every element.
std::function<void(int64_t, int64_t, float*)> random_rows(uint64_t key, int64_t cols, float mean,
                                                          float std) {
  return [=](int64_t row0, int64_t n, float* dst) {
    const uint64_t first = static_cast<uint64_t>(row0 * cols);
    for (int64_t k = 0; k < n * cols; ++k)
      dst[k] = mean + std * normal_at(key, first + static_cast<uint64_t>(k));
  };
}

// --- vocabulary -------------------------------------------------------------------
enum TokenType : int32_t { kNormal = 1, kUnknown = 2, kControl = 3, kByte = 6 };

// A minimal SentencePiece-style vocabulary of n tokens: <unk> <s> </s>, the 256 byte
// fallback tokens, then distinct lowercase pieces ("▁a", "a", "▁b", ...) with
// decreasing scores, as llama.cpp's SPM tokenizer expects.
void write_synthetic_vocab(GgufWriter& w, int n) {
  std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
  std::vector<float> scores = {0, 0, 0};
  std::vector<int32_t> types = {kUnknown, kControl, kControl};
  char hex[8];
  for (int b = 0; b < 256; ++b) {
    std::snprintf(hex, sizeof hex, "<0x%02X>", b);
    tokens.push_back(hex);
    scores.push_back(0);
    types.push_back(kByte);
  }
  for (uint64_t k = 0; static_cast<int>(tokens.size()) < n; ++k) {
    // k -> bijective base-26 string: 0 "a", 25 "z", 26 "aa", ...
    std::string s;
    for (uint64_t x = k + 1; x > 0; x = (x - 1) / 26)
      s.insert(s.begin(), static_cast<char>('a' + (x - 1) % 26));
    for (const std::string& piece : {"\xe2\x96\x81" + s, s}) {
      if (static_cast<int>(tokens.size()) >= n) break;
      scores.push_back(-static_cast<float>(tokens.size()));
      tokens.push_back(piece);
      types.push_back(kNormal);
    }
  }
  w.set_string("tokenizer.ggml.model", "llama");
  w.set_string("tokenizer.ggml.pre", "default");
  w.set_string_array("tokenizer.ggml.tokens", tokens);
  w.set_f32_array("tokenizer.ggml.scores", scores);
  w.set_i32_array("tokenizer.ggml.token_type", types);
  w.set_u32("tokenizer.ggml.bos_token_id", 1);
  w.set_u32("tokenizer.ggml.eos_token_id", 2);
  w.set_u32("tokenizer.ggml.unknown_token_id", 0);
  w.set_bool("tokenizer.ggml.add_bos_token", true);
  w.set_bool("tokenizer.ggml.add_eos_token", false);
}

constexpr int kMinVocab = 3 + 256;

// --- the plan: shape with overrides, metadata, tensors ------------------------------
struct Plan {
  ModelShape s{};
  int head_dim = 0;
  std::vector<TensorSource> tensors;
};

Plan make_plan(const MakeModelOptions& opt, int n_vocab) {
  Plan p;
  p.s = find_shape(opt.shape);
  ModelShape& s = p.s;
  if (opt.n_layers < 0) throw Error("--layers must be positive");
  if (opt.n_layers > 0) s.n_layer = opt.n_layers;
  s.n_vocab = n_vocab;
  p.head_dim = s.n_embd / s.n_head;
  const int64_t E = s.n_embd, Q = int64_t{s.n_head} * p.head_dim,
                KV = int64_t{s.n_head_kv} * p.head_dim;
  const int64_t F = s.n_ff, V = s.n_vocab;
  MixModel mix;
  mix.arch = s.arch == Arch::Llama ? "llama" : "qwen2";
  mix.n_layer = s.n_layer;
  mix.n_head = s.n_head;
  mix.n_head_kv = s.n_head_kv;
  mix.has_output = !s.tied_output;
  const float sd = s.init_std;

  auto add = [&](const std::string& name, std::vector<int64_t> shape, float mean, float std) {
    TensorSource t;
    t.name = name;
    t.shape = std::move(shape);
    t.type = tensor_type_in(opt.type, mix, name, t.shape, opt.pure);
    t.rows = random_rows(tensor_key(opt.seed, name), t.shape[0], mean, std);
    p.tensors.push_back(std::move(t));
  };
  // share_layers: (name suffix, type) -> the tensor that holds layer 0's values in that
  // type; later layers' tensors of the same suffix and type point at its data.
  std::map<std::pair<std::string, DType>, size_t> shared;
  auto add_layer = [&](int l, const std::string& suffix, std::vector<int64_t> shape, float mean,
                       float std) {
    add("blk." + std::to_string(l) + "." + suffix, std::move(shape), mean, std);
    if (!opt.share_layers) return;
    TensorSource& t = p.tensors.back();
    t.rows = random_rows(tensor_key(opt.seed, "blk.0." + suffix), t.shape[0], mean, std);
    const auto [it, first] = shared.try_emplace({suffix, t.type}, p.tensors.size() - 1);
    if (!first) t.same_data_as = static_cast<int64_t>(it->second);
  };
  add("token_embd.weight", {E, V}, 0, s.embd_std);
  if (s.llama3_factor > 0) {
    TensorSource t{"rope_freqs.weight", DType::F32, {p.head_dim / 2}, nullptr};
    auto factors = llama3_rope_factors(s.llama3_factor, s.rope_base, p.head_dim);
    t.rows = [factors](int64_t, int64_t, float* dst) {
      std::copy(factors.begin(), factors.end(), dst);
    };
    p.tensors.push_back(std::move(t));
  }
  for (int l = 0; l < s.n_layer; ++l) {
    add_layer(l, "attn_norm.weight", {E}, 1.0f, 0.1f);
    add_layer(l, "attn_q.weight", {E, Q}, 0, sd);
    add_layer(l, "attn_k.weight", {E, KV}, 0, sd);
    add_layer(l, "attn_v.weight", {E, KV}, 0, sd);
    if (s.qkv_bias) {
      add_layer(l, "attn_q.bias", {Q}, 0, sd);
      add_layer(l, "attn_k.bias", {KV}, 0, sd);
      add_layer(l, "attn_v.bias", {KV}, 0, sd);
    }
    add_layer(l, "attn_output.weight", {Q, E}, 0, sd);
    add_layer(l, "ffn_norm.weight", {E}, 1.0f, 0.1f);
    add_layer(l, "ffn_gate.weight", {E, F}, 0, sd);
    add_layer(l, "ffn_up.weight", {E, F}, 0, sd);
    add_layer(l, "ffn_down.weight", {F, E}, 0, sd);
  }
  add("output_norm.weight", {E}, 1.0f, 0.1f);
  if (!s.tied_output) add("output.weight", {E, V}, 0, sd);
  return p;
}

// Hyperparameters under the keys convert_hf_to_gguf.py writes (LlamaModel adds
// vocab_size and rope.dimension_count; Qwen2Model writes neither).
void write_hparams(GgufWriter& w, const Plan& p, FileType type) {
  const ModelShape& s = p.s;
  const std::string a = s.arch == Arch::Llama ? "llama" : "qwen2";
  w.set_string("general.architecture", a);
  w.set_string("general.type", "model");
  w.set_string("general.name", std::string(s.description) + " (synthetic)");
  w.set_u32(a + ".block_count", static_cast<uint32_t>(s.n_layer));
  w.set_u32(a + ".context_length", static_cast<uint32_t>(s.n_ctx));
  w.set_u32(a + ".embedding_length", static_cast<uint32_t>(s.n_embd));
  w.set_u32(a + ".feed_forward_length", static_cast<uint32_t>(s.n_ff));
  w.set_u32(a + ".attention.head_count", static_cast<uint32_t>(s.n_head));
  w.set_u32(a + ".attention.head_count_kv", static_cast<uint32_t>(s.n_head_kv));
  w.set_f32(a + ".rope.freq_base", s.rope_base);
  w.set_f32(a + ".attention.layer_norm_rms_epsilon", s.rms_eps);
  w.set_u32("general.file_type", gguf_file_type(type));
  if (s.arch == Arch::Llama) {
    w.set_u32(a + ".vocab_size", static_cast<uint32_t>(s.n_vocab));
    w.set_u32(a + ".rope.dimension_count", static_cast<uint32_t>(p.head_dim));
  }
  if (file_type_quantized(type)) w.set_u32("general.quantization_version", 2);
}

// Vocabulary size of a --vocab file, and a check that it is one.
int vocab_size_of(const GgufFile& v) {
  auto tokens = v.get_string_array("tokenizer.ggml.tokens");
  if (!tokens || tokens->empty())
    throw Error(
        v.path() +
        ": no tokenizer.ggml.tokens (pass a vocabulary GGUF, e.g. ggml-vocab-llama-spm.gguf)");
  return static_cast<int>(tokens->size());
}

std::string human_bytes(double b) {
  char buf[32];
  if (b >= 1e9)
    std::snprintf(buf, sizeof buf, "%.2f GB", b / 1e9);
  else
    std::snprintf(buf, sizeof buf, "%.1f MB", b / 1e6);
  return buf;
}

}  // namespace

uint64_t model_file_bytes(const MakeModelOptions& opt) {
  int n_vocab = find_shape(opt.shape).n_vocab;
  if (!opt.vocab_path.empty()) n_vocab = vocab_size_of(GgufFile::open(opt.vocab_path));
  const Plan p = make_plan(opt, n_vocab);
  uint64_t n = 0;
  for (const TensorSource& t : p.tensors)
    if (t.same_data_as < 0) n += (row_bytes(t.type, t.shape[0]) * t.n_rows() + 31) / 32 * 32;
  return n;
}

void make_model(const MakeModelOptions& opt, const std::string& out_path) {
  const auto t0 = std::chrono::steady_clock::now();
  GgufFile vocab;
  int n_vocab = find_shape(opt.shape).n_vocab;
  if (!opt.vocab_path.empty()) {
    vocab = GgufFile::open(opt.vocab_path);
    n_vocab = vocab_size_of(vocab);
  } else if (n_vocab < kMinVocab) {
    throw Error("shape '" + opt.shape + "' has a vocabulary too small for a synthetic one");
  }
  const Plan plan = make_plan(opt, n_vocab);

  GgufWriter w;
  write_hparams(w, plan, opt.type);
  if (!opt.vocab_path.empty()) {
    for (const GgufKV& kv : vocab.metadata())
      if (kv.key.rfind("tokenizer.", 0) == 0) w.copy_value(kv.key, kv.value);
  } else {
    write_synthetic_vocab(w, n_vocab);
  }

  const size_t n = plan.tensors.size();
  uint64_t bytes = 0, stored = 0;  // weights, and the part of them with data of its own
  StreamOptions so;
  so.n_threads = opt.n_threads;
  so.data = opt.data;
  so.on_tensor = [&](size_t i, const TensorSource& t) {
    const uint64_t b = row_bytes(t.type, t.shape[0]) * static_cast<uint64_t>(t.n_rows());
    bytes += b;
    if (t.same_data_as < 0) stored += b;
    if (!opt.progress) return;
    std::string dims;
    for (int64_t d : t.shape) dims += (dims.empty() ? "" : "x") + std::to_string(d);
    std::string shares;
    if (t.same_data_as >= 0)
      shares = " = data of " + plan.tensors[static_cast<size_t>(t.same_data_as)].name;
    std::fprintf(stderr, "[%4zu/%zu] %-28s %-5s %s%s\n", i + 1, n, t.name.c_str(),
                 dtype_name(t.type), dims.c_str(), shares.c_str());
  };
  write_gguf_streamed(w, plan.tensors, out_path, so);
  if (opt.progress) {
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::string shared;
    if (stored < bytes)
      shared = " (" + human_bytes(static_cast<double>(stored)) +
               " stored: every layer shares layer 0's data)";
    std::fprintf(stderr,
                 "wrote %s: %s %s, %d layers, vocab %d, %zu tensors, %s of weights%s in %.1f s "
                 "(%.0f MB/s)\n",
                 out_path.c_str(), plan.s.description, file_type_name(opt.type), plan.s.n_layer,
                 n_vocab, n, human_bytes(static_cast<double>(bytes)).c_str(), shared.c_str(), s,
                 static_cast<double>(stored) / 1e6 / s);
  }
}

}  // namespace llm
