#include "quant/quants.h"

#include <cassert>
#include <cstring>

namespace llm {

// Plain-float types only for now; the block formats follow.
void dequantize_row(DType t, const void* src, float* dst, int64_t n) {
  switch (t) {
    case DType::F32: std::memcpy(dst, src, static_cast<size_t>(n) * 4); return;
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
    default: assert(false && "dequantize_row: type not implemented");
  }
}

void quantize_row(DType t, const float* src, void* dst, int64_t n) {
  switch (t) {
    case DType::F32: std::memcpy(dst, src, static_cast<size_t>(n) * 4); return;
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
    default: assert(false && "quantize_row: type not implemented");
  }
}

float vec_dot(DType t, const void* row, const float* x, int64_t n) {
  float buf[256];
  float sum = 0;
  const int be = traits(t).block_elems;
  const int64_t chunk = be == 1 ? 256 : be;
  for (int64_t i = 0; i < n; i += chunk) {
    const int64_t m = n - i < chunk ? n - i : chunk;
    dequantize_row(t, static_cast<const uint8_t*>(row) + row_bytes(t, i), buf, m);
    for (int64_t j = 0; j < m; ++j) sum += buf[j] * x[i + j];
  }
  return sum;
}

}  // namespace llm
