// Scalar reference vec_dot: decode one block at a time into a stack buffer with the same
// decoders dequantize_row uses, then multiply-accumulate into 8 partial sums (which the
// compiler keeps in two SSE registers). No heap allocation.
#include <cassert>

#include "quant/quants_impl.h"

namespace llm::detail {
namespace {

// sum_j a[j] * b[j] for j < n, n a multiple of 8.
inline float dot8(const float* a, const float* b, int n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int j = 0; j < n; j += 8)
    for (int k = 0; k < 8; ++k) acc[k] += a[j + k] * b[j + k];
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

template <typename Block, int QK>
float dot_blocks(const void* row, const float* x, int64_t n) {
  const Block* b = static_cast<const Block*>(row);
  float buf[QK];  // (QK) one decoded block
  float sum = 0.0f;
  for (int64_t i = 0; i < n / QK; ++i) {
    decode_block(b[i], buf);
    sum += dot8(buf, x + i * QK, QK);
  }
  return sum;
}

// Plain-float rows: any n; decode in chunks of 256 and finish the tail element by element.
template <typename T, float (*Convert)(T)>
float dot_plain(const void* row, const float* x, int64_t n) {
  const T* w = static_cast<const T*>(row);
  float buf[256];  // (256) one decoded chunk
  float sum = 0.0f;
  int64_t i = 0;
  for (; i + 256 <= n; i += 256) {
    for (int j = 0; j < 256; ++j) buf[j] = Convert(w[i + j]);
    sum += dot8(buf, x + i, 256);
  }
  const int64_t m8 = (n - i) / 8 * 8;
  for (int j = 0; j < m8; ++j) buf[j] = Convert(w[i + j]);
  sum += dot8(buf, x + i, static_cast<int>(m8));
  for (i += m8; i < n; ++i) sum += Convert(w[i]) * x[i];
  return sum;
}

inline float f32_identity(float v) {
  return v;
}

}  // namespace

float vec_dot_scalar(DType t, const void* row, const float* x, int64_t n) {
  switch (t) {
    case DType::F32:
      return dot_plain<float, f32_identity>(row, x, n);
    case DType::F16:
      return dot_plain<f16_t, f16_to_f32>(row, x, n);
    case DType::BF16:
      return dot_plain<bf16_t, bf16_to_f32>(row, x, n);
    case DType::Q4_0:
      return dot_blocks<BlockQ4_0, QK4_0>(row, x, n);
    case DType::Q4_1:
      return dot_blocks<BlockQ4_1, QK4_1>(row, x, n);
    case DType::Q5_0:
      return dot_blocks<BlockQ5_0, QK5_0>(row, x, n);
    case DType::Q5_1:
      return dot_blocks<BlockQ5_1, QK5_1>(row, x, n);
    case DType::Q8_0:
      return dot_blocks<BlockQ8_0, QK8_0>(row, x, n);
    case DType::Q4_K:
      return dot_blocks<BlockQ4_K, QK_K>(row, x, n);
    case DType::Q5_K:
      return dot_blocks<BlockQ5_K, QK_K>(row, x, n);
    case DType::Q6_K:
      return dot_blocks<BlockQ6_K, QK_K>(row, x, n);
    default:
      assert(false && "vec_dot: unsupported type");
      return 0.0f;
  }
}

}  // namespace llm::detail
