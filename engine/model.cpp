#include "engine/model.h"

#include <cfloat>
#include <cmath>
#include <cstring>

namespace llm {
namespace {

std::string key(const std::string& arch, const char* suffix) { return arch + "." + suffix; }

// Every size is a positive int of at most 2^30, so that products of two sizes (q_dim)
// still fit an int64 and one size never wraps when narrowed to int.
constexpr int64_t kMaxSize = int64_t(1) << 30;

int checked_size(const GgufFile& f, const std::string& k, int64_t v) {
  if (v <= 0 || v > kMaxSize)
    throw Error(f.path() + ": metadata '" + k + "' has invalid value " + std::to_string(v));
  return static_cast<int>(v);
}

int require_int(const GgufFile& f, const std::string& k) {
  auto v = f.get_int(k);
  if (!v) throw Error(f.path() + ": missing required metadata '" + k + "'");
  return checked_size(f, k, *v);
}

int optional_int(const GgufFile& f, const std::string& k, int fallback) {
  auto v = f.get_int(k);
  return v ? checked_size(f, k, *v) : fallback;
}

// A positive, finite float (epsilons, frequencies, factors).
float positive_float(const GgufFile& f, const std::string& k, double fallback) {
  const double v = f.get_float(k).value_or(fallback);
  if (!(v > 0) || !(v <= FLT_MAX))
    throw Error(f.path() + ": metadata '" + k + "' must be a positive number, is " +
                std::to_string(v));
  return static_cast<float>(v);
}

// head_count_kv may be an array (per-layer) in some files; we need one value.
int head_count(const GgufFile& f, const std::string& k, int fallback) {
  const GgufValue* v = f.find(k);
  if (!v) return fallback;
  if (v->type == GgufType::ARRAY) {
    auto arr = f.get_int_array(k);
    if (!arr || arr->empty()) throw Error(f.path() + ": metadata '" + k + "' is an empty array");
    for (int64_t x : *arr)
      if (x != (*arr)[0]) throw Error(f.path() + ": per-layer '" + k + "' values differ; not supported");
    return checked_size(f, k, (*arr)[0]);
  }
  return require_int(f, k);
}

}  // namespace

ModelConfig ModelConfig::from_gguf(const GgufFile& f) {
  ModelConfig c;
  auto arch = f.get_string("general.architecture");
  if (!arch) throw Error(f.path() + ": missing 'general.architecture' (is this a model file?)");
  c.arch_name = *arch;
  if (c.arch_name == "llama") {
    c.arch = Arch::Llama;
    c.rope_type = RopeType::Norm;
  } else if (c.arch_name == "qwen2") {
    c.arch = Arch::Qwen2;
    c.rope_type = RopeType::Neox;
  } else {
    throw Error(f.path() + ": unsupported architecture '" + c.arch_name +
                "' (supported: llama — Llama 2/3/3.x, Mistral, TinyLlama, SmolLM — and qwen2)");
  }
  c.name = f.get_string("general.name").value_or("");
  const std::string& a = c.arch_name;
  c.n_embd = require_int(f, key(a, "embedding_length"));
  c.n_layer = require_int(f, key(a, "block_count"));
  c.n_ff = require_int(f, key(a, "feed_forward_length"));
  c.n_head = head_count(f, key(a, "attention.head_count"), 0);
  if (c.n_head <= 0) throw Error(f.path() + ": missing required metadata '" + key(a, "attention.head_count") + "'");
  c.n_head_kv = head_count(f, key(a, "attention.head_count_kv"), c.n_head);
  // A context length of 0 or less means "not given" (llama.cpp's default).
  const int64_t ctx = f.get_int(key(a, "context_length")).value_or(2048);
  c.n_ctx_train = ctx <= 0 ? 2048 : checked_size(f, key(a, "context_length"), ctx);
  c.head_dim = optional_int(f, key(a, "attention.key_length"), c.n_embd / c.n_head);
  if (int64_t(c.n_head) * c.head_dim > kMaxSize)
    throw Error(f.path() + ": attention.head_count x attention.key_length is too large");
  if (auto vl = f.get_int(key(a, "attention.value_length")); vl && *vl != c.head_dim)
    throw Error(f.path() + ": attention.value_length != key_length is not supported");
  c.rms_eps = positive_float(f, key(a, "attention.layer_norm_rms_epsilon"), 1e-5);
  c.rope_freq_base = positive_float(f, key(a, "rope.freq_base"), 10000.0);
  c.rope_dim = optional_int(f, key(a, "rope.dimension_count"), c.head_dim);
  auto scaling = f.get_string(key(a, "rope.scaling.type")).value_or("none");
  if (scaling == "linear") {
    c.rope_freq_scale = 1.0f / positive_float(f, key(a, "rope.scaling.factor"), 1.0);
  } else if (f.find(key(a, "rope.scale_linear"))) {
    c.rope_freq_scale = 1.0f / positive_float(f, key(a, "rope.scale_linear"), 1.0);
  } else if (scaling != "none" && scaling != "llama3") {
    // llama3 scaling is carried by the rope_freqs.weight tensor.
    throw Error(f.path() + ": unsupported rope.scaling.type '" + scaling + "'");
  }

  // Vocabulary size: metadata, else the token list, else the embedding rows.
  const GgufTensor* emb = f.tensor("token_embd.weight");
  if (!emb) throw Error(f.path() + ": missing tensor 'token_embd.weight'");
  if (emb->shape.size() != 2) throw Error(f.path() + ": token_embd.weight must be 2-D");
  c.n_vocab = checked_size(f, "token_embd.weight rows", emb->shape[1]);
  c.has_qkv_bias = f.tensor("blk.0.attn_q.bias") != nullptr;
  c.tied_output = f.tensor("output.weight") == nullptr;

  if (c.n_head % c.n_head_kv != 0)
    throw Error(f.path() + ": head_count " + std::to_string(c.n_head) + " is not a multiple of head_count_kv " +
                std::to_string(c.n_head_kv));
  if (c.head_dim <= 0 || c.head_dim % 2 != 0) throw Error(f.path() + ": head dimension must be even and positive");
  if (c.rope_dim <= 0 || c.rope_dim > c.head_dim || c.rope_dim % 2 != 0)
    throw Error(f.path() + ": rope.dimension_count " + std::to_string(c.rope_dim) + " is invalid for head dim " +
                std::to_string(c.head_dim));
  return c;
}

namespace {

TensorRef bind(const GgufFile& f, const std::string& name, std::vector<int64_t> shape, bool required) {
  TensorRef r;
  const GgufTensor* t = f.tensor(name);
  if (!t) {
    if (required) throw Error(f.path() + ": missing tensor '" + name + "'");
    return r;
  }
  auto shape_str = [](const std::vector<int64_t>& s) {
    std::string out = "[";
    for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
    return out + "]";
  };
  if (t->shape != shape)
    throw Error(f.path() + ": tensor '" + name + "' has shape " + shape_str(t->shape) + ", expected " +
                shape_str(shape));
  if (!traits(t->type).supported)
    throw Error(f.path() + ": tensor '" + name + "' has type " + dtype_name(t->type) +
                ", which llm does not support yet (supported: f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q4_K q5_K q6_K)");
  // Norms and biases are applied in f32.
  if (shape.size() == 1 && t->type != DType::F32)
    throw Error(f.path() + ": tensor '" + name + "' must be f32, is " + dtype_name(t->type));
  r.t = t;
  r.type = t->type;
  r.data = t->data;
  r.cols = shape[0];
  r.rows = shape.size() > 1 ? shape[1] : 1;
  r.bytes = t->bytes;
  return r;
}

}  // namespace

std::unique_ptr<Model> Model::load(const std::string& path) {
  auto m = std::make_unique<Model>();
  m->file = GgufFile::open(path);
  const GgufFile& f = m->file;
  ModelConfig& c = m->config;
  c = ModelConfig::from_gguf(f);
  ModelWeights& w = m->weights;
  const int64_t E = c.n_embd, Q = c.q_dim(), KV = c.kv_dim(), F = c.n_ff, V = c.n_vocab;
  w.tok_embd = bind(f, "token_embd.weight", {E, V}, true);
  w.output_norm = bind(f, "output_norm.weight", {E}, true);
  w.output = c.tied_output ? w.tok_embd : bind(f, "output.weight", {E, V}, true);
  for (int l = 0; l < c.n_layer; ++l) {
    std::string p = "blk." + std::to_string(l) + ".";
    LayerWeights L;
    L.attn_norm = bind(f, p + "attn_norm.weight", {E}, true);
    L.wq = bind(f, p + "attn_q.weight", {E, Q}, true);
    L.wk = bind(f, p + "attn_k.weight", {E, KV}, true);
    L.wv = bind(f, p + "attn_v.weight", {E, KV}, true);
    L.bq = bind(f, p + "attn_q.bias", {Q}, c.has_qkv_bias);
    L.bk = bind(f, p + "attn_k.bias", {KV}, c.has_qkv_bias);
    L.bv = bind(f, p + "attn_v.bias", {KV}, c.has_qkv_bias);
    L.wo = bind(f, p + "attn_output.weight", {Q, E}, true);
    L.ffn_norm = bind(f, p + "ffn_norm.weight", {E}, true);
    L.w_gate = bind(f, p + "ffn_gate.weight", {E, F}, true);
    L.w_up = bind(f, p + "ffn_up.weight", {E, F}, true);
    L.w_down = bind(f, p + "ffn_down.weight", {F, E}, true);
    w.layers.push_back(L);
  }
  if (const GgufTensor* rf = f.tensor("rope_freqs.weight")) {
    if (rf->type != DType::F32 || rf->shape.size() != 1 || rf->shape[0] != c.rope_dim / 2)
      throw Error(f.path() + ": rope_freqs.weight must be f32 of " + std::to_string(c.rope_dim / 2) + " elements");
    w.rope_freq_factors.resize(static_cast<size_t>(c.rope_dim / 2));
    std::memcpy(w.rope_freq_factors.data(), rf->data, rf->bytes);
    for (float x : w.rope_freq_factors)
      if (!(x > 0)) throw Error(f.path() + ": rope_freqs.weight has a non-positive factor");
  }
  return m;
}

size_t Model::weight_bytes() const {
  size_t n = 0;
  for (const GgufTensor& t : file.tensors()) n += t.bytes;
  return n;
}

float rope_inv_freq(const ModelConfig& cfg, const ModelWeights& w, int i) {
  // theta_i = base^(-2i/d), as llama.cpp's ggml_rope_ext (ext_factor 0).
  double f = std::pow(static_cast<double>(cfg.rope_freq_base), -2.0 * i / cfg.rope_dim);
  f *= cfg.rope_freq_scale;
  if (!w.rope_freq_factors.empty()) f /= w.rope_freq_factors[static_cast<size_t>(i)];
  return static_cast<float>(f);
}

}  // namespace llm
