// Writing an activation element in every requested format (ActOut), with the q8
// quantization done per warp: the calling warp must hold 32 consecutive elements of one
// row (lane l holds element e0 + l, e0 % 32 == 0) whenever out.q8 is requested.
#pragma once
#include "cuda/common.cuh"

namespace llm::cuda {

__device__ __forceinline__ void act_store(const ActOut& out, int64_t row, int64_t k, int64_t e,
                                          float v) {
  const int64_t i = row * k + e;
  if (out.f32) out.f32[i] = v;
  if (out.f16) out.f16[i] = __float2half_rn(v);
  if (out.q8.qs) {
    const float amax = warp_max(fabsf(v));
    const float d = amax / 127.0f;
    const int q = d > 0.0f ? __float2int_rn(v / d) : 0;
    out.q8.qs[i] = static_cast<int8_t>(q);
    const int sum = warp_sum_int(q);
    if ((threadIdx.x & 31) == 0) out.q8.ds[i / 32] = make_float2(d, d * static_cast<float>(sum));
  }
}

}  // namespace llm::cuda
