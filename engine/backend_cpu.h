// The CPU backend: the llama / qwen2 forward pass in f32 over a paged f32 KV pool,
// built from the reference ops in engine/ops_cpu. It is the oracle the CUDA backend is
// checked against, and a usable fallback for small models.
#pragma once
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "engine/backend.h"

namespace llm {

class CpuBackend : public Backend {
 public:
  // Allocates the KV pool: BackendOptions::kv_tokens tokens, or min(n_ctx_train, 4096),
  // rounded up to whole blocks. Throws llm::Error on a bad option.
  CpuBackend(const Model& model, const BackendOptions& opt);

  std::string name() const override;
  const ModelConfig& config() const override { return cfg_; }
  // Throws llm::Error when the batch is malformed (token out of vocabulary, slot or block
  // outside the pool, ...); nothing is written in that case.
  void forward(const Batch& batch, float* logits) override;
  int block_size() const override { return block_size_; }
  int kv_blocks() const override { return kv_blocks_; }
  void copy_kv_block(int src, int dst) override;

  // Read access to the cache, for tests: (n_slots, n_head_kv, head_dim) of one layer.
  const float* k_cache(int layer) const { return k_[static_cast<size_t>(layer)].get(); }
  const float* v_cache(int layer) const { return v_[static_cast<size_t>(layer)].get(); }

 private:
  void validate(const Batch& batch) const;
  void reserve(int n_tokens, int n_logits);
  void add_branch(int n_tokens);  // x_ += xb_, all-reduced over tensor-parallel ranks

  const Model& model_;
  const ModelConfig& cfg_;
  Collective* comm_;  // tensor-parallel link; null for a whole model
  int n_threads_;
  bool deterministic_;  // BackendOptions::deterministic: named, changes nothing (name())
  int block_size_;
  int kv_blocks_;
  std::vector<float> inv_freq_;  // (rope_dim / 2)
  // calloc'd: the OS hands out zero pages as they are first touched, so a large pool
  // costs neither start-up time nor memory until it is used.
  struct FreeDeleter {
    void operator()(float* p) const { std::free(p); }
  };
  using Buffer = std::unique_ptr<float[], FreeDeleter>;
  std::vector<Buffer> k_;  // (n_layer) x (kv_blocks * block_size, n_head_kv, head_dim)
  std::vector<Buffer> v_;  // same

  // Work buffers, grown to the largest batch seen and reused.
  int cap_tokens_ = 0, cap_logits_ = 0;
  std::vector<float> x_;     // (n_tokens, n_embd) residual stream
  std::vector<float> xb_;    // (n_tokens, n_embd) normed input / branch output
  std::vector<float> q_;     // (n_tokens, q_dim)
  std::vector<float> kk_;    // (n_tokens, kv_dim)
  std::vector<float> vv_;    // (n_tokens, kv_dim)
  std::vector<float> att_;   // (n_tokens, q_dim)
  std::vector<float> gate_;  // (n_tokens, n_ff)
  std::vector<float> up_;    // (n_tokens, n_ff)
  std::vector<float> out_;   // (n_logits, n_embd) final-normed rows whose logits are wanted
};

}  // namespace llm
