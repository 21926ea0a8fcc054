// The CPU reference of every forward-pass op. The CPU backend is built from these, and
// each CUDA kernel's test compares against them, so they favour clarity and plain f32
// arithmetic; only matmul (where all the time goes) is multithreaded.
//
// Row-major everywhere: a buffer commented (a, b) holds a rows of b contiguous floats.
#pragma once
#include <cstdint>

#include "engine/batch.h"
#include "engine/model.h"

namespace llm::cpu {

// out (n, W.cols) = rows tokens[i] of the embedding W (n_vocab, n_embd), dequantized.
// Tokens are trusted here (the backend validates the batch).
void embed(const TensorRef& W, const int32_t* tokens, int n, float* out);

// y (n_rows, n) = x / sqrt(mean(x^2) + eps) * w.   x: (n_rows, n), w: (n). y may alias x.
void rmsnorm(const float* x, const float* w, float* y, int n_rows, int n, float eps);

// y (n_rows, W.rows) = x (n_rows, W.cols) · Wᵀ — any weight DType; multithreaded over
// output rows; dequantizes each weight row once and dots it with all n_rows activations
// (prefill-friendly). n_threads <= 0 means all hardware threads.
void matmul(const TensorRef& W, const float* x, float* y, int n_rows, int n_threads);

// y (n_rows, n) += b (n) on every row.
void add_bias(float* y, const float* b, int n_rows, int n);

// In place on x (n_rows, n_heads, head_dim); only the first rope_dim dims of each head
// rotate by theta = positions[row] * inv_freq[i]; inv_freq (rope_dim/2) from
// rope_inv_freq(). Norm pairs (2i, 2i+1), Neox pairs (i, i + rope_dim/2).
void rope(float* x, const int32_t* positions, int n_rows, int n_heads, int head_dim, int rope_dim,
          RopeType type, const float* inv_freq);

// out (n) = silu(gate) * up, silu(g) = g / (1 + exp(-g)). out may alias gate or up.
void swiglu(const float* gate, const float* up, float* out, int64_t n);

// Causal attention over the paged cache of one layer.
//   q, out:           (n_tokens, n_head, head_dim)
//   k_cache, v_cache: (n_slots, n_head_kv, head_dim)
// Each row attends to positions 0..positions[row] of its sequence; the slot of position p
// is block_table[p / block_size] * block_size + p % block_size. Query head h reads KV
// head h / (n_head / n_head_kv) (GQA). Scale 1/sqrt(head_dim).
void attention(const float* q, const float* k_cache, const float* v_cache, const Batch& batch,
               int n_head, int n_head_kv, int head_dim, int block_size, float* out, int n_threads);

}  // namespace llm::cpu
