// Device side of RoPE, shared by the standalone rope kernel and the fused kv_store one.
#pragma once
#include "cuda/common.cuh"
#include "engine/model.h"

namespace llm::cuda {

// Fills cs/sn (rope_dim/2, shared memory) for one position: theta_i = pos * inv_freq[i],
// computed in double like the CPU reference (pos * freq reaches 1e5 rad at long context).
__device__ __forceinline__ void rope_table(int pos, const float* __restrict__ inv_freq, int half,
                                           float* cs, float* sn) {
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    double s, c;
    sincos(static_cast<double>(pos) * static_cast<double>(inv_freq[i]), &s, &c);
    cs[i] = static_cast<float>(c);
    sn[i] = static_cast<float>(s);
  }
}

// Element d of one rotated head. x: the head's head_dim inputs; b: its bias or null.
// Norm rotates neighbours (2i, 2i+1); Neox the halves (i, i + rope_dim/2).
__device__ __forceinline__ float rope_value(const float* __restrict__ x,
                                            const float* __restrict__ b, int d, int rope_dim,
                                            bool neox, const float* cs, const float* sn) {
  auto in = [&](int j) { return b ? x[j] + b[j] : x[j]; };
  if (d >= rope_dim) return in(d);
  const int half = rope_dim / 2;
  if (neox) {
    const int i = d < half ? d : d - half;
    return d < half ? in(d)*cs[i] - in(d + half) * sn[i] : in(d - half) * sn[i] + in(d)*cs[i];
  }
  const int i = d / 2;
  return (d & 1) == 0 ? in(d)*cs[i] - in(d + 1) * sn[i] : in(d - 1) * sn[i] + in(d)*cs[i];
}

}  // namespace llm::cuda
