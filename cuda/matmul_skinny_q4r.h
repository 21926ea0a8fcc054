// The skinny products' half mode for Q4_0 with the weights loaded straight into registers
// (cuda/matmul_skinny_q4r.cu), called by mm_sk (cuda/matmul_skinny.cu) for 17 to
// kSkRegMaxRows activation rows when MmSkConfig::reg_weights is set.
#pragma once
#include "cuda/matmul_skinny_jobs.cuh"

namespace llm::cuda::sk {

// total: 128-element stages of a row; bufs: weight stages held in registers (2 or 3);
// x_slots: activation ring slots (3 or 4).
void launch_q4r(const HalfLaunch& l, cudaStream_t stream);
// Whether W's rows are addressed with 32-bit offsets (under 4 GiB of nibbles and scales).
inline bool q4r_fits(const DevMatrix& W) {
  return W.rows * W.qs_stride < (int64_t{1} << 32) && W.rows * W.sc_stride < (int64_t{1} << 32);
}

}  // namespace llm::cuda::sk
