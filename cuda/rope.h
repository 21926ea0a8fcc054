// RoPE over heads: out (n_rows, n_heads, head_dim) = rotate(x) (out of place).
#pragma once
#include "cuda/cuda_types.h"
#include "engine/model.h"

namespace llm::cuda {

//   x, out: (n_rows, n_heads, head_dim) f32;  positions: (n_rows);  inv_freq: (rope_dim/2)
//   (all device). Only the first rope_dim dims of each head rotate.
void rope(const float* x, float* out, const int32_t* positions, int n_rows, int n_heads,
          int head_dim, int rope_dim, RopeType type, const float* inv_freq, cudaStream_t stream);

// The rotation table of a step's rows: cs[row * (rope_dim/2) + i] = (cos, sin) of
// positions[row] * inv_freq[i], with rope_table's arithmetic (for epilogues that rotate
// many rows of one position, once per step instead of once per layer and element).
void rope_cs_table(const int32_t* positions, int n_rows, int rope_dim, const float* inv_freq,
                   float2* cs, cudaStream_t stream);

}  // namespace llm::cuda
