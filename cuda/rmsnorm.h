// RMSNorm: y = x / sqrt(mean(x^2) + eps) * w, written in the formats `out` asks for.
#pragma once
#include "cuda/cuda_types.h"

namespace llm::cuda {

//   x: (*, n) f32;  gather: (n_rows) row of x read for output row i, or null (row i);
//   w: (n) f32;  out: (n_rows, n). q8 output needs n % 32 == 0.
void rmsnorm(const float* x, const int32_t* gather, const float* w, int n_rows, int n, float eps,
             const ActOut& out, cudaStream_t stream);

// The block size of the kernel that holds a row in registers (a float4 per thread up to
// n = 4096), or 0 where rmsnorm takes the generic kernel. A kernel that normalizes its input
// itself with this many threads, by act.cuh's pieces, gets rmsnorm's bits.
int rmsnorm_vec_threads(int n);

}  // namespace llm::cuda
