// What the two skinny-product kernels share (cuda/matmul_skinny.cu: weights through a
// shared-memory ring; cuda/matmul_skinny_q4r.cu: Q4_0 weights straight into registers):
// the launch's matrices (Jobs), Q4_0 nibbles to f16 in registers, and the end of a CTA —
// its 64-row tile's sums into y or into the split-K partials, the last split's sum of
// them, and the epilogues.
#pragma once
#include "cuda/matmul_skinny.h"
#include "cuda/matmul_skinny_epilogue.cuh"
#include "cuda/mma.cuh"

namespace llm::cuda::sk {

constexpr int kTileRows = 64;  // weight rows of a CTA (the unit of tiles and counters)

// Up to kSkMaxJobs matrices of one type and width in one launch: their 64-row tiles are
// numbered one after the other (tile_end: cumulative), and their split-K partial sums
// sit side by side, (S, n, rows_total) with job j's rows from row_off[j].
struct Jobs {
  DevMatrix W[kSkMaxJobs];
  float* y[kSkMaxJobs];
  int tile_end[kSkMaxJobs];
  int64_t row_off[kSkMaxJobs];
  int64_t rows_total;
  // SwiGLU mode (MmSkArgs::glu): W[0] gate and W[1] up of F rows; a CTA takes 32 rows of
  // each (tile rows 0..31: gate, 32..63: up) and writes silu(gate) * up to glu, (n, F).
  bool glu;
  ActOut glu_out;
  Epilogue epi[kSkMaxJobs];  // MmSkArgs::epilogue
  RopeStore rope[kSkMaxJobs];
};

// A launch of one of the kernels that take f16 activations (the Q4_0 register kernel,
// the F16 TMA kernel): `tiles` 64-row tiles (32 of gate and 32 of up in the SwiGLU mode)
// and `splits` CTAs per tile along K (total: the kernel's stages of a row), n activation
// rows (f16, (n, K)); the rest as mm_sk's own kernel takes it.
struct HalfLaunch {
  Jobs jobs;
  int n_jobs = 1;  // matrices in jobs (the SwiGLU mode: 2)
  int tiles = 0, splits = 1, total = 0, n = 0;
  int bufs = 2;      // the register kernel's weight stages held in registers (2 or 3)
  int x_slots = 3;   // the register kernel's activation ring slots (3 or 4)
  bool x_l1 = true;  // the register kernel's activation copies through L1
  const __half* xh = nullptr;
  int64_t ldy = 0;
  bool accumulate = false, halves = false;
  float* partial = nullptr;
  int* counters = nullptr;
};

// The matrix of tile `tile`; in the SwiGLU mode the tile's row half (0 gate, 1 up) picks it.
__device__ __forceinline__ int job_of(const Jobs& jobs, int tile, int glu_half) {
  return jobs.glu ? glu_half : tile < jobs.tile_end[0] ? 0 : tile < jobs.tile_end[1] ? 1 : 2;
}
template <class V>
__device__ __forceinline__ V pick(const V (&v)[kSkMaxJobs], int j) {
  return j == 0 ? v[0] : j == 1 ? v[1] : v[2];  // no run-time index: no local-memory copy
}

// Four f16 pairs of a Q4_0 nibble word (bytes 4t..4t+3 of a unit: elements 4t..4t+3 in the
// low nibbles, 16+4t..16+4t+3 in the high ones), times the unit's scale: lo01 = elements
// (4t, 4t+1), lo23 = (4t+2, 4t+3), hi01 / hi23 the same of 16+4t.. . A low nibble q OR'd
// into 0x6400 is the half 1024 + q, and 1024 + q - 1032 = q - 8; a high nibble in place is
// 1024 + 16 q, and (1024 + 16 q) / 16 - 72 = q - 8 in one HFMA2 (no shift). Both exact, so
// the one rounding is in the product with the scale.
template <uint32_t kMask>
__device__ __forceinline__ uint32_t and_or(uint32_t v, uint32_t bits) {
  uint32_t r;  // (v & kMask) | bits in one LOP3
  asm("lop3.b32 %0, %1, %2, %3, 0xEA;" : "=r"(r) : "r"(v), "n"(kMask), "r"(bits));
  return r;
}
__device__ __forceinline__ void q4_half_pairs(uint32_t w, __half2 d, uint32_t& lo01, uint32_t& lo23,
                                              uint32_t& hi01, uint32_t& hi23) {
  const uint32_t p01 = __byte_perm(w, 0, 0x4140), p23 = __byte_perm(w, 0, 0x4342);
  const __half2 k_lo = __halves2half2(__ushort_as_half(0x6408), __ushort_as_half(0x6408));
  const __half2 k16 = __halves2half2(__ushort_as_half(0x2C00), __ushort_as_half(0x2C00));  // 1/16
  const __half2 k72 = __halves2half2(__ushort_as_half(0xD480), __ushort_as_half(0xD480));  // -72
  const uint32_t magic = 0x64006400u;
  auto lo = [&](uint32_t v) {
    const uint32_t h = and_or<0x000F000Fu>(v, magic);
    const __half2 r = __hmul2(__hsub2(*reinterpret_cast<const __half2*>(&h), k_lo), d);
    return *reinterpret_cast<const uint32_t*>(&r);
  };
  auto hi = [&](uint32_t v) {
    const uint32_t h = and_or<0x00F000F0u>(v, magic);
    const __half2 r = __hmul2(__hfma2(*reinterpret_cast<const __half2*>(&h), k16, k72), d);
    return *reinterpret_cast<const uint32_t*>(&r);
  };
  lo01 = lo(p01);
  lo23 = lo(p23);
  hi01 = hi(p01);
  hi23 = hi(p23);
}

// Where a CTA's sums go.
struct Out {
  float* y;
  int64_t ldy;
  bool accumulate;
  int S;           // splits of K (gridDim.y)
  float* partial;  // (S, n, RT)
  int64_t RT, row_off;
  int n;
  int64_t M;
};

// One 16-row group's mma C fragments (rows row0 + g and + 8, columns 8 ng + 2t, + 1) into
// y, or into this split's partial sums.
template <int NG>
__device__ __forceinline__ void store_fragments(const float (&acc)[NG][4], int64_t row0, int lane,
                                                const Out& o) {
  const int g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int ng = 0; ng < NG; ++ng)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int64_t r = row0 + g + (e >= 2 ? 8 : 0);
      const int c = 8 * ng + 2 * t + (e & 1);
      if (r >= o.M || c >= o.n) continue;
      if (o.S > 1) {
        o.partial[(static_cast<int64_t>(blockIdx.y) * o.n + c) * o.RT + o.row_off + r] = acc[ng][e];
      } else {
        float* out = o.y + c * o.ldy + r;
        *out = o.accumulate ? *out + acc[ng][e] : acc[ng][e];
      }
    }
}

// The tile's last CTA adds the splits in order 0..S-1 (the same bits whoever is last).
// Halves: the splits of each half of K are summed apart, y = (y + S0) + S1, as two
// tensor-parallel ranks holding one half each and all-reducing would. A thread takes
// kItems outputs at a time and issues every load of them (their y, and 8 splits each)
// before the first add: one L2 round trip per 8 splits. The register kernel (128 threads)
// takes 8 at a time: with 2, the last CTA of a 64 x 32 tile made 16 dependent round trips
// (H100: wo 35.6 -> 31.5 us with 8). The ring kernel keeps 2 (256 threads, and its
// register count — its occupancy — follows this epilogue's: 87 -> 172 at 8 rows with 8).
// Then the tile's counter goes back to zero for the next launch.
template <int kItems>
__device__ __forceinline__ void split_sum(const Out& o, int64_t tile0, bool halves, int* counters,
                                          int n_threads) {
  const int rows_here = static_cast<int>(min(static_cast<int64_t>(kTileRows), o.M - tile0));
  const int S = o.S, n = o.n, s_half = halves ? S / 2 : S;
  constexpr int kChunk = 8;
  const float* pbase = o.partial + o.row_off + tile0;
  for (int base = static_cast<int>(threadIdx.x); base < n * kTileRows; base += kItems * n_threads) {
    float v0[kItems], v1[kItems], yv[kItems];
    int at[kItems];  // the output's partial offset (c * RT + rr), or -1
#pragma unroll
    for (int m = 0; m < kItems; ++m) {
      const int idx = base + m * n_threads;
      const int c = idx / kTileRows, rr = idx - c * kTileRows;
      const bool ok = idx < n * kTileRows && rr < rows_here;
      at[m] = ok ? c * static_cast<int>(o.RT) + rr : -1;
      yv[m] = ok && o.accumulate ? o.y[c * o.ldy + tile0 + rr] : 0.0f;
      v0[m] = v1[m] = 0.0f;
    }
    for (int s0 = 0; s0 < S; s0 += kChunk) {
      float pv[kItems][kChunk];
#pragma unroll
      for (int m = 0; m < kItems; ++m)
#pragma unroll
        for (int q = 0; q < kChunk; ++q)
          pv[m][q] = at[m] >= 0 && s0 + q < S
                         ? __ldcg(pbase + static_cast<int64_t>(s0 + q) * n * o.RT + at[m])
                         : 0.0f;
#pragma unroll
      for (int m = 0; m < kItems; ++m)
#pragma unroll
        for (int q = 0; q < kChunk; ++q) {
          if (s0 + q >= S) break;
          if (s0 + q < s_half)
            v0[m] += pv[m][q];
          else
            v1[m] += pv[m][q];
        }
    }
#pragma unroll
    for (int m = 0; m < kItems; ++m) {
      if (at[m] < 0) continue;
      const int idx = base + m * n_threads;
      const int c = idx / kTileRows, rr = idx - c * kTileRows;
      const float v = o.accumulate ? yv[m] + v0[m] : v0[m];
      o.y[c * o.ldy + tile0 + rr] = halves ? v + v1[m] : v;
    }
  }
  if (threadIdx.x == 0) counters[blockIdx.x] = 0;
}

// The epilogues once the tile's sums are in shared memory, gl (64, NC + 1): SwiGLU, or
// job j's RoPE / K-V store.
__device__ __forceinline__ void finish_epilogue(const float* gl, int NC, const Jobs& jobs, int j,
                                                int64_t tile0, const Out& o, int warp,
                                                int n_warps) {
  if (jobs.glu) {
    glu_store(gl, NC, o.n, o.M, tile0, jobs.glu_out, warp, n_warps);
  } else {
    rope_store(gl, NC, o.n, o.M, tile0, kTileRows, pick(jobs.epi, j), pick(jobs.rope, j), o.y,
               o.ldy, n_warps * 32);
  }
}

}  // namespace llm::cuda::sk
