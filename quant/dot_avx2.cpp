// AVX2+FMA vec_dot: the CPU backend's inner loop. Each block is unpacked 8 elements at a
// time into int32 lanes, converted to float and fused-multiply-added against x; block
// scales are applied per block (or per sub-block for the k-quants). Chosen at run time by
// quants.cpp only when the CPU reports avx2, fma and f16c; the build itself targets SSE4.2.
// Tests check it against the scalar reference in dot_scalar.cpp for every type.
#include <cassert>

#include "quant/quants_impl.h"

#if defined(__x86_64__) || defined(__i386__)
#include "quant/unpack_avx2.h"

namespace llm::detail {
namespace {

LLM_AVX2 inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

LLM_AVX2 float dot_f32(const float* w, const float* x, int64_t n) {
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), a0);
    a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 8), _mm256_loadu_ps(x + i + 8), a1);
  }
  for (; i + 8 <= n; i += 8)
    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), a0);
  float sum = hsum(_mm256_add_ps(a0, a1));
  for (; i < n; ++i) sum += w[i] * x[i];
  return sum;
}

LLM_AVX2 float dot_f16(const f16_t* w, const float* x, int64_t n) {
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256 w0 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + i)));
    const __m256 w1 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + i + 8)));
    a0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + i), a0);
    a1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + i + 8), a1);
  }
  for (; i + 8 <= n; i += 8) {
    const __m256 w0 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + i)));
    a0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + i), a0);
  }
  float sum = hsum(_mm256_add_ps(a0, a1));
  for (; i < n; ++i) sum += f16_to_f32(w[i]) * x[i];
  return sum;
}

LLM_AVX2 inline __m256 bf16x8(const bf16_t* p) {
  const __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

LLM_AVX2 float dot_bf16(const bf16_t* w, const float* x, int64_t n) {
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    a0 = _mm256_fmadd_ps(bf16x8(w + i), _mm256_loadu_ps(x + i), a0);
    a1 = _mm256_fmadd_ps(bf16x8(w + i + 8), _mm256_loadu_ps(x + i + 8), a1);
  }
  for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(bf16x8(w + i), _mm256_loadu_ps(x + i), a0);
  float sum = hsum(_mm256_add_ps(a0, a1));
  for (; i < n; ++i) sum += bf16_to_f32(w[i]) * x[i];
  return sum;
}

// q = nibble - 8; sum = d * sum(q * x) per block.
LLM_AVX2 float dot_q4_0(const BlockQ4_0* b, const float* x, int64_t nb) {
  const __m256i lo_mask = _mm256_set1_epi32(0xF), eight = _mm256_set1_epi32(8);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < nb; ++i, x += 32) {
    __m256 s = _mm256_setzero_ps();
    for (int h = 0; h < 2; ++h) {
      const __m256i q = u8x8(b[i].qs + 8 * h);
      const __m256i lo = _mm256_sub_epi32(_mm256_and_si256(q, lo_mask), eight);
      const __m256i hi = _mm256_sub_epi32(_mm256_srli_epi32(q, 4), eight);
      s = _mm256_fmadd_ps(to_f(lo), _mm256_loadu_ps(x + 8 * h), s);
      s = _mm256_fmadd_ps(to_f(hi), _mm256_loadu_ps(x + 16 + 8 * h), s);
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(b[i].d)), s, acc);
  }
  return hsum(acc);
}

// value = q*d + m; sum = d * sum(q * x) + m * sum(x) per block.
LLM_AVX2 float dot_q4_1(const BlockQ4_1* b, const float* x, int64_t nb) {
  const __m256i lo_mask = _mm256_set1_epi32(0xF);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < nb; ++i, x += 32) {
    __m256 sq = _mm256_setzero_ps(), sx = _mm256_setzero_ps();
    for (int h = 0; h < 2; ++h) {
      const __m256i q = u8x8(b[i].qs + 8 * h);
      const __m256 x0 = _mm256_loadu_ps(x + 8 * h), x1 = _mm256_loadu_ps(x + 16 + 8 * h);
      sq = _mm256_fmadd_ps(to_f(_mm256_and_si256(q, lo_mask)), x0, sq);
      sq = _mm256_fmadd_ps(to_f(_mm256_srli_epi32(q, 4)), x1, sq);
      sx = _mm256_add_ps(sx, _mm256_add_ps(x0, x1));
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(b[i].d)), sq, acc);
    acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(b[i].m)), sx, acc);
  }
  return hsum(acc);
}

LLM_AVX2 float dot_q5_0(const BlockQ5_0* b, const float* x, int64_t nb) {
  const __m256i sixteen = _mm256_set1_epi32(16);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < nb; ++i, x += 32) {
    const uint32_t qh = load_u32_le(b[i].qh);
    __m256 s = _mm256_setzero_ps();
    for (int g = 0; g < 4; ++g) {
      const __m256i q = _mm256_sub_epi32(q5_group(b[i].qs, qh, g), sixteen);
      s = _mm256_fmadd_ps(to_f(q), _mm256_loadu_ps(x + 8 * g), s);
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(b[i].d)), s, acc);
  }
  return hsum(acc);
}

LLM_AVX2 float dot_q5_1(const BlockQ5_1* b, const float* x, int64_t nb) {
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < nb; ++i, x += 32) {
    const uint32_t qh = load_u32_le(b[i].qh);
    __m256 sq = _mm256_setzero_ps(), sx = _mm256_setzero_ps();
    for (int g = 0; g < 4; ++g) {
      const __m256 xv = _mm256_loadu_ps(x + 8 * g);
      sq = _mm256_fmadd_ps(to_f(q5_group(b[i].qs, qh, g)), xv, sq);
      sx = _mm256_add_ps(sx, xv);
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(b[i].d)), sq, acc);
    acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(b[i].m)), sx, acc);
  }
  return hsum(acc);
}

LLM_AVX2 float dot_q8_0(const BlockQ8_0* b, const float* x, int64_t nb) {
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < nb; ++i, x += 32) {
    __m256 s0 = _mm256_mul_ps(to_f(i8x8(b[i].qs)), _mm256_loadu_ps(x));
    __m256 s1 = _mm256_mul_ps(to_f(i8x8(b[i].qs + 8)), _mm256_loadu_ps(x + 8));
    s0 = _mm256_fmadd_ps(to_f(i8x8(b[i].qs + 16)), _mm256_loadu_ps(x + 16), s0);
    s1 = _mm256_fmadd_ps(to_f(i8x8(b[i].qs + 24)), _mm256_loadu_ps(x + 24), s1);
    acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(b[i].d)), _mm256_add_ps(s0, s1), acc);
  }
  return hsum(acc);
}

// Q4_K / Q5_K: value = d*sc * q - dmin*m per 32-element sub-block, so a sub-block
// contributes d*sc * sum(q*x) - dmin*m * sum(x). `high` adds the fifth bit (Q5_K).
template <bool kFiveBit, typename Block>
LLM_AVX2 inline float dot_k_nibbles(const Block* b, const float* x, int64_t nb) {
  const __m256i lo_mask = _mm256_set1_epi32(0xF), one = _mm256_set1_epi32(1);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < nb; ++i) {
    const float d = h2f(b[i].d), dmin = h2f(b[i].dmin);
    for (int c = 0; c < 4; ++c, x += 64) {
      uint8_t sc1, m1, sc2, m2;
      scale_min_k4(2 * c, b[i].scales, &sc1, &m1);
      scale_min_k4(2 * c + 1, b[i].scales, &sc2, &m2);
      __m256 sq1 = _mm256_setzero_ps(), sq2 = _mm256_setzero_ps();
      __m256 sx1 = _mm256_setzero_ps(), sx2 = _mm256_setzero_ps();
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
        const __m256 x1 = _mm256_loadu_ps(x + 8 * g), x2 = _mm256_loadu_ps(x + 32 + 8 * g);
        sq1 = _mm256_fmadd_ps(to_f(q1), x1, sq1);
        sq2 = _mm256_fmadd_ps(to_f(q2), x2, sq2);
        sx1 = _mm256_add_ps(sx1, x1);
        sx2 = _mm256_add_ps(sx2, x2);
      }
      acc = _mm256_fmadd_ps(_mm256_set1_ps(d * sc1), sq1, acc);
      acc = _mm256_fmadd_ps(_mm256_set1_ps(d * sc2), sq2, acc);
      acc = _mm256_fnmadd_ps(_mm256_set1_ps(dmin * m1), sx1, acc);
      acc = _mm256_fnmadd_ps(_mm256_set1_ps(dmin * m2), sx2, acc);
    }
  }
  return hsum(acc);
}

// Q6_K: see decode_block(BlockQ6_K) for the layout. Each 16-element sub-block has one
// scale: sum(q*x) over its two 8-lane groups first, then one FMA by d*scale. Four
// accumulators keep the FMA chains short.
LLM_AVX2 float dot_q6_k(const BlockQ6_K* b, const float* x, int64_t nb) {
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                   _mm256_setzero_ps()};
  for (int64_t i = 0; i < nb; ++i) {
    const float d = h2f(b[i].d);
    for (int h = 0; h < 2; ++h, x += 128) {
      const int8_t* sc = b[i].scales + 8 * h;
      for (int is = 0; is < 2; ++is) {  // lanes l = 16 is .. 16 is + 15
        __m256 s[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                       _mm256_setzero_ps()};
        for (int g = 0; g < 2; ++g) {
          const int l = 16 * is + 8 * g;
          __m256i q[4];
          q6_groups(b[i].ql + 64 * h, b[i].qh + 32 * h, l, q);
          for (int k = 0; k < 4; ++k)  // element l + 32k
            s[k] = _mm256_fmadd_ps(to_f(q[k]), _mm256_loadu_ps(x + l + 32 * k), s[k]);
        }
        for (int k = 0; k < 4; ++k) {
          const __m256 scale = _mm256_set1_ps(d * static_cast<float>(sc[is + 2 * k]));
          acc[k] = _mm256_fmadd_ps(scale, s[k], acc[k]);
        }
      }
    }
  }
  return hsum(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
}

}  // namespace

float vec_dot_avx2(DType t, const void* row, const float* x, int64_t n) {
  switch (t) {
    case DType::F32:
      return dot_f32(static_cast<const float*>(row), x, n);
    case DType::F16:
      return dot_f16(static_cast<const f16_t*>(row), x, n);
    case DType::BF16:
      return dot_bf16(static_cast<const bf16_t*>(row), x, n);
    case DType::Q4_0:
      return dot_q4_0(static_cast<const BlockQ4_0*>(row), x, n / QK4_0);
    case DType::Q4_1:
      return dot_q4_1(static_cast<const BlockQ4_1*>(row), x, n / QK4_1);
    case DType::Q5_0:
      return dot_q5_0(static_cast<const BlockQ5_0*>(row), x, n / QK5_0);
    case DType::Q5_1:
      return dot_q5_1(static_cast<const BlockQ5_1*>(row), x, n / QK5_1);
    case DType::Q8_0:
      return dot_q8_0(static_cast<const BlockQ8_0*>(row), x, n / QK8_0);
    case DType::Q4_K:
      return dot_k_nibbles<false>(static_cast<const BlockQ4_K*>(row), x, n / QK_K);
    case DType::Q5_K:
      return dot_k_nibbles<true>(static_cast<const BlockQ5_K*>(row), x, n / QK_K);
    case DType::Q6_K:
      return dot_q6_k(static_cast<const BlockQ6_K*>(row), x, n / QK_K);
    default:
      assert(false && "vec_dot: unsupported type");
      return 0.0f;
  }
}

}  // namespace llm::detail

#else  // not x86: the dispatcher never selects this path

namespace llm::detail {
float vec_dot_avx2(DType t, const void* row, const float* x, int64_t n) {
  return vec_dot_scalar(t, row, x, n);
}
}  // namespace llm::detail

#endif
