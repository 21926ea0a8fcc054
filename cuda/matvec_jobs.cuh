// Internals shared by the decode GEMV kernels (cuda/matvec_quant.cu, cuda/matvec_kq.cu):
// the launch's job table, how a warp finds its rows, and the epilogue that reduces a
// warp's partial sums and writes them (plain, accumulating, or RoPE + KV store).
#pragma once
#include "cuda/common.cuh"
#include "cuda/matvec_quant.h"
#include "cuda/rope.cuh"

namespace llm::cuda::mv {

constexpr int kWarps = 4;
constexpr int kMaxJobs = 3;

struct Jobs {
  MatvecJob job[kMaxJobs];
  int64_t group_start[kMaxJobs + 1];  // prefix sums of row groups per job
  int n_jobs;
  bool pairs;       // MatvecVariant::pairs_below allows a warp pair per row group
  MatvecNorm norm;  // the generic kernel's NORM mode (matvec_norm_supported)
};

// Finds the job and first row of this warp's row group; false when past the end.
template <int R>
__device__ __forceinline__ bool locate(const Jobs& J, int64_t g, int& j, int64_t& r0) {
  if (g >= J.group_start[J.n_jobs]) return false;
  j = 0;
  while (j + 1 < J.n_jobs && g >= J.group_start[j + 1]) ++j;
  r0 = (g - J.group_start[j]) * R;
  return true;
}

template <int R, int NC>
__device__ __forceinline__ void finish(const MatvecJob& job, int64_t r0, int n,
                                       float (&acc)[R][NC]) {
  const int lane = threadIdx.x & 31;
  // After the xor-reduction every lane holds every sum.
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int c = 0; c < NC; ++c) acc[r][c] = warp_sum(acc[r][c]);
      // Lane (r * NC + c) writes one result.
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int c = 0; c < NC; ++c) {
      if (lane != r * NC + c || c >= n || r0 + r >= job.W.rows) continue;
      if (job.epilogue == Epilogue::None) {
        float* y = job.y + c * job.ldy + r0 + r;
        *y = job.accumulate ? *y + acc[r][c] : acc[r][c];
        continue;
      }
      if constexpr (R == 2) {
        const RopeStore& e = job.rope;
        // rows r0 (even) and r0 + 1: a rotation pair when within the rotated dims
        float v0 = acc[0][c], v1 = acc[1][c];
        if (e.bias) {
          v0 += e.bias[r0];
          v1 += e.bias[r0 + 1];
        }
        float out = r == 0 ? v0 : v1;
        const int d = static_cast<int>(r0 % e.head_dim);
        if (job.epilogue != Epilogue::ToCache && d < e.rope_dim) {
          const float2 v = rope_cos_sin(e.positions[c], e.inv_freq[d / 2]);
          const float cs = v.x, sn = v.y;
          out = r == 0 ? v0 * cs - v1 * sn : v0 * sn + v1 * cs;
        }
        if (job.epilogue == Epilogue::RopeToY)
          job.y[c * job.ldy + r0 + r] = out;
        else
          e.cache[static_cast<int64_t>(e.slots[c]) * job.W.rows + r0 + r] = __float2half_rn(out);
      }
    }
}

// Two sums kept apart (MatvecJob::k_split), no epilogue: y = (y + S0) + S1, or S0 + S1.
// acc1_reduced: acc1 already holds the warp sums (another warp's, handed over).
template <int R, int NC>
__device__ __forceinline__ void finish_split(const MatvecJob& job, int64_t r0, int n,
                                             float (&acc0)[R][NC], float (&acc1)[R][NC],
                                             bool acc1_reduced = false) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int c = 0; c < NC; ++c) {
      acc0[r][c] = warp_sum(acc0[r][c]);
      if (!acc1_reduced) acc1[r][c] = warp_sum(acc1[r][c]);
    }
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int c = 0; c < NC; ++c) {
      if (lane != r * NC + c || c >= n || r0 + r >= job.W.rows) continue;
      float* y = job.y + c * job.ldy + r0 + r;
      *y = job.accumulate ? (*y + acc0[r][c]) + acc1[r][c] : acc0[r][c] + acc1[r][c];
    }
}

// The kernels of cuda/matvec_kq.cu (MatvecVariant): whether one takes matrices of type t
// (for mixed launches, of types t and t2), and its launch for nc <= kMatvecMaxCols columns.
bool kq_handles(DType t, const MatvecVariant& v);
bool kq_handles_pair(DType t, DType t2, const MatvecVariant& v);
void kq_launch(const Jobs& J, const ActQ8& x, int nc, const MatvecVariant& v, cudaStream_t stream);

}  // namespace llm::cuda::mv
