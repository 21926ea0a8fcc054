// Scalar reference (de)quantization and dot products for every supported DType.
// These are the ground truth that the CPU backend's fast paths and every CUDA
// kernel are tested against.
#pragma once
#include <cstdint>

#include "quant/formats.h"

namespace llm {

// dst[0..n) = values of the n elements stored at src. n % block_elems == 0 (asserted).
void dequantize_row(DType t, const void* src, float* dst, int64_t n);

// Quantizes n floats into dst (row_bytes(t, n) bytes). n % block_elems == 0.
// Supported targets: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q4_K, Q5_K, Q6_K.
void quantize_row(DType t, const float* src, void* dst, int64_t n);

// sum_i w[i] * x[i] where w is a row of type t stored at row. n % block_elems == 0.
float vec_dot(DType t, const void* row, const float* x, int64_t n);

}  // namespace llm
