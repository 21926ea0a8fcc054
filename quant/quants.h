// Scalar reference (de)quantization and dot products for every supported DType.
// These are the ground truth that the CPU backend's fast paths and every CUDA
// kernel are tested against.
//
// Semantics follow ggml (ggml/src/ggml-quants.c) exactly:
// - dequantize_row is bit-identical to ggml's dequantize_row_* / fp16 / bf16 conversions.
// - quantize_row matches ggml's reference quantizers (quantize_row_*_ref, i.e. what
//   llama-quantize writes without an importance matrix) byte for byte.
// - vec_dot equals dot(dequantize_row(row), x) up to float summation order.
#pragma once
#include <cstdint>

#include "quant/formats.h"

namespace llm {

// Which implementation a kernel runs: the scalar reference or the AVX2+FMA one (chosen
// at run time when the CPU has avx2, fma and f16c). Tests and benchmarks pin one.
enum class KernelPath { Auto, Scalar, Avx2 };
using DotPath = KernelPath;
// Whether `p` can run on this CPU (Scalar and Auto always can).
bool kernel_path_available(KernelPath p);
inline bool dot_path_available(KernelPath p) {
  return kernel_path_available(p);
}

// dst[0..n) = values of the n elements stored at src. n % block_elems == 0 (asserted).
// Supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K.
// Both paths give bit-identical results.
void dequantize_row(DType t, const void* src, float* dst, int64_t n);
void dequantize_row(KernelPath p, DType t, const void* src, float* dst, int64_t n);

// Quantizes n floats into dst (row_bytes(t, n) bytes). n % block_elems == 0.
// Supported targets: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K.
// Inputs must be finite (as for ggml).
void quantize_row(DType t, const float* src, void* dst, int64_t n);

// sum_i w[i] * x[i] where w is a row of type t stored at row. n % block_elems == 0.
// The paths differ only in float summation order.
float vec_dot(DType t, const void* row, const float* x, int64_t n);
float vec_dot(KernelPath p, DType t, const void* row, const float* x, int64_t n);

// True for the types dequantize_row / vec_dot handle; quantize_row handles the same set.
bool quant_supported(DType t);

}  // namespace llm
