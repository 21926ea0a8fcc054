// AVX2 dequantize_row, bit-identical to the scalar decoders in quants_impl.h: the same
// integer unpacking and the same float products and sums in the same order, eight lanes
// at a time (a separate multiply and add, never an FMA: llm_quant builds with
// -ffp-contract=off so the compiler cannot fuse them either). The CPU backend dequantizes
// weight tiles with it; tests compare it with the scalar path bit for bit.
#include <cassert>

#include "quant/quants_impl.h"

#if defined(__x86_64__) || defined(__i386__)
#include "quant/unpack_avx2.h"

namespace llm::detail {
namespace {

LLM_AVX2 void dq_q4_0(const BlockQ4_0* b, float* y, int64_t nb) {
  const __m256i eight = _mm256_set1_epi32(8);
  for (int64_t i = 0; i < nb; ++i, y += 32) {
    const __m256 d = _mm256_set1_ps(h2f(b[i].d));
    for (int g = 0; g < 4; ++g)
      _mm256_storeu_ps(y + 8 * g,
                       _mm256_mul_ps(to_f(_mm256_sub_epi32(nibbles(b[i].qs, g), eight)), d));
  }
}

LLM_AVX2 void dq_q4_1(const BlockQ4_1* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += 32) {
    const __m256 d = _mm256_set1_ps(h2f(b[i].d)), m = _mm256_set1_ps(h2f(b[i].m));
    for (int g = 0; g < 4; ++g)
      _mm256_storeu_ps(y + 8 * g, _mm256_add_ps(_mm256_mul_ps(to_f(nibbles(b[i].qs, g)), d), m));
  }
}

LLM_AVX2 void dq_q5_0(const BlockQ5_0* b, float* y, int64_t nb) {
  const __m256i sixteen = _mm256_set1_epi32(16);
  for (int64_t i = 0; i < nb; ++i, y += 32) {
    const __m256 d = _mm256_set1_ps(h2f(b[i].d));
    const uint32_t qh = load_u32_le(b[i].qh);
    for (int g = 0; g < 4; ++g) {
      const __m256i q = q5_group(b[i].qs, qh, g);
      _mm256_storeu_ps(y + 8 * g, _mm256_mul_ps(to_f(_mm256_sub_epi32(q, sixteen)), d));
    }
  }
}

LLM_AVX2 void dq_q5_1(const BlockQ5_1* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += 32) {
    const __m256 d = _mm256_set1_ps(h2f(b[i].d)), m = _mm256_set1_ps(h2f(b[i].m));
    const uint32_t qh = load_u32_le(b[i].qh);
    for (int g = 0; g < 4; ++g) {
      const __m256i q = q5_group(b[i].qs, qh, g);
      _mm256_storeu_ps(y + 8 * g, _mm256_add_ps(_mm256_mul_ps(to_f(q), d), m));
    }
  }
}

LLM_AVX2 void dq_q8_0(const BlockQ8_0* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += 32) {
    const __m256 d = _mm256_set1_ps(h2f(b[i].d));
    for (int g = 0; g < 4; ++g) {
      const __m256i q =
          _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(b[i].qs + 8 * g)));
      _mm256_storeu_ps(y + 8 * g, _mm256_mul_ps(to_f(q), d));
    }
  }
}

// Q4_K / Q5_K: y = (d*sc) * q - dmin*m, the products d*sc and dmin*m in scalar float.
template <bool kFiveBit, typename Block>
LLM_AVX2 inline void dq_k_nibbles(const Block* b, float* y, int64_t nb) {
  const __m256i lo_mask = _mm256_set1_epi32(0xF), one = _mm256_set1_epi32(1);
  for (int64_t i = 0; i < nb; ++i) {
    const float d = h2f(b[i].d), dmin = h2f(b[i].dmin);
    for (int c = 0; c < 4; ++c, y += 64) {
      uint8_t sc1, m1, sc2, m2;
      scale_min_k4(2 * c, b[i].scales, &sc1, &m1);
      scale_min_k4(2 * c + 1, b[i].scales, &sc2, &m2);
      const __m256 d1 = _mm256_set1_ps(d * sc1), mm1 = _mm256_set1_ps(dmin * m1);
      const __m256 d2 = _mm256_set1_ps(d * sc2), mm2 = _mm256_set1_ps(dmin * m2);
      for (int g = 0; g < 4; ++g) {
        const __m256i q = u8x8(b[i].qs + 32 * c + 8 * g);
        __m256i q1 = _mm256_and_si256(q, lo_mask), q2 = _mm256_srli_epi32(q, 4);
        if constexpr (kFiveBit) {
          const __m256i h = u8x8(b[i].qh + 8 * g);
          q1 = _mm256_or_si256(
              q1, _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(h, 2 * c), one), 4));
          q2 = _mm256_or_si256(
              q2, _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(h, 2 * c + 1), one), 4));
        }
        _mm256_storeu_ps(y + 8 * g, _mm256_sub_ps(_mm256_mul_ps(d1, to_f(q1)), mm1));
        _mm256_storeu_ps(y + 32 + 8 * g, _mm256_sub_ps(_mm256_mul_ps(d2, to_f(q2)), mm2));
      }
    }
  }
}

// Q6_K: y = (d * sc) * q with q in -32..31; layout as decode_block(BlockQ6_K).
LLM_AVX2 void dq_q6_k(const BlockQ6_K* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = h2f(b[i].d);
    for (int h = 0; h < 2; ++h, y += 128) {
      const int8_t* sc = b[i].scales + 8 * h;
      for (int g = 0; g < 4; ++g) {
        const int l = 8 * g, is = g / 2;
        __m256i q[4];
        q6_groups(b[i].ql + 64 * h, b[i].qh + 32 * h, l, q);
        for (int k = 0; k < 4; ++k) {
          const __m256 s = _mm256_set1_ps(d * static_cast<float>(sc[is + 2 * k]));
          _mm256_storeu_ps(y + l + 32 * k, _mm256_mul_ps(s, to_f(q[k])));
        }
      }
    }
  }
}

LLM_AVX2 void dq_f16(const f16_t* s, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i,
                     _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i))));
  for (; i < n; ++i) y[i] = f16_to_f32(s[i]);
}

}  // namespace

bool dequantize_row_avx2(DType t, const void* src, float* dst, int64_t n) {
  switch (t) {
    case DType::F16:
      dq_f16(static_cast<const f16_t*>(src), dst, n);
      return true;
    case DType::Q4_0:
      dq_q4_0(static_cast<const BlockQ4_0*>(src), dst, n / QK4_0);
      return true;
    case DType::Q4_1:
      dq_q4_1(static_cast<const BlockQ4_1*>(src), dst, n / QK4_1);
      return true;
    case DType::Q5_0:
      dq_q5_0(static_cast<const BlockQ5_0*>(src), dst, n / QK5_0);
      return true;
    case DType::Q5_1:
      dq_q5_1(static_cast<const BlockQ5_1*>(src), dst, n / QK5_1);
      return true;
    case DType::Q8_0:
      dq_q8_0(static_cast<const BlockQ8_0*>(src), dst, n / QK8_0);
      return true;
    case DType::Q4_K:
      dq_k_nibbles<false>(static_cast<const BlockQ4_K*>(src), dst, n / QK_K);
      return true;
    case DType::Q5_K:
      dq_k_nibbles<true>(static_cast<const BlockQ5_K*>(src), dst, n / QK_K);
      return true;
    case DType::Q6_K:
      dq_q6_k(static_cast<const BlockQ6_K*>(src), dst, n / QK_K);
      return true;
    default:
      return false;  // F32, BF16: the scalar loops are already memory-bound
  }
}

}  // namespace llm::detail

#else

namespace llm::detail {
bool dequantize_row_avx2(DType, const void*, float*, int64_t) {
  return false;
}
}  // namespace llm::detail

#endif
