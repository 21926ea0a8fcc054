// Matrix products of a few to ~a hundred activation rows on the tensor cores, reading the
// weights in their stored format once per pass of up to 64 rows: batched decode,
// speculative verification and short prefill chunks. Quantized weights use int8
// mma.sync against q8 activations with the per-unit scales applied in f32 (like llama.cpp's
// MMQ); F16 weights use f16 mma.sync against f16 activations.
#pragma once
#include "cuda/cuda_types.h"

namespace llm::cuda {

// Activation rows handled per pass; more rows run in passes (the weights are re-read).
constexpr int kTcMaxCols = 64;

// Whether mm_tc handles this weight type (F16 and every quantized type; rows of a
// multiple of 32 elements).
bool mm_tc_supported(const DevMatrix& W);
// Whether its activations are q8 (quantized weights) rather than f16.
bool mm_tc_wants_q8(const DevMatrix& W);

struct MmTcArgs {
  const DevMatrix* W = nullptr;
  ActQ8 x_q8;                     // (n, W.cols): for quantized weights
  const __half* x_f16 = nullptr;  // (n, W.cols): for F16 weights
  int n = 0;
  float* y = nullptr;  // (n, ldy) f32: y[c * ldy + r]
  int64_t ldy = 0;
  bool accumulate = false;  // y += instead of y =
};

void mm_tc(const MmTcArgs& a, cudaStream_t stream);

}  // namespace llm::cuda
