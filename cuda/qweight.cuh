// Device-side access to DevMatrix units (see cuda/cuda_types.h for the layout): loading
// one 32-element unit, dequantizing it to floats, and its integer dot product with a
// q8 activation block. Used by matvec_quant, matmul (dequantize), embed.
#pragma once
#include "cuda/common.cuh"

namespace llm::cuda {

// Byte k (0..3) of a word, k at run time.
__device__ __forceinline__ uint32_t byte_at(uint32_t w, int k) {
  return (w >> (8 * k)) & 0xffu;
}

// 6-bit scale and min of sub-block j (0..7) of a Q4_K/Q5_K super-block whose first
// 16 bytes (d, dmin, scales[12]) are `meta` (ggml's get_scale_min_k4).
__device__ __forceinline__ void kq_scale_min(const uint4& meta, int j, float& sc, float& mn) {
  const int jj = j & 3;
  const uint32_t by = byte_at(meta.y, jj), bz = byte_at(meta.z, jj), bw = byte_at(meta.w, jj);
  uint32_t s, m;
  if (j < 4) {
    s = by & 63u;
    m = bz & 63u;
  } else {
    s = (bw & 0xfu) | ((by >> 6) << 4);
    m = (bw >> 4) | ((bz >> 6) << 4);
  }
  sc = static_cast<float>(s);
  mn = static_cast<float>(m);
}

// Everything one unit needs, loaded with a few wide loads.
struct Unit {
  uint4 q;      // 16 B nibbles (Q8_0: first half of the 32 int8)
  uint4 q2;     // Q8_0: second 16 int8
  uint4 meta;   // k-quants: super-block meta (Q6_K: int8 scales[16])
  uint32_t h0;  // 5th bits (Q5_0, Q5_K); Q6_K: high-pair word 0
  uint32_t h1;  // Q6_K: high-pair word 1
  float d, m;   // scale and min/offset terms (type-specific meaning, see dot_unit)
};

template <DType T>
__device__ __forceinline__ Unit load_unit(const DevMatrix& W, int64_t r, int64_t u) {
  Unit x{};
  if constexpr (T == DType::Q8_0) {
    const uint8_t* q = W.qs + r * W.qs_stride + u * 32;
    x.q = ld16_stream(q);
    x.q2 = ld16_stream(q + 16);
    x.d = half_bits_to_float(__ldg(reinterpret_cast<const uint16_t*>(W.sc + r * W.sc_stride) + u));
  } else {
    x.q = ld16_stream(W.qs + r * W.qs_stride + u * 16);
    if constexpr (T == DType::Q4_0 || T == DType::Q5_0) {
      x.d =
          half_bits_to_float(__ldg(reinterpret_cast<const uint16_t*>(W.sc + r * W.sc_stride) + u));
    } else if constexpr (T == DType::Q4_1) {
      const float2 dm = half2_bits_to_float2(ld4(W.sc + r * W.sc_stride + u * 4));
      x.d = dm.x;
      x.m = dm.y;
    } else if constexpr (T == DType::Q4_K || T == DType::Q5_K) {
      x.meta = ld16(W.sb + r * W.sb_stride + (u >> 3) * 16);
    } else if constexpr (T == DType::Q6_K) {
      x.meta = ld16(W.sb + r * W.sb_stride + (u >> 3) * 16);
      x.d = half_bits_to_float(
          __ldg(reinterpret_cast<const uint16_t*>(W.sc + r * W.sc_stride) + (u >> 3)));
    }
    if constexpr (T == DType::Q5_0 || T == DType::Q5_K) {
      x.h0 = ld4(W.qh + r * W.qh_stride + u * 4);
    } else if constexpr (T == DType::Q6_K) {
      const uint2 h = ld8(W.qh + r * W.qh_stride + u * 8);
      x.h0 = h.x;
      x.h1 = h.y;
    }
  }
  return x;
}

// The four 32-bit words of nibbles: word i holds elements 4i..4i+3 (low) and
// 16+4i..16+4i+3 (high).
__device__ __forceinline__ uint32_t word_of(const uint4& v, int i) {
  return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

// Spreads bits 0..3 of b to bit 4 of each byte (5th bit of four 4-bit values).
__device__ __forceinline__ uint32_t spread_bit4(uint32_t b) {
  return ((b & 1u) << 4) | ((b & 2u) << 11) | ((b & 4u) << 18) | ((b & 8u) << 25);
}

// Words i and 4 + i (i = 0..3) of the unit's integer quants: elements 4i..4i+3 (lo) and
// 16+4i..16+4i+3 (hi), 4 signed/unsigned bytes each. Q6_K values come out already
// centred (q - 32).
template <DType T>
__device__ __forceinline__ void unit_word_pair(const Unit& x, int i, int& lo_out, int& hi_out) {
  if constexpr (T == DType::Q8_0) {
    lo_out = static_cast<int>(word_of(x.q, i));
    hi_out = static_cast<int>(word_of(x.q2, i));
  } else {
    const uint32_t w = word_of(x.q, i);
    uint32_t lo = w & 0x0f0f0f0fu, hi = (w >> 4) & 0x0f0f0f0fu;
    if constexpr (T == DType::Q5_0 || T == DType::Q5_K) {
      lo |= spread_bit4(x.h0 >> (4 * i));
      hi |= spread_bit4(x.h0 >> (16 + 4 * i));
    } else if constexpr (T == DType::Q6_K) {
      lo |= ((x.h0 >> (2 * i)) & 0x03030303u) << 4;
      hi |= ((x.h1 >> (2 * i)) & 0x03030303u) << 4;
      lo = __vsub4(lo, 0x20202020u);
      hi = __vsub4(hi, 0x20202020u);
    }
    lo_out = static_cast<int>(lo);
    hi_out = static_cast<int>(hi);
  }
}

// Integer quants of the unit as 8 words of 4 bytes, word w holding elements 4w..4w+3.
template <DType T>
__device__ __forceinline__ void unit_words(const Unit& x, int (&v)[8]) {
#pragma unroll
  for (int i = 0; i < 4; ++i) unit_word_pair<T>(x, i, v[i], v[4 + i]);
}

// The dot product of unit u with one q8 activation block from its integer parts:
// s_lo = sum over elements 0..15 of q_w * q_x, s_hi over 16..31 (Q6_K scales the two
// halves apart), xds = {d_x, d_x * sum(q_x)}.
template <DType T>
__device__ __forceinline__ float combine_unit(const Unit& x, int64_t u, int s_lo, int s_hi,
                                              float2 xds) {
  if constexpr (T == DType::Q6_K) {
    const int j = static_cast<int>(u & 7);  // unit within the super-block: scales 2j, 2j+1
    const uint32_t sw = word_of(x.meta, j >> 1);
    const int sc0 = static_cast<int8_t>(byte_at(sw, (j & 1) * 2));
    const int sc1 = static_cast<int8_t>(byte_at(sw, (j & 1) * 2 + 1));
    return x.d * xds.x * static_cast<float>(sc0 * s_lo + sc1 * s_hi);
  } else {
    const float fs = static_cast<float>(s_lo + s_hi);
    if constexpr (T == DType::Q8_0) {
      return x.d * xds.x * fs;
    } else if constexpr (T == DType::Q4_0) {
      return x.d * (xds.x * fs - 8.0f * xds.y);
    } else if constexpr (T == DType::Q5_0) {
      return x.d * (xds.x * fs - 16.0f * xds.y);
    } else if constexpr (T == DType::Q4_1) {
      return x.d * xds.x * fs + x.m * xds.y;
    } else {  // Q4_K, Q5_K: d*sc*q - dmin*m
      float sc, mn;
      kq_scale_min(x.meta, static_cast<int>(u & 7), sc, mn);
      const float2 dd = half2_bits_to_float2(x.meta.x);
      return dd.x * sc * xds.x * fs - dd.y * mn * xds.y;
    }
  }
}

// Activation block u of a q8 row (qs, ds: the row's start) as dot_unit takes it: from
// shared memory (a row the kernel normalized itself) or from global memory.
template <bool SHARED>
__device__ __forceinline__ void load_act_q8(const int8_t* qs, const float2* ds, int64_t u,
                                            int (&xi)[8], float2& xds) {
  uint4 a, b;
  if constexpr (SHARED) {
    a = *reinterpret_cast<const uint4*>(qs + u * 32);
    b = *reinterpret_cast<const uint4*>(qs + u * 32 + 16);
    xds = ds[u];
  } else {
    a = ld16(qs + u * 32);
    b = ld16(qs + u * 32 + 16);
    xds = __ldg(ds + u);
  }
  const uint32_t w[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
#pragma unroll
  for (int i = 0; i < 8; ++i) xi[i] = static_cast<int>(w[i]);
}

// Dot product of unit u (of row r) with one q8 activation block: xi (8 words of int8),
// xds = {d_x, d_x * sum(q_x)}.
template <DType T>
__device__ __forceinline__ float dot_unit(const Unit& x, int64_t u, const int (&xi)[8],
                                          float2 xds) {
  int v[8];
  unit_words<T>(x, v);
  int s0 = 0, s1 = 0;
#pragma unroll
  for (int i = 0; i < 4; ++i) s0 = dp4a(v[i], xi[i], s0);
#pragma unroll
  for (int i = 4; i < 8; ++i) s1 = dp4a(v[i], xi[i], s1);
  return combine_unit<T>(x, u, s0, s1, xds);
}

// The 32 float values of unit u (element order).
template <DType T>
__device__ __forceinline__ void dequant_unit(const Unit& x, int64_t u, float (&out)[32]) {
  int v[8];
  unit_words<T>(x, v);
  float scale[2], offset[2];
  if constexpr (T == DType::Q8_0) {
    scale[0] = scale[1] = x.d;
    offset[0] = offset[1] = 0.0f;
  } else if constexpr (T == DType::Q4_0) {
    scale[0] = scale[1] = x.d;
    offset[0] = offset[1] = -8.0f * x.d;
  } else if constexpr (T == DType::Q5_0) {
    scale[0] = scale[1] = x.d;
    offset[0] = offset[1] = -16.0f * x.d;
  } else if constexpr (T == DType::Q4_1) {
    scale[0] = scale[1] = x.d;
    offset[0] = offset[1] = x.m;
  } else if constexpr (T == DType::Q6_K) {
    const int j = static_cast<int>(u & 7);
    const uint32_t sw = word_of(x.meta, j >> 1);
    scale[0] = x.d * static_cast<float>(static_cast<int8_t>(byte_at(sw, (j & 1) * 2)));
    scale[1] = x.d * static_cast<float>(static_cast<int8_t>(byte_at(sw, (j & 1) * 2 + 1)));
    offset[0] = offset[1] = 0.0f;
  } else {
    float sc, mn;
    kq_scale_min(x.meta, static_cast<int>(u & 7), sc, mn);
    const float2 dd = half2_bits_to_float2(x.meta.x);
    scale[0] = scale[1] = dd.x * sc;
    offset[0] = offset[1] = -dd.y * mn;
  }
  constexpr bool kSigned = T == DType::Q8_0 || T == DType::Q6_K;
#pragma unroll
  for (int w = 0; w < 8; ++w) {
    const int half = w >> 2;  // words 0..3: elements 0..15, words 4..7: 16..31
#pragma unroll
    for (int b = 0; b < 4; ++b) {
      const int q = kSigned ? static_cast<int>(static_cast<int8_t>(byte_at(v[w], b)))
                            : static_cast<int>(byte_at(v[w], b));
      out[4 * w + b] = scale[half] * static_cast<float>(q) + offset[half];
    }
  }
}

}  // namespace llm::cuda
