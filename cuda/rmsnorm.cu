#include "cuda/act.cuh"
#include "cuda/rmsnorm.h"

namespace llm::cuda {
namespace {

// One block per row; the block stride is a multiple of 32, so each warp holds 32
// consecutive elements in every iteration (what act_store's q8 path needs).
__global__ void rmsnorm_kernel(const float* __restrict__ x, const int32_t* __restrict__ gather,
                               const float* __restrict__ w, int n, float eps, ActOut out) {
  __shared__ float red[32];
  const int row = blockIdx.x;
  const int64_t src = gather ? gather[row] : row;
  const float* xr = x + src * n;
  float ss = 0.0f;
  for (int i = threadIdx.x; i < n; i += blockDim.x) ss += xr[i] * xr[i];
  ss = block_sum(ss, red);
  const float scale = rsqrtf(ss / static_cast<float>(n) + eps);
  for (int i = threadIdx.x; i < n; i += blockDim.x) act_store(out, row, n, i, xr[i] * scale * w[i]);
}

}  // namespace

void rmsnorm(const float* x, const int32_t* gather, const float* w, int n_rows, int n, float eps,
             const ActOut& out, cudaStream_t stream) {
  if (n_rows <= 0) return;
  if (out.q8.qs && n % 32 != 0) throw Error("rmsnorm: q8 output needs a width divisible by 32");
  const int threads = n >= 4096 ? 512 : n >= 1024 ? 256 : 128;
  rmsnorm_kernel<<<n_rows, threads, 0, stream>>>(x, gather, w, n, eps, out);
  CUDA_CHECK_LAUNCH();
}

}  // namespace llm::cuda
