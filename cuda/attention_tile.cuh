// One warp's share of a key tile in shared memory, for decode attention that stages the
// cache (attention_decode_persist.cu): scores with D / 8 lanes per key (16 bytes of the key
// row each, then a transposing shuffle sum), an online softmax of the warp's own, and P·V
// with D / 32 head dims per lane.
#pragma once
#include "cuda/common.cuh"

namespace llm::cuda {

constexpr float kAttnLog2e = 1.4426950408889634f;

// 16 bytes global -> shared, or 16 zero bytes when !valid (the source is not read).
__device__ __forceinline__ void cp_async16_zfill(uint32_t s, const void* g, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(s), "l"(g), "r"(valid ? 16 : 0)
               : "memory");
}

// 4 bytes global -> shared, or 4 zero bytes when !valid.
__device__ __forceinline__ void cp_async4_zfill(uint32_t s, const void* g, bool valid) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;" ::"r"(s), "l"(g), "r"(valid ? 4 : 0)
               : "memory");
}

// The lane's 8 query dims for attend_tile (piece lane % (D / 8) of the key rows it
// scores), scaled by 1/sqrt(D) and log2(e) for a base-2 softmax. q: the head's D floats.
template <int D>
__device__ __forceinline__ void load_q_piece(const float* q, float (&qr)[8]) {
  const int c = (threadIdx.x & 31) % (D / 8);
  const float scale = rsqrtf(static_cast<float>(D)) * kAttnLog2e;
  const float4 q0 = *reinterpret_cast<const float4*>(q + c * 8);
  const float4 q1 = *reinterpret_cast<const float4*>(q + c * 8 + 4);
  qr[0] = q0.x * scale, qr[1] = q0.y * scale, qr[2] = q0.z * scale, qr[3] = q0.w * scale;
  qr[4] = q1.x * scale, qr[5] = q1.y * scale, qr[6] = q1.z * scale, qr[7] = q1.w * scale;
}

// kt, vt: the warp's KPW key and value rows (KPW, D) f16 in shared memory, of which the
// first n_valid are real keys (the rest are masked; may be <= 0). m: the warp's running max
// (base 2); l: the lane's share of the running sum (warp_sum(l) is the warp's); acc: the
// lane's D / 32 dims of the unnormalised output.
template <int D, int KPW>
__device__ __forceinline__ void attend_tile(const __half* kt, const __half* vt,
                                            const float (&qr)[8], int n_valid, float& m, float& l,
                                            float (&acc)[D / 32]) {
  constexpr int LPK = D / 8;     // lanes per key in the scores
  constexpr int KPI = 32 / LPK;  // keys per warp instruction
  constexpr int R = KPW / KPI;   // keys per lane before the sum
  constexpr int DUP = LPK / R;   // lanes that end with the same key's score
  constexpr int DPL = D / 32;    // head dims per lane in P·V
  static_assert((D == 64 || D == 128) && R >= 1 && DUP >= 2, "shape");
  const int lane = threadIdx.x & 31, g = lane / LPK, c = lane % LPK;
  // Partial dots: value i is key KPI * i + g, piece c.
  float part[R];
#pragma unroll
  for (int i = 0; i < R; ++i) {
    const uint4 raw = *reinterpret_cast<const uint4*>(kt + (KPI * i + g) * D + c * 8);
    const uint32_t w[4] = {raw.x, raw.y, raw.z, raw.w};
    float d0 = 0.0f, d1 = 0.0f;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const float2 f = half2_bits_to_float2(w[j]);
      d0 = fmaf(qr[2 * j], f.x, d0);
      d1 = fmaf(qr[2 * j + 1], f.y, d1);
    }
    part[i] = d0 + d1;
  }
  // Sum over the LPK lanes of each key, halving the values held at each step: after it
  // the lane holds value c / DUP (DUP lanes alike), i.e. key KPI * (c / DUP) + g.
#pragma unroll
  for (int o = LPK / 2, n = R; n > 1; o >>= 1, n >>= 1) {
    const bool up = (lane & o) != 0;
#pragma unroll
    for (int j = 0; j < n / 2; ++j) {
      const float send = up ? part[j] : part[j + n / 2];
      const float keep = up ? part[j + n / 2] : part[j];
      part[j] = keep + __shfl_xor_sync(0xffffffffu, send, o);
    }
  }
  float s = part[0];
#pragma unroll
  for (int o = DUP / 2; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
  const bool valid = KPI * (c / DUP) + g < n_valid;
  if (!valid) s = -INFINITY;
  // Max over the warp's keys: lanes that differ below DUP hold the same key.
  float mx = s;
#pragma unroll
  for (int o = DUP; o < 32; o <<= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
  const float m_new = fmaxf(m, mx);
  const float m_use = m_new == -INFINITY ? 0.0f : m_new;  // no key of this warp yet
  const float p = valid ? exp2f(s - m_use) : 0.0f;
  const float corr = exp2f(m - m_use);
  l = l * corr + (lane % DUP == 0 ? p : 0.0f);
  m = m_new;
#pragma unroll
  for (int i = 0; i < DPL; ++i) acc[i] *= corr;
    // P·V: key k's weight from the lane that holds it; the lane's DPL dims of its row.
#pragma unroll
  for (int k = 0; k < KPW; ++k) {
    const float pk = __shfl_sync(0xffffffffu, p, (k % KPI) * LPK + DUP * (k / KPI));
    const __half* vp = vt + k * D + lane * DPL;
    if constexpr (DPL == 4) {
      const uint2 v = *reinterpret_cast<const uint2*>(vp);
      const float2 f0 = half2_bits_to_float2(v.x), f1 = half2_bits_to_float2(v.y);
      acc[0] = fmaf(pk, f0.x, acc[0]);
      acc[1] = fmaf(pk, f0.y, acc[1]);
      acc[2] = fmaf(pk, f1.x, acc[2]);
      acc[3] = fmaf(pk, f1.y, acc[3]);
    } else {
      const float2 f = half2_bits_to_float2(*reinterpret_cast<const uint32_t*>(vp));
      acc[0] = fmaf(pk, f.x, acc[0]);
      acc[1] = fmaf(pk, f.y, acc[1]);
    }
  }
}

}  // namespace llm::cuda
