// A loaded model: hyperparameters validated once, and named views of its weights in
// the memory-mapped GGUF. Backends read these views; they never parse GGUF themselves.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "engine/gguf.h"
#include "quant/formats.h"

namespace llm {

enum class Arch { Llama, Qwen2 };

// How RoPE pairs dimensions. Norm: (x[2i], x[2i+1]) — llama.cpp's LLAMA_ROPE_TYPE_NORM,
// used for `llama` because convert_hf_to_gguf permutes Q/K. Neox: (x[i], x[i + d/2]),
// used for qwen2.
enum class RopeType { Norm, Neox };

struct ModelConfig {
  Arch arch = Arch::Llama;
  std::string arch_name;     // general.architecture
  std::string name;          // general.name, if any
  int n_vocab = 0;
  int n_embd = 0;            // model width
  int n_layer = 0;
  int n_head = 0;
  int n_head_kv = 0;         // GQA: n_head % n_head_kv == 0
  int head_dim = 0;          // attention.key_length, default n_embd / n_head
  int n_ff = 0;              // feed_forward_length
  int n_ctx_train = 0;       // context_length
  float rms_eps = 1e-5f;
  RopeType rope_type = RopeType::Norm;
  int rope_dim = 0;          // rope.dimension_count, default head_dim
  float rope_freq_base = 10000.0f;
  float rope_freq_scale = 1.0f;  // 1 / rope.scaling.factor for linear scaling
  bool has_qkv_bias = false;
  bool tied_output = false;  // no output.weight: logits use token_embd.weight

  int q_dim() const { return n_head * head_dim; }
  int kv_dim() const { return n_head_kv * head_dim; }

  // Reads and validates hyperparameters; llama.cpp's defaults for missing keys.
  // Throws llm::Error naming the missing or inconsistent key.
  static ModelConfig from_gguf(const GgufFile& f);
};

// A view of one weight matrix or vector in the mapped file.
// Matrices are (rows, cols) row-major with `cols` contiguous (ggml ne0 = cols, ne1 = rows):
// y = W x takes x of length cols and gives y of length rows.
struct TensorRef {
  const GgufTensor* t = nullptr;  // null for an absent optional tensor
  DType type = DType::F32;
  const void* data = nullptr;
  int64_t cols = 0;
  int64_t rows = 1;
  size_t bytes = 0;
  explicit operator bool() const { return t != nullptr; }
  size_t row_bytes() const { return llm::row_bytes(type, cols); }
  const void* row(int64_t r) const { return static_cast<const uint8_t*>(data) + r * row_bytes(); }
};

struct LayerWeights {
  TensorRef attn_norm;          // (n_embd)
  TensorRef wq;                 // (q_dim, n_embd)
  TensorRef wk;                 // (kv_dim, n_embd)
  TensorRef wv;                 // (kv_dim, n_embd)
  TensorRef bq, bk, bv;         // (q_dim), (kv_dim), (kv_dim); qwen2 only
  TensorRef wo;                 // (n_embd, q_dim)
  TensorRef ffn_norm;           // (n_embd)
  TensorRef w_gate;             // (n_ff, n_embd)
  TensorRef w_up;               // (n_ff, n_embd)
  TensorRef w_down;             // (n_embd, n_ff)
};

struct ModelWeights {
  TensorRef tok_embd;               // (n_vocab, n_embd)
  TensorRef output_norm;            // (n_embd)
  TensorRef output;                 // (n_vocab, n_embd); == tok_embd when tied
  std::vector<LayerWeights> layers;  // (n_layer)
  std::vector<float> rope_freq_factors;  // (rope_dim / 2) from rope_freqs.weight (Llama 3.1); empty if none
};

struct Model {
  GgufFile file;
  ModelConfig config;
  ModelWeights weights;

  // Opens, parses and validates; throws llm::Error with a message a user can act on
  // (unsupported architecture, missing tensor, wrong shape or type).
  static std::unique_ptr<Model> load(const std::string& path);
  // Total bytes of weight data.
  size_t weight_bytes() const;
};

// RoPE inverse frequency of pair i (0 <= i < rope_dim/2), scaling and factors applied:
// theta(pos, i) = pos * rope_inv_freq(cfg, w, i).
float rope_inv_freq(const ModelConfig& cfg, const ModelWeights& w, int i);

}  // namespace llm
