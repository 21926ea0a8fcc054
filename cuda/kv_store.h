// Finishes a layer's attention inputs in one pass: adds the q/k/v biases (qwen2), applies
// RoPE to q and k, writes the rotated q for attention and k, v as f16 into the paged
// cache at each row's slot.
#pragma once
#include "cuda/cuda_types.h"
#include "engine/model.h"

namespace llm::cuda {

struct QkvStoreArgs {
  const float* q = nullptr;  // (n_rows, n_head * head_dim), rows ld floats apart
  const float* k = nullptr;  // (n_rows, n_head_kv * head_dim), rows ld floats apart
  const float* v = nullptr;  // likewise
  int64_t ld = 0;
  const float* bq = nullptr;  // (n_head * head_dim) or null
  const float* bk = nullptr;
  const float* bv = nullptr;
  const int32_t* positions = nullptr;  // (n_rows)
  const int32_t* slots = nullptr;      // (n_rows)
  int n_rows = 0, n_head = 0, n_head_kv = 0, head_dim = 0, rope_dim = 0;
  RopeType rope_type = RopeType::Norm;
  const float* inv_freq = nullptr;  // (rope_dim / 2)
  float* q_out = nullptr;           // (n_rows, n_head, head_dim) f32
  __half* k_cache = nullptr;        // (n_slots, n_head_kv, head_dim) this layer
  __half* v_cache = nullptr;
};

void qkv_rope_store(const QkvStoreArgs& a, cudaStream_t stream);

}  // namespace llm::cuda
