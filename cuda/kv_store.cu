#include "cuda/kv_store.h"
#include "cuda/rope.cuh"

namespace llm::cuda {
namespace {

// One block per row; threads walk the q, k and v elements of the row.
__global__ void qkv_rope_store_kernel(QkvStoreArgs a) {
  extern __shared__ float tab[];
  const int row = blockIdx.x, half = a.rope_dim / 2, D = a.head_dim;
  rope_table(a.positions[row], a.inv_freq, half, tab, tab + half);
  __syncthreads();
  const bool neox = a.rope_type == RopeType::Neox;
  const int nq = a.n_head * D, nkv = a.n_head_kv * D;
  const int64_t slot = a.slots[row];
  const float* q = a.q + row * a.ld;
  const float* k = a.k + row * a.ld;
  const float* v = a.v + row * a.ld;
  for (int t = threadIdx.x; t < nq + 2 * nkv; t += blockDim.x) {
    if (t < nq) {
      const int h = t / D, d = t % D;
      a.q_out[static_cast<int64_t>(row) * nq + t] =
          rope_value(q + h * D, a.bq ? a.bq + h * D : nullptr, d, a.rope_dim, neox, tab, tab + half);
    } else if (t < nq + nkv) {
      const int e = t - nq, h = e / D, d = e % D;
      const float val = rope_value(k + h * D, a.bk ? a.bk + h * D : nullptr, d, a.rope_dim, neox, tab, tab + half);
      a.k_cache[slot * nkv + e] = __float2half_rn(val);
    } else {
      const int e = t - nq - nkv;
      const float val = v[e] + (a.bv ? a.bv[e] : 0.0f);
      a.v_cache[slot * nkv + e] = __float2half_rn(val);
    }
  }
}

}  // namespace

void qkv_rope_store(const QkvStoreArgs& a, cudaStream_t stream) {
  if (a.n_rows <= 0) return;
  const size_t smem = sizeof(float) * static_cast<size_t>(a.rope_dim);
  qkv_rope_store_kernel<<<a.n_rows, 256, smem, stream>>>(a);
  CUDA_CHECK_LAUNCH();
}

}  // namespace llm::cuda
