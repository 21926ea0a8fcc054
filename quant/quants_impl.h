// Internal to quant/: per-block decoders shared by dequantize_row and the scalar vec_dot,
// and the per-type kernels behind the public dispatch in quants.cpp.
//
// Every decoder reproduces ggml's dequantize_row_* (ggml/src/ggml-quants.c) operation for
// operation, so that results are bit-identical: same integer unpacking, same float products
// in the same order, no fused multiply-add (llm_quant builds with -ffp-contract=off).
#pragma once
#include <cstdint>
#include <cstring>

#include "quant/formats.h"

namespace llm::detail {

inline uint32_t load_u32_le(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);  // GGUF is little-endian, and so is every host we build for
  return v;
}

// The 6-bit scale and min of sub-block j (0..7) of a Q4_K / Q5_K super-block.
// Layout of the 12 bytes (ggml get_scale_min_k4):
//   j < 4 : scale = q[j] & 63,                       min = q[j+4] & 63
//   j >= 4: scale = (q[j+4] & 15) | (q[j-4] >> 6) << 4, min = (q[j+4] >> 4) | (q[j] >> 6) << 4
inline void scale_min_k4(int j, const uint8_t* q, uint8_t* sc, uint8_t* m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = static_cast<uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    *m = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

// --- 32-element blocks ---------------------------------------------------------------
// Element j (0..15) is the low nibble of qs[j], element j+16 the high nibble.

inline void decode_block(const BlockQ4_0& b, float* y /* (32) */) {
  const float d = f16_to_f32(b.d);
  for (int j = 0; j < 16; ++j) {
    y[j] = static_cast<float>((b.qs[j] & 0xF) - 8) * d;
    y[j + 16] = static_cast<float>((b.qs[j] >> 4) - 8) * d;
  }
}

inline void decode_block(const BlockQ4_1& b, float* y /* (32) */) {
  const float d = f16_to_f32(b.d), m = f16_to_f32(b.m);
  for (int j = 0; j < 16; ++j) {
    y[j] = static_cast<float>(b.qs[j] & 0xF) * d + m;
    y[j + 16] = static_cast<float>(b.qs[j] >> 4) * d + m;
  }
}

// Fifth bit of element j is bit j of qh (little-endian uint32).
inline void decode_block(const BlockQ5_0& b, float* y /* (32) */) {
  const float d = f16_to_f32(b.d);
  const uint32_t qh = load_u32_le(b.qh);
  for (int j = 0; j < 16; ++j) {
    const int h0 = static_cast<int>((qh >> j) << 4) & 0x10;
    const int h1 = static_cast<int>(qh >> (j + 12)) & 0x10;
    y[j] = static_cast<float>(((b.qs[j] & 0xF) | h0) - 16) * d;
    y[j + 16] = static_cast<float>(((b.qs[j] >> 4) | h1) - 16) * d;
  }
}

inline void decode_block(const BlockQ5_1& b, float* y /* (32) */) {
  const float d = f16_to_f32(b.d), m = f16_to_f32(b.m);
  const uint32_t qh = load_u32_le(b.qh);
  for (int j = 0; j < 16; ++j) {
    const int h0 = static_cast<int>((qh >> j) << 4) & 0x10;
    const int h1 = static_cast<int>(qh >> (j + 12)) & 0x10;
    y[j] = static_cast<float>((b.qs[j] & 0xF) | h0) * d + m;
    y[j + 16] = static_cast<float>((b.qs[j] >> 4) | h1) * d + m;
  }
}

inline void decode_block(const BlockQ8_0& b, float* y /* (32) */) {
  const float d = f16_to_f32(b.d);
  for (int j = 0; j < 32; ++j) y[j] = static_cast<float>(b.qs[j]) * d;
}

// --- 256-element super-blocks ------------------------------------------------------------

// Four chunks of 64: qs[32c + l] holds element 64c + l (low nibble, sub-block 2c) and
// element 64c + 32 + l (high nibble, sub-block 2c + 1). value = d*sc * q - dmin*m.
inline void decode_block(const BlockQ4_K& b, float* y /* (256) */) {
  const float d = f16_to_f32(b.d), dmin = f16_to_f32(b.dmin);
  const uint8_t* q = b.qs;
  for (int c = 0; c < 4; ++c) {
    uint8_t sc, m;
    scale_min_k4(2 * c, b.scales, &sc, &m);
    const float d1 = d * sc, m1 = dmin * m;
    scale_min_k4(2 * c + 1, b.scales, &sc, &m);
    const float d2 = d * sc, m2 = dmin * m;
    for (int l = 0; l < 32; ++l) *y++ = d1 * static_cast<float>(q[l] & 0xF) - m1;
    for (int l = 0; l < 32; ++l) *y++ = d2 * static_cast<float>(q[l] >> 4) - m2;
    q += 32;
  }
}

// As Q4_K plus a fifth bit: element 64c + l takes bit 2c of qh[l], 64c + 32 + l bit 2c+1.
inline void decode_block(const BlockQ5_K& b, float* y /* (256) */) {
  const float d = f16_to_f32(b.d), dmin = f16_to_f32(b.dmin);
  const uint8_t* ql = b.qs;
  for (int c = 0; c < 4; ++c) {
    uint8_t sc, m;
    scale_min_k4(2 * c, b.scales, &sc, &m);
    const float d1 = d * sc, m1 = dmin * m;
    scale_min_k4(2 * c + 1, b.scales, &sc, &m);
    const float d2 = d * sc, m2 = dmin * m;
    const uint8_t u1 = static_cast<uint8_t>(1u << (2 * c)),
                  u2 = static_cast<uint8_t>(2u << (2 * c));
    for (int l = 0; l < 32; ++l)
      *y++ = d1 * static_cast<float>((ql[l] & 0xF) + ((b.qh[l] & u1) ? 16 : 0)) - m1;
    for (int l = 0; l < 32; ++l)
      *y++ = d2 * static_cast<float>((ql[l] >> 4) + ((b.qh[l] & u2) ? 16 : 0)) - m2;
    ql += 32;
  }
}

// Two halves of 128. In half h, for l in 0..31 (ql += 64h, qh += 32h, sc += 8h):
//   element l      = ql[l] & 15      | (qh[l] >> 0 & 3) << 4, scale sc[l/16]
//   element l + 32 = ql[l + 32] & 15 | (qh[l] >> 2 & 3) << 4, scale sc[l/16 + 2]
//   element l + 64 = ql[l] >> 4      | (qh[l] >> 4 & 3) << 4, scale sc[l/16 + 4]
//   element l + 96 = ql[l + 32] >> 4 | (qh[l] >> 6 & 3) << 4, scale sc[l/16 + 6]
// each minus 32; value = d * sc * q.
inline void decode_block(const BlockQ6_K& b, float* y /* (256) */) {
  const float d = f16_to_f32(b.d);
  const uint8_t* ql = b.ql;
  const uint8_t* qh = b.qh;
  const int8_t* sc = b.scales;
  for (int h = 0; h < 2; ++h) {
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      y[l + 0] = d * static_cast<float>(sc[is + 0]) * static_cast<float>(q1);
      y[l + 32] = d * static_cast<float>(sc[is + 2]) * static_cast<float>(q2);
      y[l + 64] = d * static_cast<float>(sc[is + 4]) * static_cast<float>(q3);
      y[l + 96] = d * static_cast<float>(sc[is + 6]) * static_cast<float>(q4);
    }
    y += 128;
    ql += 64;
    qh += 32;
    sc += 8;
  }
}

// --- kernels behind the public API ---------------------------------------------------------

// Quantizers of the k-quants (quants_k.cpp); nb = number of 256-element super-blocks.
void quantize_q4_k(const float* x, BlockQ4_K* y, int64_t nb);
void quantize_q5_k(const float* x, BlockQ5_K* y, int64_t nb);
void quantize_q6_k(const float* x, BlockQ6_K* y, int64_t nb);

// Scalar reference dot products (dot_scalar.cpp) and their AVX2+FMA twins (dot_avx2.cpp).
// Both return sum_i w[i] * x[i] for a row of type t; n is a multiple of the block size.
float vec_dot_scalar(DType t, const void* row, const float* x, int64_t n);
float vec_dot_avx2(DType t, const void* row, const float* x, int64_t n);
// AVX2 dequantize_row (dequant_avx2.cpp), bit-identical to the scalar decoders; returns
// false for types it leaves to the scalar loop.
bool dequantize_row_avx2(DType t, const void* src, float* dst, int64_t n);

}  // namespace llm::detail
