#include "cuda/act.cuh"
#include "cuda/rmsnorm.h"

namespace llm::cuda {
namespace {

// Vector path (n % 4 == 0, n <= 4 * kMaxChunks * blockDim): one block per row, each thread
// loads all its float4 chunks of x and w before any arithmetic (a single round trip to
// memory), then one block reduction. For q8, 8 neighbouring threads hold one 32-element
// block and reduce it among themselves.
constexpr int kMaxChunks = 4;

__global__ void rmsnorm_vec_kernel(const float* __restrict__ x, const int32_t* __restrict__ gather,
                                   const float* __restrict__ w, int n, float eps, ActOut out) {
  __shared__ float red[32];
  float4 wv[kMaxChunks];
  const int n4 = n / 4;
#pragma unroll
  for (int c = 0; c < kMaxChunks; ++c) {  // weights are constant: load before the wait
    const int i = c * blockDim.x + threadIdx.x;
    if (i < n4) wv[c] = __ldg(reinterpret_cast<const float4*>(w) + i);
  }
  pdl_wait();
  pdl_trigger();
  const int row = blockIdx.x;
  const int64_t src = gather ? gather[row] : row;
  const float4* xr = reinterpret_cast<const float4*>(x + src * n);
  float4 xv[kMaxChunks];
#pragma unroll
  for (int c = 0; c < kMaxChunks; ++c) {
    const int i = c * blockDim.x + threadIdx.x;
    xv[c] = i < n4 ? xr[i] : make_float4(0, 0, 0, 0);
  }
  norm_chunks_store(xv, wv, n, eps, row, out, red);
}

// Any width: the block stride is a multiple of 32, so each warp holds 32 consecutive
// elements in every iteration (what act_store's q8 path needs).
__global__ void rmsnorm_kernel(const float* __restrict__ x, const int32_t* __restrict__ gather,
                               const float* __restrict__ w, int n, float eps, ActOut out) {
  pdl_wait();
  pdl_trigger();
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

int rmsnorm_vec_threads(int n) {
  if (n <= 0 || n % 4 != 0 || n > 4 * kMaxChunks * 1024) return 0;
  // One float4 per thread up to n = 4096, then up to kMaxChunks each.
  return static_cast<int>(std::min<int64_t>(1024, ceil_div(n / 4, 32) * 32));
}

void rmsnorm(const float* x, const int32_t* gather, const float* w, int n_rows, int n, float eps,
             const ActOut& out, cudaStream_t stream) {
  if (n_rows <= 0) return;
  if (out.q8.qs && n % 32 != 0) throw Error("rmsnorm: q8 output needs a width divisible by 32");
  if (const int threads = rmsnorm_vec_threads(n); threads > 0) {
    launch(rmsnorm_vec_kernel, n_rows, threads, 0, stream, x, gather, w, n, eps, out);
  } else {
    const int generic = n >= 4096 ? 512 : n >= 1024 ? 256 : 128;
    launch(rmsnorm_kernel, n_rows, generic, 0, stream, x, gather, w, n, eps, out);
  }
  CUDA_CHECK_LAUNCH();
}

}  // namespace llm::cuda
