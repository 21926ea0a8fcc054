// Device side of RoPE, shared by the standalone rope kernel and the fused kv_store one.
#pragma once
#include "cuda/common.cuh"
#include "engine/model.h"

namespace llm::cuda {

// {cos, sin} of the angle pos * inv_freq, computed in double like the CPU reference
// (pos * freq reaches 1e5 rad at long context). Every RoPE path takes its angles from here.
__device__ __forceinline__ float2 rope_cos_sin(int pos, float inv_freq) {
  double s, c;
  sincos(static_cast<double>(pos) * static_cast<double>(inv_freq), &s, &c);
  return make_float2(static_cast<float>(c), static_cast<float>(s));
}

// Fills cs/sn (rope_dim/2, shared memory) for one position: theta_i = pos * inv_freq[i].
__device__ __forceinline__ void rope_table(int pos, const float* __restrict__ inv_freq, int half,
                                           float* cs, float* sn) {
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    const float2 v = rope_cos_sin(pos, inv_freq[i]);
    cs[i] = v.x;
    sn[i] = v.y;
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
