// The skinny products of F16 weights on Hopper's TMA and warpgroup MMA, both operands in
// shared memory (cuda/matmul_skinny_f16wg.cu), called by mm_sk (cuda/matmul_skinny.cu)
// when MmSkConfig::f16_wgmma is set.
#pragma once
#include "cuda/matmul_skinny_jobs.cuh"

namespace llm::cuda::sk {

// One launch over `tiles` 64-row tiles (32 of gate and 32 of up in the SwiGLU mode) and
// `splits` CTAs per tile along K (total: 64-element stages of a row, f16wg_stages), n
// activation rows (f16, (n, K)); the rest as mm_sk's own kernel takes it.
struct F16wgLaunch {
  Jobs jobs;
  int n_jobs = 1;  // matrices in jobs (the SwiGLU mode: 2)
  int tiles = 0, splits = 1, total = 0, n = 0;
  const __half* xh = nullptr;
  int64_t ldy = 0;
  bool accumulate = false, halves = false;
  float* partial = nullptr;
  int* counters = nullptr;
};
void launch_f16wg(const F16wgLaunch& l, cudaStream_t stream);
// The kernel's stages in a row of `cols` elements (cols % 64 == 0).
int f16wg_stages(int64_t cols);

}  // namespace llm::cuda::sk
