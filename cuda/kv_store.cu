#include "cuda/common.cuh"
#include "cuda/kv_store.h"
#include "cuda/rope.cuh"

namespace llm::cuda {
namespace {

constexpr int kThreads = 128;

// grid (ceil((n_head + 2 n_head_kv) * head_dim / 128), n_rows): one thread per output
// element, so a decode step (one row) still spreads over many blocks. Each thread rotates
// its own element; the angle is computed in double like the CPU reference.
__global__ void qkv_rope_store_kernel(QkvStoreArgs a) {
  pdl_wait();
  pdl_trigger();
  const int row = blockIdx.y, D = a.head_dim;
  const int nq = a.n_head * D, nkv = a.n_head_kv * D;
  const int t = blockIdx.x * kThreads + threadIdx.x;
  if (t >= nq + 2 * nkv) return;
  const int64_t slot = a.slots[row];
  if (t >= nq + nkv) {  // v: no rotation
    const int e = t - nq - nkv;
    a.v_cache[slot * nkv + e] = __float2half_rn(a.v[row * a.ld + e] + (a.bv ? a.bv[e] : 0.0f));
    return;
  }
  const bool is_q = t < nq;
  const int e = is_q ? t : t - nq;  // element within q or k
  const int h = e / D, d = e % D;
  const float* x = (is_q ? a.q : a.k) + row * a.ld + h * D;
  const float* b = is_q ? a.bq : a.bk;
  if (b) b += h * D;
  float val;
  if (d >= a.rope_dim) {
    val = x[d] + (b ? b[d] : 0.0f);
  } else {
    const int half = a.rope_dim / 2;
    const bool neox = a.rope_type == RopeType::Neox;
    const int i = neox ? (d < half ? d : d - half) : d / 2;
    const int d0 = neox ? i : 2 * i, d1 = neox ? i + half : 2 * i + 1;  // the pair
    const float x0 = x[d0] + (b ? b[d0] : 0.0f), x1 = x[d1] + (b ? b[d1] : 0.0f);
    const float2 v = rope_cos_sin(a.positions[row], a.inv_freq[i]);
    const float cs = v.x, sn = v.y;
    val = d == d0 ? x0 * cs - x1 * sn : x0 * sn + x1 * cs;
  }
  if (is_q)
    a.q_out[static_cast<int64_t>(row) * nq + e] = val;
  else
    a.k_cache[slot * nkv + e] = __float2half_rn(val);
}

}  // namespace

void qkv_rope_store(const QkvStoreArgs& a, cudaStream_t stream) {
  if (a.n_rows <= 0) return;
  const int total = (a.n_head + 2 * a.n_head_kv) * a.head_dim;
  const dim3 grid(static_cast<unsigned>(ceil_div(total, kThreads)),
                  static_cast<unsigned>(a.n_rows));
  launch(qkv_rope_store_kernel, grid, kThreads, 0, stream, a);
  CUDA_CHECK_LAUNCH();
}

}  // namespace llm::cuda
