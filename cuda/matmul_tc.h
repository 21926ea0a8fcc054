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

// Split-K scratch (cuda_types.h); counters: kTcCounters.
using MmTcWorkspace = SplitKWorkspace;
constexpr int kTcCounters = 1024;

// Launch shape, fixed per backend: warps (16 weight rows each) per CTA, 2 or 4, and the
// CTA count below which K is split (at most kTcCounters).
struct MmTcConfig {
  int target_ctas = 528;
  int warps = 4;
};
MmTcConfig mm_tc_config(int target_ctas, int warps);
// Floats of MmTcWorkspace::partial that any matrix needs under this configuration.
size_t mm_tc_partial_floats(const MmTcConfig& cfg);

struct MmTcArgs {
  const DevMatrix* W = nullptr;
  ActQ8 x_q8;                     // (n, W.cols): for quantized weights
  const __half* x_f16 = nullptr;  // (n, W.cols): for F16 weights
  int n = 0;
  float* y = nullptr;  // (n, ldy) f32: y[c * ldy + r]
  int64_t ldy = 0;
  bool accumulate = false;  // y += instead of y =
  MmTcWorkspace ws;         // null: K is never split (fewer CTAs for short matrices)
  MmTcConfig cfg;
};

// The number of CTAs K is split across for this matrix: a function of its shape only, so a
// column's result does not depend on how many columns share the launch.
int mm_tc_splits(const DevMatrix& W, const MmTcConfig& cfg, bool have_workspace);

void mm_tc(const MmTcArgs& a, cudaStream_t stream);

}  // namespace llm::cuda
