// Epilogues of the skinny products (cuda/matmul_skinny.cu) that replace a separate kernel:
// SwiGLU for gate/up (MmSkArgs::glu) and bias + RoPE + K/V cache store for q/k/v
// (MmSkArgs::epilogue). Both start from the CTA tile's sums gathered in shared memory,
// gl (64 tile rows, NC + 1 floats a row; the pad keeps a column's reads conflict-free).
#pragma once
#include "cuda/act.cuh"
#include "cuda/matvec_quant.h"
#include "cuda/rope.cuh"

namespace llm::cuda {

// This warp's mma C fragments (rows 16 rw + g and + 8, columns 8 ng + 2t, + 1) into gl.
template <int NG>
__device__ __forceinline__ void tile_sums_to_shared(float* gl, const float (&acc)[NG][4], int rw,
                                                    int lane) {
  constexpr int NC = 8 * NG;
  const int g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int ng = 0; ng < NG; ++ng)
#pragma unroll
    for (int e = 0; e < 4; ++e)
      gl[(16 * rw + g + (e >= 2 ? 8 : 0)) * (NC + 1) + 8 * ng + 2 * t + (e & 1)] = acc[ng][e];
}

// SwiGLU mode: tile rows 0..31 are gate rows tile0.., 32..63 the same rows of up. Warp w
// takes activation rows w, w + n_warps, ..., a lane one of the 32 outputs (one q8 block),
// computed as the SwiGLU kernel (cuda/activation.cu) does. out: (n, M) in its formats.
__device__ __forceinline__ void glu_store(const float* gl, int NC, int n, int64_t M, int64_t tile0,
                                          const ActOut& out, int warp, int n_warps) {
  const int lane = static_cast<int>(threadIdx.x & 31);
  for (int c = warp; c < n; c += n_warps) {
    const float gv = gl[lane * (NC + 1) + c], uv = gl[(32 + lane) * (NC + 1) + c];
    act_store(out, c, M, tile0 + lane, gv / (1.0f + expf(-gv)) * uv);
  }
}

// q/k/v: a thread takes a pair of rows (2p, 2p + 1) of the tile and an activation row c,
// with the decode GEMV epilogue's arithmetic (matvec_jobs.cuh finish): bias, the rotation
// of llama's neighbour pairs within rope_dim (angles from e.cs when given), then y
// (RopeToY, row c at c * ldy) or the f16 cache at row c's slot.
__device__ __forceinline__ void rope_store(const float* gl, int NC, int n, int64_t M, int64_t tile0,
                                           int tile_rows, Epilogue epi, const RopeStore& e,
                                           float* y, int64_t ldy, int n_threads) {
  const int pairs = tile_rows / 2;
  for (int idx = static_cast<int>(threadIdx.x); idx < pairs * n; idx += n_threads) {
    const int pr = idx % pairs, c = idx / pairs;
    const int64_t r = tile0 + 2 * pr;
    if (r >= M) continue;
    float v0 = gl[(2 * pr) * (NC + 1) + c], v1 = gl[(2 * pr + 1) * (NC + 1) + c];
    if (e.bias) {
      v0 += e.bias[r];
      v1 += e.bias[r + 1];
    }
    float o0 = v0, o1 = v1;
    const int d = static_cast<int>(r % e.head_dim);
    if (epi != Epilogue::ToCache && d < e.rope_dim) {
      const float2 v = e.cs ? e.cs[static_cast<int64_t>(c) * (e.rope_dim / 2) + d / 2]
                            : rope_cos_sin(e.positions[c], e.inv_freq[d / 2]);
      const float cs = v.x, sn = v.y;
      o0 = v0 * cs - v1 * sn;
      o1 = v0 * sn + v1 * cs;
    }
    if (epi == Epilogue::RopeToY) {
      y[c * ldy + r] = o0;
      y[c * ldy + r + 1] = o1;
    } else {
      __half* dst = e.cache + static_cast<int64_t>(e.slots[c]) * M + r;
      dst[0] = __float2half_rn(o0);
      dst[1] = __float2half_rn(o1);
    }
  }
}

}  // namespace llm::cuda
