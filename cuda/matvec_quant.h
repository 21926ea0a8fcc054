// Matrix-vector products for decode (a few activation rows): y = x · Wᵀ, reading every
// weight byte once per call and dequantizing in registers. Quantized weights use integer
// dot products against q8 activations (dp4a); F32/F16/BF16 weights use f32 activations.
#pragma once
#include "cuda/cuda_types.h"

namespace llm::cuda {

// One matrix of a launch: y[c * ldy + r] (+)= sum_k W[r][k] * x[c][k].
struct MatvecJob {
  DevMatrix W;
  float* y = nullptr;  // (n, ldy) f32
  int64_t ldy = 0;
  bool accumulate = false;  // add into y (residual connections) instead of overwriting
};

// Activation columns handled per pass; more columns are processed in passes.
constexpr int kMatvecMaxCols = 8;

// Up to 3 jobs whose matrices share type and cols run as one launch (q/k/v, gate/up).
//   x_f32: (n, cols) f32 — read for float weights;  x_q8: (n, cols) — read for quantized.
void matvec(const MatvecJob* jobs, int n_jobs, const float* x_f32, const ActQ8& x_q8, int n,
            cudaStream_t stream);

}  // namespace llm::cuda
