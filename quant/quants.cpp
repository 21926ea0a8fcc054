// Public dispatch of quants.h, the plain-float conversions, and the 32-element block
// formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0). The k-quant quantizers live in quants_k.cpp,
// the dot products in dot_scalar.cpp / dot_avx2.cpp.
#include "quant/quants.h"

#include <algorithm>
#include <cassert>
#include <cfloat>
#include <cmath>
#include <cstring>

#include "quant/quants_impl.h"

namespace llm {
namespace {

template <typename Block, int QK>
void dequantize_blocks(const void* src, float* dst, int64_t n) {
  const Block* b = static_cast<const Block*>(src);
  for (int64_t i = 0; i < n / QK; ++i) detail::decode_block(b[i], dst + i * QK);
}

// --- reference quantizers of the 32-element formats (ggml quantize_row_*_ref) -------------
// The arithmetic is ggml's, step for step: the scale is rounded to fp16 for storage but
// the quants are computed with the unrounded inverse scale, and values are rounded by
// truncating x + 0.5 (or x + 8.5 / 16.5 for the signed formats), as ggml does.

// Scale d = (value of largest magnitude) / -8, so that value maps to -8 exactly; q = x/d + 8.
void quantize_q4_0(const float* x, BlockQ4_0* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK4_0) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < QK4_0; ++j) {
      if (amax < std::fabs(x[j])) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    }
    const float d = max / -8;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = f32_to_f16(d);
    for (int j = 0; j < QK4_0 / 2; ++j) {
      const float x0 = x[j] * id, x1 = x[j + QK4_0 / 2] * id;
      const int q0 = std::min(15, static_cast<int>(static_cast<int8_t>(x0 + 8.5f)));
      const int q1 = std::min(15, static_cast<int>(static_cast<int8_t>(x1 + 8.5f)));
      y[i].qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
  }
}

// Scale d = (max - min) / 15, offset m = min; q = (x - min)/d.
void quantize_q4_1(const float* x, BlockQ4_1* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK4_1) {
    float min = FLT_MAX, max = -FLT_MAX;
    for (int j = 0; j < QK4_1; ++j) {
      if (x[j] < min) min = x[j];
      if (x[j] > max) max = x[j];
    }
    const float d = (max - min) / 15;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = f32_to_f16(d);
    y[i].m = f32_to_f16(min);
    for (int j = 0; j < QK4_1 / 2; ++j) {
      const float x0 = (x[j] - min) * id, x1 = (x[j + QK4_1 / 2] - min) * id;
      const int q0 = std::min(15, static_cast<int>(static_cast<int8_t>(x0 + 0.5f)));
      const int q1 = std::min(15, static_cast<int>(static_cast<int8_t>(x1 + 0.5f)));
      y[i].qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
  }
}

void quantize_q5_0(const float* x, BlockQ5_0* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK5_0) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < QK5_0; ++j) {
      if (amax < std::fabs(x[j])) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    }
    const float d = max / -16;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = f32_to_f16(d);
    uint32_t qh = 0;
    for (int j = 0; j < QK5_0 / 2; ++j) {
      const float x0 = x[j] * id, x1 = x[j + QK5_0 / 2] * id;
      const uint32_t q0 =
          static_cast<uint32_t>(std::min(31, static_cast<int>(static_cast<int8_t>(x0 + 16.5f))));
      const uint32_t q1 =
          static_cast<uint32_t>(std::min(31, static_cast<int>(static_cast<int8_t>(x1 + 16.5f))));
      y[i].qs[j] = static_cast<uint8_t>((q0 & 0xF) | ((q1 & 0xF) << 4));
      qh |= ((q0 & 0x10u) >> 4) << j;
      qh |= ((q1 & 0x10u) >> 4) << (j + QK5_0 / 2);
    }
    std::memcpy(y[i].qh, &qh, 4);
  }
}

void quantize_q5_1(const float* x, BlockQ5_1* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK5_1) {
    float min = FLT_MAX, max = -FLT_MAX;
    for (int j = 0; j < QK5_1; ++j) {
      if (x[j] < min) min = x[j];
      if (x[j] > max) max = x[j];
    }
    const float d = (max - min) / 31;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = f32_to_f16(d);
    y[i].m = f32_to_f16(min);
    uint32_t qh = 0;
    for (int j = 0; j < QK5_1 / 2; ++j) {
      const float x0 = (x[j] - min) * id, x1 = (x[j + QK5_1 / 2] - min) * id;
      // ggml casts straight to uint8_t here (no clamp): (max - min) * id <= 31 + rounding.
      const uint32_t q0 = static_cast<uint8_t>(x0 + 0.5f);
      const uint32_t q1 = static_cast<uint8_t>(x1 + 0.5f);
      y[i].qs[j] = static_cast<uint8_t>((q0 & 0xF) | ((q1 & 0xF) << 4));
      qh |= ((q0 & 0x10u) >> 4) << j;
      qh |= ((q1 & 0x10u) >> 4) << (j + QK5_1 / 2);
    }
    std::memcpy(y[i].qh, &qh, 4);
  }
}

// Scale d = amax / 127; q = round-half-away(x/d) (roundf, as ggml).
void quantize_q8_0(const float* x, BlockQ8_0* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK8_0) {
    float amax = 0.0f;
    for (int j = 0; j < QK8_0; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = f32_to_f16(d);
    for (int j = 0; j < QK8_0; ++j) y[i].qs[j] = static_cast<int8_t>(std::roundf(x[j] * id));
  }
}

bool avx2_available() {
#if defined(__x86_64__) || defined(__i386__)
  // Immutable after first use: the CPU does not change under us.
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                          __builtin_cpu_supports("f16c");
  return has;
#else
  return false;
#endif
}

}  // namespace

bool quant_supported(DType t) {
  switch (t) {
    case DType::F32:
    case DType::F16:
    case DType::BF16:
    case DType::Q4_0:
    case DType::Q4_1:
    case DType::Q5_0:
    case DType::Q5_1:
    case DType::Q8_0:
    case DType::Q4_K:
    case DType::Q5_K:
    case DType::Q6_K:
      return true;
    default:
      return false;
  }
}

static void dequantize_row_scalar(DType t, const void* src, float* dst, int64_t n) {
  switch (t) {
    case DType::F32:
      std::memcpy(dst, src, static_cast<size_t>(n) * 4);
      return;
    case DType::F16: {
      const f16_t* s = static_cast<const f16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(s[i]);
      return;
    }
    case DType::BF16: {
      const bf16_t* s = static_cast<const bf16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(s[i]);
      return;
    }
    case DType::Q4_0:
      return dequantize_blocks<BlockQ4_0, QK4_0>(src, dst, n);
    case DType::Q4_1:
      return dequantize_blocks<BlockQ4_1, QK4_1>(src, dst, n);
    case DType::Q5_0:
      return dequantize_blocks<BlockQ5_0, QK5_0>(src, dst, n);
    case DType::Q5_1:
      return dequantize_blocks<BlockQ5_1, QK5_1>(src, dst, n);
    case DType::Q8_0:
      return dequantize_blocks<BlockQ8_0, QK8_0>(src, dst, n);
    case DType::Q4_K:
      return dequantize_blocks<BlockQ4_K, QK_K>(src, dst, n);
    case DType::Q5_K:
      return dequantize_blocks<BlockQ5_K, QK_K>(src, dst, n);
    case DType::Q6_K:
      return dequantize_blocks<BlockQ6_K, QK_K>(src, dst, n);
    default:
      assert(false && "dequantize_row: unsupported type");
  }
}

void quantize_row(DType t, const float* src, void* dst, int64_t n) {
  const int64_t nb = n / traits(t).block_elems;
  assert(n % traits(t).block_elems == 0);
  switch (t) {
    case DType::F32:
      std::memcpy(dst, src, static_cast<size_t>(n) * 4);
      return;
    case DType::F16: {
      f16_t* d = static_cast<f16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) d[i] = f32_to_f16(src[i]);
      return;
    }
    case DType::BF16: {
      bf16_t* d = static_cast<bf16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) d[i] = f32_to_bf16(src[i]);
      return;
    }
    case DType::Q4_0:
      return quantize_q4_0(src, static_cast<BlockQ4_0*>(dst), nb);
    case DType::Q4_1:
      return quantize_q4_1(src, static_cast<BlockQ4_1*>(dst), nb);
    case DType::Q5_0:
      return quantize_q5_0(src, static_cast<BlockQ5_0*>(dst), nb);
    case DType::Q5_1:
      return quantize_q5_1(src, static_cast<BlockQ5_1*>(dst), nb);
    case DType::Q8_0:
      return quantize_q8_0(src, static_cast<BlockQ8_0*>(dst), nb);
    case DType::Q4_K:
      return detail::quantize_q4_k(src, static_cast<BlockQ4_K*>(dst), nb);
    case DType::Q5_K:
      return detail::quantize_q5_k(src, static_cast<BlockQ5_K*>(dst), nb);
    case DType::Q6_K:
      return detail::quantize_q6_k(src, static_cast<BlockQ6_K*>(dst), nb);
    default:
      assert(false && "quantize_row: unsupported type");
  }
}

bool kernel_path_available(KernelPath p) {
  return p != KernelPath::Avx2 || avx2_available();
}

void dequantize_row(KernelPath p, DType t, const void* src, float* dst, int64_t n) {
  assert(n % traits(t).block_elems == 0);
  assert(quant_supported(t));
  assert(kernel_path_available(p));
  const bool simd = p == KernelPath::Avx2 || (p == KernelPath::Auto && avx2_available());
  if (simd && detail::dequantize_row_avx2(t, src, dst, n)) return;
  dequantize_row_scalar(t, src, dst, n);
}

void dequantize_row(DType t, const void* src, float* dst, int64_t n) {
  dequantize_row(KernelPath::Auto, t, src, dst, n);
}

float vec_dot(KernelPath p, DType t, const void* row, const float* x, int64_t n) {
  assert(n % traits(t).block_elems == 0);
  assert(quant_supported(t));
  switch (p) {
    case KernelPath::Scalar:
      return detail::vec_dot_scalar(t, row, x, n);
    case KernelPath::Avx2:
      assert(avx2_available());
      return detail::vec_dot_avx2(t, row, x, n);
    case KernelPath::Auto:
      break;
  }
  return avx2_available() ? detail::vec_dot_avx2(t, row, x, n)
                          : detail::vec_dot_scalar(t, row, x, n);
}

float vec_dot(DType t, const void* row, const float* x, int64_t n) {
  return vec_dot(KernelPath::Auto, t, row, x, n);
}

}  // namespace llm
