// AVX2 unpacking shared by the AVX2 dequantizer (dequant_avx2.cpp) and dot products
// (dot_avx2.cpp): bytes and nibbles of a quant block to int32 lanes, eight at a time.
// Include only where x86 intrinsics exist; every function carries its own target
// attribute, so the including file may be built for SSE4.2.
#pragma once
#include <immintrin.h>

#include <cstdint>

#include "quant/formats.h"

#define LLM_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace llm::detail {

// 8 consecutive bytes, zero- / sign-extended into int32 lanes.
LLM_AVX2 inline __m256i u8x8(const uint8_t* p) {
  return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
}
LLM_AVX2 inline __m256i i8x8(const int8_t* p) {
  return _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
}
LLM_AVX2 inline __m256 to_f(__m256i v) {
  return _mm256_cvtepi32_ps(v);
}
// Block scales through the F16C instruction: exact like f16_to_f32, but branch-free.
LLM_AVX2 inline float h2f(f16_t h) {
  return _cvtsh_ss(h);
}

// Lane k holds 16 if bit k of `bits` (0..255) is set, else 0.
LLM_AVX2 inline __m256i bits_to_16(uint32_t bits) {
  const __m256i lane_bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
  const __m256i set = _mm256_and_si256(_mm256_set1_epi32(static_cast<int>(bits)), lane_bit);
  return _mm256_and_si256(_mm256_cmpeq_epi32(set, lane_bit), _mm256_set1_epi32(16));
}

// 32-element Q4 blocks (byte j: element j low, j + 16 high): the nibbles of elements
// [8g, 8g + 8), g in 0..3, as int32 lanes.
LLM_AVX2 inline __m256i nibbles(const uint8_t* qs, int g) {
  const __m256i q = u8x8(qs + 8 * (g & 1));
  return g < 2 ? _mm256_and_si256(q, _mm256_set1_epi32(0xF)) : _mm256_srli_epi32(q, 4);
}

// Q5_0 / Q5_1 blocks: the five-bit quants of elements [8g, 8g + 8), the fifth bit from qh.
LLM_AVX2 inline __m256i q5_group(const uint8_t* qs, uint32_t qh, int g) {
  return _mm256_or_si256(nibbles(qs, g), bits_to_16((qh >> (8 * g)) & 0xFF));
}

// Q6_K: the centred quants (-32..31) of elements l + 32k, k = 0..3, of one 128-element
// half (ql: its 64 low-nibble bytes, qh: its 32 high-pair bytes), lanes l .. l + 7.
LLM_AVX2 inline void q6_groups(const uint8_t* ql, const uint8_t* qh, int l, __m256i (&q)[4]) {
  const __m256i lo_mask = _mm256_set1_epi32(0xF), three = _mm256_set1_epi32(3);
  const __m256i off = _mm256_set1_epi32(32);
  const __m256i qa = u8x8(ql + l), qb = u8x8(ql + 32 + l), hh = u8x8(qh + l);
  const __m256i hi[4] = {
      _mm256_slli_epi32(_mm256_and_si256(hh, three), 4),
      _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(hh, 2), three), 4),
      _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(hh, 4), three), 4),
      _mm256_slli_epi32(_mm256_srli_epi32(hh, 6), 4),
  };
  q[0] = _mm256_sub_epi32(_mm256_or_si256(_mm256_and_si256(qa, lo_mask), hi[0]), off);
  q[1] = _mm256_sub_epi32(_mm256_or_si256(_mm256_and_si256(qb, lo_mask), hi[1]), off);
  q[2] = _mm256_sub_epi32(_mm256_or_si256(_mm256_srli_epi32(qa, 4), hi[2]), off);
  q[3] = _mm256_sub_epi32(_mm256_or_si256(_mm256_srli_epi32(qb, 4), hi[3]), off);
}

}  // namespace llm::detail
