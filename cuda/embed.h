// Token embedding lookup: out (n, W.cols) f32 = rows tokens[i] of W, dequantized.
#pragma once
#include "cuda/cuda_types.h"

namespace llm::cuda {

// tokens: (n) device ids, trusted (the backend validates the batch).
void embed(const DevMatrix& W, const int32_t* tokens, int n, float* out, cudaStream_t stream);

}  // namespace llm::cuda
