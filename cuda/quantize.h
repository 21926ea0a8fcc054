// Converting f32 activations into the formats the matrix products read (f16, q8).
#pragma once
#include "cuda/cuda_types.h"

namespace llm::cuda {

// x: (n_rows, k) f32 -> out (n_rows, k). out.f32 must be null or x itself.
void convert_act(const float* x, int n_rows, int k, const ActOut& out, cudaStream_t stream);

}  // namespace llm::cuda
