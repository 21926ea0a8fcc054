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

// RMSNorm's pieces for rows held as one float4 per thread (rmsnorm_vec_kernel, and the
// kernels that normalize their input themselves: matvec_glu), so that they give its bits.
__device__ __forceinline__ float sum_sq4(const float4& x) {
  return x.x * x.x + x.y * x.y + x.z * x.z + x.w * x.w;
}
__device__ __forceinline__ float4 norm4(const float4& x, float scale, const float4& w) {
  return make_float4(x.x * scale * w.x, x.y * scale * w.y, x.z * scale * w.z, x.w * scale * w.w);
}
__device__ __forceinline__ float group8_max(float v) {
  v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
  v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
  return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 4));
}
__device__ __forceinline__ int group8_sum(int v) {
  v += __shfl_xor_sync(0xffffffffu, v, 1);
  v += __shfl_xor_sync(0xffffffffu, v, 2);
  return v + __shfl_xor_sync(0xffffffffu, v, 4);
}
// q8 of y, elements e..e+3, where 8 neighbouring threads hold a 32-element block (all 8
// call it; `in`: whether this thread's elements exist). qs / ds: global or shared.
__device__ __forceinline__ void q8_store4(const float4& y, bool in, int8_t* qs, float2* ds,
                                          int64_t e) {
  const float amax =
      group8_max(fmaxf(fmaxf(fabsf(y.x), fabsf(y.y)), fmaxf(fabsf(y.z), fabsf(y.w))));
  const float d = amax / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
  const int q0 = __float2int_rn(y.x * id), q1 = __float2int_rn(y.y * id),
            q2 = __float2int_rn(y.z * id), q3 = __float2int_rn(y.w * id);
  const int sum = group8_sum(q0 + q1 + q2 + q3);
  if (in) {
    *reinterpret_cast<uint32_t*>(qs + e) = (q0 & 0xff) | ((q1 & 0xff) << 8) | ((q2 & 0xff) << 16) |
                                           (static_cast<uint32_t>(q3 & 0xff) << 24);
    if ((threadIdx.x & 7) == 0) ds[e / 32] = make_float2(d, d * static_cast<float>(sum));
  }
}

// y (elements e..e+3 of a row, `in`: whether they exist) in each format of `out`; the
// q8 path needs all 8 threads of a 32-element block to call it (q8_store4).
__device__ __forceinline__ void act_store4(const ActOut& out, const float4& y, bool in, int64_t e) {
  if (in && out.f32) *reinterpret_cast<float4*>(out.f32 + e) = y;
  if (in && out.f16) {
    __half2 h[2] = {__floats2half2_rn(y.x, y.y), __floats2half2_rn(y.z, y.w)};
    *reinterpret_cast<uint2*>(out.f16 + e) = *reinterpret_cast<const uint2*>(h);
  }
  if (out.q8.qs) q8_store4(y, in, out.q8.qs, out.q8.ds, e);
}

// The RMSNorm of row `row` (n wide), held as C float4s a thread (chunk c: float4
// c * blockDim.x + threadIdx.x; zeros past the row), times the weights wv in the same
// layout, into `out`: rmsnorm_vec_kernel's arithmetic. Every thread of the block calls it.
template <int C>
__device__ __forceinline__ void norm_chunks_store(const float4 (&xv)[C], const float4 (&wv)[C],
                                                  int n, float eps, int64_t row, const ActOut& out,
                                                  float* red) {
  const int n4 = n / 4, tid = static_cast<int>(threadIdx.x), nt = static_cast<int>(blockDim.x);
  float ss = 0.0f;
#pragma unroll
  for (int c = 0; c < C; ++c) ss += sum_sq4(xv[c]);
  ss = block_sum(ss, red);
  const float scale = rsqrtf(ss / static_cast<float>(n) + eps);
#pragma unroll
  for (int c = 0; c < C; ++c) {
    const int i = c * nt + tid;
    if (c * nt >= n4) break;  // uniform over the block
    const bool in = i < n4;
    float4 y = make_float4(0, 0, 0, 0);
    if (in) y = norm4(xv[c], scale, wv[c]);
    // n % 32 == 0 where q8 is wanted: whole groups.
    act_store4(out, y, in, row * n + 4 * static_cast<int64_t>(i));
  }
}

// A kernel that normalizes its one input row itself (matvec_glu, the generic GEMV's NORM
// mode): a float4 a thread, blockDim.x == rmsnorm_vec_threads(n), so rmsnorm's bits. The
// norm weights load before the PDL wait (norm_row_weights), the row after it (norm_row_q8,
// called by every thread of the block; q8 into shared memory).
__device__ __forceinline__ float4 norm_row_weights(const float* w, int64_t n) {
  const int t = static_cast<int>(threadIdx.x);
  return 4 * t < n ? __ldg(reinterpret_cast<const float4*>(w) + t) : make_float4(0, 0, 0, 0);
}
__device__ __forceinline__ void norm_row_q8(const float* h, const float4& wv, int64_t n, float eps,
                                            int8_t* qs, float2* ds, float* red) {
  const int t = static_cast<int>(threadIdx.x);
  const bool inside = 4 * t < n;
  const float4 xv = inside ? reinterpret_cast<const float4*>(h)[t] : make_float4(0, 0, 0, 0);
  float ss = 0.0f;
  ss += sum_sq4(xv);
  ss = block_sum(ss, red);
  const float scale = rsqrtf(ss / static_cast<float>(n) + eps);
  const float4 y = inside ? norm4(xv, scale, wv) : make_float4(0, 0, 0, 0);
  q8_store4(y, inside, qs, ds, 4 * t);  // every thread: its shuffles span the warp
  __syncthreads();
}

}  // namespace llm::cuda
