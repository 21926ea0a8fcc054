// The end of a decode-attention block (attention_decode.cu) or item
// (attention_decode_persist.cu): the warps' online-softmax states are merged, then either
// the row's output is written (the block covers all keys) or the split's partial
// {M, L, acc[D]}, and the last split of the (row, head) to arrive merges them all
// (threadfence reduction: no second kernel).
#pragma once
#include "cuda/act.cuh"
#include "cuda/attention.h"

namespace llm::cuda {

constexpr int kDecodeMaxSplit = 32;  // the merge keeps one weight per split in a warp

// m, l: the warp's running max (base 2) and sum; acc: the lane's DPL head dims of the
// warp's unnormalised output (lane * DPL .. +DPL, if within D). acc_s: kWarps * D floats
// of shared memory. z: the row's index in the launch (partials and counters), split of
// n_split launched, n_eff of them holding keys.
template <int kWarps, int DPL>
__device__ __forceinline__ void decode_block_finish(const AttnArgs& a, float* __restrict__ ws,
                                                    int* __restrict__ counters, float* acc_s,
                                                    int row, int h, int z, int split, int n_split,
                                                    int n_eff, float m, float l,
                                                    const float (&acc)[DPL]) {
  __shared__ float m_s[kWarps], l_s[kWarps];
  const int D = a.head_dim, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) {
    m_s[warp] = m;
    l_s[warp] = l;
  }
  if (lane * DPL < D) {
#pragma unroll
    for (int i = 0; i < DPL; ++i) acc_s[warp * D + lane * DPL + i] = acc[i];
  }
  __syncthreads();
  float M = -INFINITY;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) M = fmaxf(M, m_s[w]);
  float wt[kWarps], L = 0.0f;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) {
    wt[w] = m_s[w] == -INFINITY ? 0.0f : exp2f(m_s[w] - M);
    L += wt[w] * l_s[w];
  }
  if (n_eff == 1) {  // the whole range: write the result directly
    const ActOut o{a.out, a.out_f16, a.out_q8};
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
      float v = 0.0f;
#pragma unroll
      for (int w = 0; w < kWarps; ++w) v += wt[w] * acc_s[w * D + d];
      act_store(o, row, static_cast<int64_t>(a.n_head) * D, static_cast<int64_t>(h) * D + d, v / L);
    }
    return;
  }
  // Partial of this split: {M, L, acc[D]} (M = -inf, L = 0 for an empty split).
  float* part = ws + (static_cast<int64_t>(z) * a.n_head + h) * n_split * (D + 2);
  float* p = part + split * (D + 2);
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    float v = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) v += wt[w] * acc_s[w * D + d];
    p[2 + d] = v;
  }
  if (threadIdx.x == 0) {
    p[0] = M;
    p[1] = L;
  }
  int* counter = counters + static_cast<int64_t>(z) * a.n_head + h;
  if (!last_arrival(counter, n_eff)) return;
  // out = sum_s w_s acc_s / sum_s w_s l_s, w_s = 2^(m_s - max m). The partials of other
  // blocks are read around L1 (__ldcg), which is not coherent; all of them at once.
  __shared__ float wsplit[kDecodeMaxSplit];
  __shared__ float inv_l;
  if (threadIdx.x < 32) {
    const int s = threadIdx.x;
    const float ms = s < n_eff ? __ldcg(part + s * (D + 2)) : -INFINITY;
    const float ls = s < n_eff ? __ldcg(part + s * (D + 2) + 1) : 0.0f;
    const float mx = warp_max(ms);
    const float w = ms == -INFINITY ? 0.0f : exp2f(ms - mx);
    const float lsum = warp_sum(w * ls);
    if (s < n_eff) wsplit[s] = w;
    if (s == 0) inv_l = 1.0f / lsum;
  }
  __syncthreads();
  const ActOut o{a.out, a.out_f16, a.out_q8};
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    float v = 0.0f;
#pragma unroll 4
    for (int s = 0; s < n_eff; ++s) v += wsplit[s] * __ldcg(part + s * (D + 2) + 2 + d);
    act_store(o, row, static_cast<int64_t>(a.n_head) * D, static_cast<int64_t>(h) * D + d,
              v * inv_l);
  }
  if (threadIdx.x == 0) *counter = 0;  // ready for the next launch
}

}  // namespace llm::cuda
