#include "engine/dequant_avx2.h"

#include <cassert>
#include <cstring>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

#define LLM_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace llm::cpu {
namespace {

// The reference computes q * d + m as two rounded operations (quant/ builds with
// -ffp-contract=off). GCC's intrinsics are plain vector arithmetic that it may fuse
// into an fma here; the empty asm makes the product a value the compiler cannot look
// through, so it is rounded on its own exactly like the reference.
LLM_AVX2 inline __m256 mul_unfused(__m256 a, __m256 b) {
  __m256 p = _mm256_mul_ps(a, b);
  asm("" : "+x"(p));
  return p;
}

LLM_AVX2 inline __m256i u8x8(const uint8_t* p) {
  return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
}
LLM_AVX2 inline __m256i i8x8(const int8_t* p) {
  return _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
}
LLM_AVX2 inline float h2f(f16_t h) {
  return _cvtsh_ss(h);
}  // exact, like f16_to_f32

// Lane k holds 16 when bit k of bits (0..255) is set, else 0.
LLM_AVX2 inline __m256i bits_to_16(uint32_t bits) {
  const __m256i lane_bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
  const __m256i set = _mm256_and_si256(_mm256_set1_epi32(static_cast<int>(bits)), lane_bit);
  return _mm256_and_si256(_mm256_cmpeq_epi32(set, lane_bit), _mm256_set1_epi32(16));
}

// 8 low / high nibbles of 8 bytes, as int32 lanes.
LLM_AVX2 inline __m256i lo4(__m256i bytes) {
  return _mm256_and_si256(bytes, _mm256_set1_epi32(0xF));
}
LLM_AVX2 inline __m256i hi4(__m256i bytes) {
  return _mm256_srli_epi32(bytes, 4);
}

// --- 32-element blocks: element j (0..15) in the low nibble of qs[j], j+16 in the high.

LLM_AVX2 void q4_0(const BlockQ4_0* b, float* y, int64_t nb) {
  const __m256i eight = _mm256_set1_epi32(8);
  for (int64_t i = 0; i < nb; ++i, y += 32) {
    const __m256 d = _mm256_set1_ps(h2f(b[i].d));
    for (int j = 0; j < 16; j += 8) {
      const __m256i q = u8x8(b[i].qs + j);
      // float(q - 8) * d
      _mm256_storeu_ps(y + j,
                       _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(lo4(q), eight)), d));
      _mm256_storeu_ps(y + j + 16,
                       _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(hi4(q), eight)), d));
    }
  }
}

LLM_AVX2 void q4_1(const BlockQ4_1* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += 32) {
    const __m256 d = _mm256_set1_ps(h2f(b[i].d)), m = _mm256_set1_ps(h2f(b[i].m));
    for (int j = 0; j < 16; j += 8) {
      const __m256i q = u8x8(b[i].qs + j);
      // float(q) * d + m
      _mm256_storeu_ps(y + j, _mm256_add_ps(mul_unfused(_mm256_cvtepi32_ps(lo4(q)), d), m));
      _mm256_storeu_ps(y + j + 16, _mm256_add_ps(mul_unfused(_mm256_cvtepi32_ps(hi4(q)), d), m));
    }
  }
}

// Fifth bit of element j is bit j of qh (little-endian uint32).
LLM_AVX2 void q5_0(const BlockQ5_0* b, float* y, int64_t nb) {
  const __m256i sixteen = _mm256_set1_epi32(16);
  for (int64_t i = 0; i < nb; ++i, y += 32) {
    const __m256 d = _mm256_set1_ps(h2f(b[i].d));
    uint32_t qh;
    std::memcpy(&qh, b[i].qh, 4);
    for (int j = 0; j < 16; j += 8) {
      const __m256i q = u8x8(b[i].qs + j);
      const __m256i q0 = _mm256_or_si256(lo4(q), bits_to_16((qh >> j) & 0xFF));
      const __m256i q1 = _mm256_or_si256(hi4(q), bits_to_16((qh >> (j + 16)) & 0xFF));
      _mm256_storeu_ps(y + j, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(q0, sixteen)), d));
      _mm256_storeu_ps(y + j + 16,
                       _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(q1, sixteen)), d));
    }
  }
}

LLM_AVX2 void q5_1(const BlockQ5_1* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += 32) {
    const __m256 d = _mm256_set1_ps(h2f(b[i].d)), m = _mm256_set1_ps(h2f(b[i].m));
    uint32_t qh;
    std::memcpy(&qh, b[i].qh, 4);
    for (int j = 0; j < 16; j += 8) {
      const __m256i q = u8x8(b[i].qs + j);
      const __m256i q0 = _mm256_or_si256(lo4(q), bits_to_16((qh >> j) & 0xFF));
      const __m256i q1 = _mm256_or_si256(hi4(q), bits_to_16((qh >> (j + 16)) & 0xFF));
      _mm256_storeu_ps(y + j, _mm256_add_ps(mul_unfused(_mm256_cvtepi32_ps(q0), d), m));
      _mm256_storeu_ps(y + j + 16, _mm256_add_ps(mul_unfused(_mm256_cvtepi32_ps(q1), d), m));
    }
  }
}

LLM_AVX2 void q8_0(const BlockQ8_0* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += 32) {
    const __m256 d = _mm256_set1_ps(h2f(b[i].d));
    for (int j = 0; j < 32; j += 8)
      _mm256_storeu_ps(y + j, _mm256_mul_ps(_mm256_cvtepi32_ps(i8x8(b[i].qs + j)), d));
  }
}

// --- 256-element super-blocks ---------------------------------------------------

// Sub-block j's 6-bit scale and min (ggml get_scale_min_k4).
inline void scale_min_k4(int j, const uint8_t* q, int* sc, int* m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

// Chunk c (of 4) of 64: qs[32c + l] holds element 64c + l (low nibble, sub-block 2c) and
// 64c + 32 + l (high nibble, sub-block 2c + 1); with Q5_K, bits 2c and 2c+1 of qh[l] add
// 16. value = (d * sc) * q - dmin * m.
template <bool kFive, class Block>
LLM_AVX2 void qk_45(const Block* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = h2f(b[i].d), dmin = h2f(b[i].dmin);
    const uint8_t* q = b[i].qs;
    for (int c = 0; c < 4; ++c, q += 32, y += 64) {
      int sc, m;
      scale_min_k4(2 * c, b[i].scales, &sc, &m);
      const __m256 d1 = _mm256_set1_ps(d * static_cast<float>(sc)),
                   m1 = _mm256_set1_ps(dmin * static_cast<float>(m));
      scale_min_k4(2 * c + 1, b[i].scales, &sc, &m);
      const __m256 d2 = _mm256_set1_ps(d * static_cast<float>(sc)),
                   m2 = _mm256_set1_ps(dmin * static_cast<float>(m));
      for (int l = 0; l < 32; l += 8) {
        const __m256i qq = u8x8(q + l);
        __m256i a = lo4(qq), h = hi4(qq);
        if constexpr (kFive) {
          const __m256i qh = u8x8(b[i].qh + l);
          const __m256i bit_a = _mm256_set1_epi32(1 << (2 * c)),
                        bit_h = _mm256_set1_epi32(2 << (2 * c));
          const __m256i sixteen = _mm256_set1_epi32(16);
          a = _mm256_add_epi32(
              a, _mm256_and_si256(_mm256_cmpeq_epi32(_mm256_and_si256(qh, bit_a), bit_a), sixteen));
          h = _mm256_add_epi32(
              h, _mm256_and_si256(_mm256_cmpeq_epi32(_mm256_and_si256(qh, bit_h), bit_h), sixteen));
        }
        _mm256_storeu_ps(y + l, _mm256_sub_ps(mul_unfused(d1, _mm256_cvtepi32_ps(a)), m1));
        _mm256_storeu_ps(y + 32 + l, _mm256_sub_ps(mul_unfused(d2, _mm256_cvtepi32_ps(h)), m2));
      }
    }
  }
}

// Two halves of 128; in half h (ql += 64h, qh += 32h, sc += 8h), for l in 0..31:
//   element l      = ql[l] & 15      | (qh[l] >> 0 & 3) << 4, scale sc[l/16]
//   element l + 32 = ql[l + 32] & 15 | (qh[l] >> 2 & 3) << 4, scale sc[l/16 + 2]
//   element l + 64 = ql[l] >> 4      | (qh[l] >> 4 & 3) << 4, scale sc[l/16 + 4]
//   element l + 96 = ql[l + 32] >> 4 | (qh[l] >> 6 & 3) << 4, scale sc[l/16 + 6]
// each minus 32; value = (d * sc) * q.
// dst (8) = (d * sc) * float(q - 32)
LLM_AVX2 inline void q6_put(float* dst, __m256i q, float d, int8_t sc) {
  const __m256 ds = _mm256_set1_ps(d * static_cast<float>(sc));
  _mm256_storeu_ps(
      dst, _mm256_mul_ps(ds, _mm256_cvtepi32_ps(_mm256_sub_epi32(q, _mm256_set1_epi32(32)))));
}

LLM_AVX2 void q6_k(const BlockQ6_K* b, float* y, int64_t nb) {
  const __m256i three = _mm256_set1_epi32(3);
  for (int64_t i = 0; i < nb; ++i) {
    const float d = h2f(b[i].d);
    const uint8_t* ql = b[i].ql;
    const uint8_t* qh = b[i].qh;
    const int8_t* sc = b[i].scales;
    for (int half = 0; half < 2; ++half, ql += 64, qh += 32, sc += 8, y += 128) {
      for (int l = 0; l < 32; l += 8) {
        const int is = l / 16;
        const __m256i a = u8x8(ql + l), c = u8x8(ql + l + 32), h = u8x8(qh + l);
        const __m256i q1 =
            _mm256_or_si256(lo4(a), _mm256_slli_epi32(_mm256_and_si256(h, three), 4));
        const __m256i q2 = _mm256_or_si256(
            lo4(c), _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(h, 2), three), 4));
        const __m256i q3 = _mm256_or_si256(
            hi4(a), _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(h, 4), three), 4));
        const __m256i q4 = _mm256_or_si256(
            hi4(c), _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(h, 6), three), 4));
        q6_put(y + l, q1, d, sc[is]);
        q6_put(y + l + 32, q2, d, sc[is + 2]);
        q6_put(y + l + 64, q3, d, sc[is + 4]);
        q6_put(y + l + 96, q4, d, sc[is + 6]);
      }
    }
  }
}

bool cpu_ok() {
  static const bool ok = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
           __builtin_cpu_supports("f16c");
  }();
  return ok;
}

}  // namespace

bool has_dequantize_avx2(DType t) {
  switch (t) {
    case DType::Q4_0:
    case DType::Q4_1:
    case DType::Q5_0:
    case DType::Q5_1:
    case DType::Q8_0:
    case DType::Q4_K:
    case DType::Q5_K:
    case DType::Q6_K:
      return cpu_ok();
    default:
      return false;
  }
}

void dequantize_row_avx2(DType t, const void* src, float* dst, int64_t n) {
  assert(has_dequantize_avx2(t) && n % traits(t).block_elems == 0);
  const int64_t nb = n / traits(t).block_elems;
  switch (t) {
    case DType::Q4_0:
      q4_0(static_cast<const BlockQ4_0*>(src), dst, nb);
      return;
    case DType::Q4_1:
      q4_1(static_cast<const BlockQ4_1*>(src), dst, nb);
      return;
    case DType::Q5_0:
      q5_0(static_cast<const BlockQ5_0*>(src), dst, nb);
      return;
    case DType::Q5_1:
      q5_1(static_cast<const BlockQ5_1*>(src), dst, nb);
      return;
    case DType::Q8_0:
      q8_0(static_cast<const BlockQ8_0*>(src), dst, nb);
      return;
    case DType::Q4_K:
      qk_45<false>(static_cast<const BlockQ4_K*>(src), dst, nb);
      return;
    case DType::Q5_K:
      qk_45<true>(static_cast<const BlockQ5_K*>(src), dst, nb);
      return;
    case DType::Q6_K:
      q6_k(static_cast<const BlockQ6_K*>(src), dst, nb);
      return;
    default:
      assert(false);
  }
}

}  // namespace llm::cpu

#else  // not x86-64: the reference dequantize_row serves

namespace llm::cpu {
bool has_dequantize_avx2(DType) {
  return false;
}
void dequantize_row_avx2(DType, const void*, float*, int64_t) {
  assert(false);
}
}  // namespace llm::cpu

#endif
