// The skinny products of F16 weights on Hopper's TMA and warpgroup MMA, both operands in
// shared memory (cuda/matmul_skinny_f16wg.cu), called by mm_sk (cuda/matmul_skinny.cu)
// when MmSkConfig::f16_wgmma is set.
#pragma once
#include "cuda/matmul_skinny_jobs.cuh"

namespace llm::cuda::sk {

// total: 64-element stages of a row (f16wg_stages); bufs unused.
void launch_f16wg(const HalfLaunch& l, cudaStream_t stream);
// The kernel's stages in a row of `cols` elements (cols % 64 == 0).
int f16wg_stages(int64_t cols);

}  // namespace llm::cuda::sk
