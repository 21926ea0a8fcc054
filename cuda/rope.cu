#include "cuda/rope.cuh"
#include "cuda/rope.h"

namespace llm::cuda {
namespace {

__global__ void rope_kernel(const float* __restrict__ x, float* __restrict__ out,
                            const int32_t* __restrict__ positions, int n_heads, int head_dim,
                            int rope_dim, bool neox, const float* __restrict__ inv_freq) {
  pdl_wait();
  pdl_trigger();
  extern __shared__ float tab[];  // cs (rope_dim/2) then sn (rope_dim/2)
  const int row = blockIdx.x, half = rope_dim / 2;
  rope_table(positions[row], inv_freq, half, tab, tab + half);
  __syncthreads();
  const int64_t base = static_cast<int64_t>(row) * n_heads * head_dim;
  for (int t = threadIdx.x; t < n_heads * head_dim; t += blockDim.x) {
    const int h = t / head_dim, d = t % head_dim;
    out[base + t] =
        rope_value(x + base + h * head_dim, nullptr, d, rope_dim, neox, tab, tab + half);
  }
}

__global__ void rope_cs_kernel(const int32_t* __restrict__ positions, int half,
                               const float* __restrict__ inv_freq, float2* __restrict__ cs) {
  pdl_wait();
  pdl_trigger();
  const int row = blockIdx.x;
  for (int i = threadIdx.x; i < half; i += blockDim.x)
    cs[static_cast<int64_t>(row) * half + i] = rope_cos_sin(positions[row], inv_freq[i]);
}

}  // namespace

void rope_cs_table(const int32_t* positions, int n_rows, int rope_dim, const float* inv_freq,
                   float2* cs, cudaStream_t stream) {
  if (n_rows <= 0 || rope_dim < 2) return;
  launch(rope_cs_kernel, n_rows, 64, 0, stream, positions, rope_dim / 2, inv_freq, cs);
  CUDA_CHECK_LAUNCH();
}

void rope(const float* x, float* out, const int32_t* positions, int n_rows, int n_heads,
          int head_dim, int rope_dim, RopeType type, const float* inv_freq, cudaStream_t stream) {
  if (n_rows <= 0) return;
  const size_t smem = sizeof(float) * static_cast<size_t>(rope_dim);
  launch(rope_kernel, n_rows, 128, smem, stream, x, out, positions, n_heads, head_dim, rope_dim,
         type == RopeType::Neox, inv_freq);
  CUDA_CHECK_LAUNCH();
}

}  // namespace llm::cuda
