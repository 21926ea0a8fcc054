// Matrix products for prefill and large decode batches: y = x · Wᵀ on the tensor cores
// through cuBLAS. Quantized and BF16 weights are first dequantized to an f16 scratch
// matrix (in row chunks that fit the scratch); F16 weights are used in place; F32
// weights take an f32 GEMM (tiny models only).
#pragma once
#include <cublas_v2.h>

#include "cuda/cuda_types.h"

namespace llm::cuda {

// out (n_rows, W.cols) = rows row0..row0+n_rows of W, dequantized (f16 or f32).
void dequantize(const DevMatrix& W, int64_t row0, int64_t n_rows, __half* out, cudaStream_t stream);
void dequantize(const DevMatrix& W, int64_t row0, int64_t n_rows, float* out, cudaStream_t stream);

struct MatmulArgs {
  const DevMatrix* W = nullptr;
  const __half* x_f16 = nullptr;  // (n, W.cols): for all but F32 weights
  const float* x_f32 = nullptr;   // (n, W.cols): for F32 weights
  int n = 0;
  float* y = nullptr;  // (n, ldy) f32
  int64_t ldy = 0;
  bool accumulate = false;    // y += instead of y =
  __half* scratch = nullptr;  // dequantization scratch
  size_t scratch_elems = 0;
};

void matmul(cublasHandle_t handle, const MatmulArgs& a, cudaStream_t stream);

// Throws llm::Error for a failed cuBLAS call.
void cublas_check(cublasStatus_t s, const char* what);

}  // namespace llm::cuda
