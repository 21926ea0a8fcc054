// Tensor-core products for 2 to 64 activation rows per pass (batched decode, speculative
// verification, short chunks), reading every weight byte once per pass.
//
// A CTA owns a tile of 32 or 64 weight rows (2 or 4 warps of 16) and a range of K; when a
// matrix has fewer tiles than MmTcConfig::target_ctas, K is split across CTAs and the
// last CTA of a tile to finish adds the partial sums in split order (deterministic). The
// activations of the pass's columns are staged in shared memory (cp.async, double-buffered) one
// chunk of 256 bytes per column at a time and shared by the CTA's warps; each warp streams its
// rows' weights straight into fragment registers, one chunk ahead of the one it multiplies.
//
// Fragments (PTX ISA, mma.m16n8k16): lane = 4 g + t; A (16 x 16) rows g and g + 8, B
// (16 x 8) column g, C rows g, g + 8 and columns 2t, 2t + 1. The order of k within one
// mma is free as long as A and B agree, so every lane reads whole words:
//   int8 (quantized): two mmas per unit (elements 0..15, 16..31); lane t holds word t of
//     each half for its two rows (one nibble word of the stored unit) and for its column;
//     the integer sums meet the unit's scales in f32.
//   f16: two mmas per unit; lane t loads elements 8t..8t+7 of the unit (16 bytes) and
//     feeds 8t..8t+3 to the first, 8t+4..8t+7 to the second.
#include <algorithm>

#include "cuda/matmul_tc.h"
#include "cuda/mma.cuh"
#include "cuda/qweight.cuh"

namespace llm::cuda {
namespace {

constexpr int kChunkBytes = 256;  // activation bytes per column and chunk
constexpr int kRowPad = 16;       // smem row padding: lanes g of a fragment hit distinct banks
constexpr int kMaxSplits = 8;

template <DType T>
constexpr int chunk_units() {
  return T == DType::F16 ? kChunkBytes / 64 : kChunkBytes / 32;
}

template <DType T>
constexpr bool is_kquant() {
  return T == DType::Q4_K || T == DType::Q5_K || T == DType::Q6_K;
}

// What one lane holds of one chunk of one weight row (the unused members vanish).
template <DType T>
struct LaneRow {
  static constexpr int CU = chunk_units<T>();
  uint32_t q[CU];      // nibble word t (Q8_0: word t of elements 0..15)
  uint32_t q2[CU];     // Q8_0: word t of elements 16..31
  uint32_t h0[CU];     // Q5_0/Q5_K: fifth bits >> 4t; Q6_K: high-pair word 0 >> 2t
  uint32_t h1[CU];     // Q6_K: high-pair word 1 >> 2t
  float d[CU], m[CU];  // per-unit scale (Q4_1: and min)
  uint4 f[CU];         // F16: elements 8t..8t+7
  uint4 meta;          // k-quants: the super-block's d, dmin, scales (Q6_K: int8 scales)
  float sd;            // Q6_K: the super-block's d
};

// Loads units cu .. cu + nunits - 1 of row r (cu a multiple of 8 for the k-quants).
template <DType T>
__device__ __forceinline__ void load_row(LaneRow<T>& L, const DevMatrix& W, int64_t r, int64_t cu,
                                         int nunits, int t) {
  constexpr int CU = chunk_units<T>();
  if constexpr (T == DType::F16) {
    const uint8_t* p = W.qs + r * W.qs_stride + cu * 64 + 16 * t;
#pragma unroll
    for (int j = 0; j < CU; ++j) L.f[j] = j < nunits ? ld16_stream(p + j * 64) : uint4{0, 0, 0, 0};
  } else {
    const uint8_t* qs = W.qs + r * W.qs_stride;
    const uint16_t* sc = reinterpret_cast<const uint16_t*>(W.sc + r * W.sc_stride);
#pragma unroll
    for (int j = 0; j < CU; ++j) {
      if (j >= nunits) {
        L.q[j] = L.q2[j] = L.h0[j] = L.h1[j] = 0;
        L.d[j] = L.m[j] = 0.0f;
        continue;
      }
      const int64_t u = cu + j;
      if constexpr (T == DType::Q8_0) {
        L.q[j] = ld4(qs + u * 32 + 4 * t);
        L.q2[j] = ld4(qs + u * 32 + 16 + 4 * t);
      } else {
        L.q[j] = ld4(qs + u * 16 + 4 * t);
      }
      if constexpr (T == DType::Q8_0 || T == DType::Q4_0 || T == DType::Q5_0)
        L.d[j] = half_bits_to_float(__ldg(sc + u));
      if constexpr (T == DType::Q4_1) {
        const float2 dm = half2_bits_to_float2(ld4(W.sc + r * W.sc_stride + u * 4));
        L.d[j] = dm.x;
        L.m[j] = dm.y;
      }
      if constexpr (T == DType::Q5_0 || T == DType::Q5_K)
        L.h0[j] = ld4(W.qh + r * W.qh_stride + u * 4) >> (4 * t);
      if constexpr (T == DType::Q6_K) {
        const uint2 h = ld8(W.qh + r * W.qh_stride + u * 8);
        L.h0[j] = h.x >> (2 * t);
        L.h1[j] = h.y >> (2 * t);
      }
    }
    if constexpr (is_kquant<T>()) L.meta = ld16(W.sb + r * W.sb_stride + (cu >> 3) * 16);
    if constexpr (T == DType::Q6_K) L.sd = half_bits_to_float(__ldg(sc + (cu >> 3)));
  }
}

// The lane's words of unit j: elements 4t..4t+3 (lo) and 16+4t..16+4t+3 (hi).
template <DType T>
__device__ __forceinline__ void lane_words(const LaneRow<T>& L, int j, int& lo, int& hi) {
  Unit x{};
  x.q.x = L.q[j];
  x.q2.x = L.q2[j];
  x.h0 = L.h0[j];
  x.h1 = L.h1[j];
  unit_word_pair<T>(x, 0, lo, hi);
}

// Unit j's value is dx * (A_lo * s_lo + A_hi * s_hi) + B * sx for integer sums s_lo, s_hi
// over its halves and the activation block's {dx, sx = dx * sum(q_x)}: {A_lo, A_hi, B}.
template <DType T>
__device__ __forceinline__ float3 lane_coef(const LaneRow<T>& L, int j) {
  if constexpr (T == DType::Q8_0) {
    return {L.d[j], L.d[j], 0.0f};
  } else if constexpr (T == DType::Q4_0) {
    return {L.d[j], L.d[j], -8.0f * L.d[j]};
  } else if constexpr (T == DType::Q5_0) {
    return {L.d[j], L.d[j], -16.0f * L.d[j]};
  } else if constexpr (T == DType::Q4_1) {
    return {L.d[j], L.d[j], L.m[j]};
  } else if constexpr (T == DType::Q6_K) {
    const uint32_t sw = word_of(L.meta, j >> 1);
    const float s0 = static_cast<float>(static_cast<int8_t>(byte_at(sw, (j & 1) * 2)));
    const float s1 = static_cast<float>(static_cast<int8_t>(byte_at(sw, (j & 1) * 2 + 1)));
    return {L.sd * s0, L.sd * s1, 0.0f};
  } else {  // Q4_K, Q5_K: d * sc * q - dmin * m
    float sc, mn;
    kq_scale_min(L.meta, j, sc, mn);
    const float2 dd = half2_bits_to_float2(L.meta.x);
    return {dd.x * sc, dd.x * sc, -dd.y * mn};
  }
}

// Stages the activations of units cu .. cu + nunits - 1 of the pass's n columns.
template <DType T, int NC, int NTHREADS>
__device__ __forceinline__ void stage_chunk(uint8_t (*xs)[kChunkBytes + kRowPad], float2 (*xd)[8],
                                            const ActQ8& xq, const __half* xh, int n, int64_t K,
                                            int64_t cu, int nunits) {
  constexpr bool kQ8 = T != DType::F16;
  constexpr int kElemBytes = kQ8 ? 1 : 2;
  const int pieces = nunits * 32 * kElemBytes / 16;  // 16-byte pieces per column
  const uint8_t* src =
      kQ8 ? reinterpret_cast<const uint8_t*>(xq.qs) : reinterpret_cast<const uint8_t*>(xh);
  for (int idx = static_cast<int>(threadIdx.x); idx < n * pieces; idx += NTHREADS) {
    const int c = idx / pieces, p = idx - c * pieces;
    cp_async16(&xs[c][16 * p], src + (c * K + cu * 32) * kElemBytes + 16 * p);
  }
  if constexpr (kQ8) {
    const int64_t nu = K / 32;
    for (int idx = static_cast<int>(threadIdx.x); idx < n * nunits; idx += NTHREADS) {
      const int c = idx / nunits, j = idx - c * nunits;
      cp_async8(&xd[c][j], xq.ds + c * nu + cu + j);
    }
  }
  cp_async_commit();
}

// NT tiles of 8 columns (n <= 8 NT), NW warps of 16 rows.
template <DType T, int NT, int NW>
__global__ void __launch_bounds__(NW * 32)
    mm_tc_kernel(DevMatrix W, ActQ8 xq, const __half* __restrict__ xh, int n, float* __restrict__ y,
                 int64_t ldy, bool accumulate, int units_per_split, float* __restrict__ partial,
                 int* __restrict__ counters) {
  constexpr int CU = chunk_units<T>();
  constexpr int NC = 8 * NT;
  constexpr int kRows = 16 * NW;
  constexpr bool kHalves = T == DType::Q6_K;  // halves scaled apart
  constexpr bool kOffset = T == DType::Q4_0 || T == DType::Q5_0 || T == DType::Q4_1 ||
                           T == DType::Q4_K || T == DType::Q5_K;
  // Two chunks of activations (the one multiplied, the one landing) and their {dx, sx}.
  __shared__ __align__(16) uint8_t xs[2][NC][kChunkBytes + kRowPad];
  __shared__ __align__(16) float2 xd[2][NC][8];
  __shared__ int last;

  const int warp = static_cast<int>(threadIdx.x >> 5), lane = static_cast<int>(threadIdx.x & 31);
  const int g = lane >> 2, t = lane & 3;
  const int64_t M = W.rows, K = W.cols;
  const int64_t tile0 = static_cast<int64_t>(blockIdx.x) * kRows;
  const int64_t row0 = tile0 + 16 * warp;
  const int64_t ra = min(row0 + g, M - 1), rb = min(row0 + g + 8, M - 1);
  const int64_t u_end = min(K / 32, static_cast<int64_t>(blockIdx.y + 1) * units_per_split);
  int64_t cu = static_cast<int64_t>(blockIdx.y) * units_per_split;

  float acc[NT][4];
#pragma unroll
  for (int i = 0; i < NT; ++i)
#pragma unroll
    for (int e = 0; e < 4; ++e) acc[i][e] = 0.0f;

  // The first chunk's weights are constant: loaded before waiting for the producer.
  LaneRow<T> La, Lb;
  int nunits = static_cast<int>(min(static_cast<int64_t>(CU), u_end - cu));
  load_row<T>(La, W, ra, cu, nunits, t);
  load_row<T>(Lb, W, rb, cu, nunits, t);
  pdl_wait();
  pdl_trigger();
  stage_chunk<T, NC, NW * 32>(xs[0], xd[0], xq, xh, n, K, cu, nunits);

  for (int buf = 0; cu < u_end; buf ^= 1) {
    // The next chunk's weights and activations are in flight while this one is multiplied.
    const int64_t cn = cu + CU;
    const int nn =
        static_cast<int>(max(static_cast<int64_t>(0), min(static_cast<int64_t>(CU), u_end - cn)));
    LaneRow<T> Na, Nb;
    if (nn > 0) {
      load_row<T>(Na, W, ra, cn, nn, t);
      load_row<T>(Nb, W, rb, cn, nn, t);
      stage_chunk<T, NC, NW * 32>(xs[buf ^ 1], xd[buf ^ 1], xq, xh, n, K, cn, nn);
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();  // this chunk's activations are visible to every warp

#pragma unroll
    for (int j = 0; j < CU; ++j) {
      if (j >= nunits) break;
      if constexpr (T == DType::F16) {
        const uint4 wa = La.f[j], wb = Lb.f[j];
#pragma unroll
        for (int i = 0; i < NT; ++i) {
          if (8 * i >= n) break;
          const int col = min(8 * i + g, n - 1);  // columns past n compute garbage, not stored
          const uint4 xb = *reinterpret_cast<const uint4*>(&xs[buf][col][j * 64 + 16 * t]);
          mma_f16(acc[i], wa.x, wb.x, wa.y, wb.y, xb.x, xb.y);
          mma_f16(acc[i], wa.z, wb.z, wa.w, wb.w, xb.z, xb.w);
        }
      } else {
        int a_lo, a_hi, b_lo, b_hi;
        lane_words<T>(La, j, a_lo, a_hi);
        lane_words<T>(Lb, j, b_lo, b_hi);
        const float3 ka = lane_coef<T>(La, j), kb = lane_coef<T>(Lb, j);
#pragma unroll
        for (int i = 0; i < NT; ++i) {
          if (8 * i >= n) break;
          const int col = min(8 * i + g, n - 1);
          const int x_lo = *reinterpret_cast<const int*>(&xs[buf][col][j * 32 + 4 * t]);
          const int x_hi = *reinterpret_cast<const int*>(&xs[buf][col][j * 32 + 16 + 4 * t]);
          const float2 d0 = xd[buf][min(8 * i + 2 * t, n - 1)][j];
          const float2 d1 = xd[buf][min(8 * i + 2 * t + 1, n - 1)][j];
          if constexpr (kHalves) {
            int lo[4] = {0, 0, 0, 0}, hi[4] = {0, 0, 0, 0};
            mma_s8_k16(lo, a_lo, b_lo, x_lo);
            mma_s8_k16(hi, a_hi, b_hi, x_hi);
            acc[i][0] +=
                d0.x * (ka.x * static_cast<float>(lo[0]) + ka.y * static_cast<float>(hi[0]));
            acc[i][1] +=
                d1.x * (ka.x * static_cast<float>(lo[1]) + ka.y * static_cast<float>(hi[1]));
            acc[i][2] +=
                d0.x * (kb.x * static_cast<float>(lo[2]) + kb.y * static_cast<float>(hi[2]));
            acc[i][3] +=
                d1.x * (kb.x * static_cast<float>(lo[3]) + kb.y * static_cast<float>(hi[3]));
          } else {
            int s[4] = {0, 0, 0, 0};
            mma_s8_k16(s, a_lo, b_lo, x_lo);
            mma_s8_k16(s, a_hi, b_hi, x_hi);
            acc[i][0] += ka.x * (d0.x * static_cast<float>(s[0]));
            acc[i][1] += ka.x * (d1.x * static_cast<float>(s[1]));
            acc[i][2] += kb.x * (d0.x * static_cast<float>(s[2]));
            acc[i][3] += kb.x * (d1.x * static_cast<float>(s[3]));
            if constexpr (kOffset) {
              acc[i][0] += ka.z * d0.y;
              acc[i][1] += ka.z * d1.y;
              acc[i][2] += kb.z * d0.y;
              acc[i][3] += kb.z * d1.y;
            }
          }
        }
      }
    }
    __syncthreads();  // every warp is done with xs[buf] before it is refilled
    cu = cn;
    nunits = nn;
    La = Na;
    Lb = Nb;
  }

  // This lane's C entries: rows g (e = 0, 1) and g + 8 (e = 2, 3); columns 2t, 2t + 1.
  const int S = static_cast<int>(gridDim.y);
#pragma unroll
  for (int i = 0; i < NT; ++i)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int64_t r = row0 + g + (e >= 2 ? 8 : 0);
      const int c = 8 * i + 2 * t + (e & 1);
      if (r >= M || c >= n) continue;
      if (S > 1) {
        partial[(static_cast<int64_t>(blockIdx.y) * n + c) * M + r] = acc[i][e];
      } else {
        float* out = y + c * ldy + r;
        *out = accumulate ? *out + acc[i][e] : acc[i][e];
      }
    }
  if (S == 1 || !last_split_arrival(counters, S, last)) return;
  // The tile's last CTA adds the splits in order 0..S-1 (the same bits whoever is last).
  const int rows_here = static_cast<int>(min(static_cast<int64_t>(kRows), M - tile0));
  for (int idx = static_cast<int>(threadIdx.x); idx < n * kRows; idx += NW * 32) {
    const int c = idx / kRows, rr = idx - c * kRows;
    if (rr >= rows_here) continue;
    const int64_t r = tile0 + rr;
    float v = 0.0f;
    for (int s = 0; s < S; ++s) v += __ldcg(partial + (static_cast<int64_t>(s) * n + c) * M + r);
    float* out = y + c * ldy + r;
    *out = accumulate ? *out + v : v;
  }
  if (threadIdx.x == 0) counters[blockIdx.x] = 0;
}

struct Split {
  int splits = 1;
  int units_per_split = 0;
};

// CU: units per chunk; K is split when the matrix has fewer row tiles than cfg.target_ctas.
Split split_of(const DevMatrix& W, int CU, const MmTcConfig& cfg, bool have_ws) {
  const int64_t nu = W.cols / 32, chunks = ceil_div(nu, CU),
                tiles = ceil_div(W.rows, 16 * cfg.warps);
  Split s;
  s.units_per_split = static_cast<int>(chunks * CU);
  if (!have_ws || tiles >= cfg.target_ctas) return s;
  const int64_t want = std::min<int64_t>({ceil_div(cfg.target_ctas, tiles), kMaxSplits, chunks});
  const int64_t per = ceil_div(chunks, want);
  s.splits = static_cast<int>(ceil_div(chunks, per));
  s.units_per_split = static_cast<int>(per * CU);
  return s;
}

template <DType T, int NT, int NW>
void launch_nt(const MmTcArgs& a, int n, const ActQ8& xq, const __half* xh, float* y,
               cudaStream_t stream) {
  const Split s = split_of(*a.W, chunk_units<T>(), a.cfg, a.ws.partial != nullptr);
  const dim3 grid(static_cast<unsigned>(ceil_div(a.W->rows, 16 * NW)),
                  static_cast<unsigned>(s.splits));
  launch(mm_tc_kernel<T, NT, NW>, grid, NW * 32, 0, stream, *a.W, xq, xh, n, y, a.ldy, a.accumulate,
         s.units_per_split, a.ws.partial, a.ws.counters);
  CUDA_CHECK_LAUNCH();
}

template <DType T, int NT>
void launch_nw(const MmTcArgs& a, int n, const ActQ8& xq, const __half* xh, float* y,
               cudaStream_t stream) {
  if (a.cfg.warps == 2)
    launch_nt<T, NT, 2>(a, n, xq, xh, y, stream);
  else
    launch_nt<T, NT, 4>(a, n, xq, xh, y, stream);
}

template <DType T>
void launch_type(const MmTcArgs& a, int n, const ActQ8& xq, const __half* xh, float* y,
                 cudaStream_t stream) {
  if (n <= 8)
    launch_nw<T, 1>(a, n, xq, xh, y, stream);
  else if (n <= 16)
    launch_nw<T, 2>(a, n, xq, xh, y, stream);
  else if (n <= 32)
    launch_nw<T, 4>(a, n, xq, xh, y, stream);
  else
    launch_nw<T, 8>(a, n, xq, xh, y, stream);
}

}  // namespace

MmTcConfig mm_tc_config(int target_ctas, int warps) {
  MmTcConfig c;
  c.target_ctas = std::clamp(target_ctas, 1, kTcCounters);
  c.warps = warps == 2 ? 2 : 4;
  return c;
}

size_t mm_tc_partial_floats(const MmTcConfig& cfg) {
  // splits * tiles < target_ctas + tiles <= 2 target_ctas whenever K is split.
  return static_cast<size_t>(2 * cfg.target_ctas) * 16 * cfg.warps * kTcMaxCols;
}

bool mm_tc_supported(const DevMatrix& W) {
  if (W.cols % 32 != 0) return false;
  if (W.type == DType::F16) return W.qs_stride % 16 == 0;
  return type_supported(W.type) && !is_float_type(W.type);  // every quantized type
}

bool mm_tc_wants_q8(const DevMatrix& W) {
  return W.type != DType::F16;
}

int mm_tc_splits(const DevMatrix& W, const MmTcConfig& cfg, bool have_workspace) {
  const int CU = W.type == DType::F16 ? chunk_units<DType::F16>() : chunk_units<DType::Q8_0>();
  return split_of(W, CU, cfg, have_workspace).splits;
}

void mm_tc(const MmTcArgs& a, cudaStream_t stream) {
  if (a.n <= 0) return;
  const DevMatrix& W = *a.W;
  if (!mm_tc_supported(W))
    throw Error(std::string("mm_tc: unsupported weights ") + dtype_name(W.type));
  const int64_t k = W.cols;
  for (int c0 = 0; c0 < a.n; c0 += kTcMaxCols) {
    const int n = a.n - c0 < kTcMaxCols ? a.n - c0 : kTcMaxCols;
    ActQ8 xq = a.x_q8;
    if (xq.qs) {
      xq.qs += c0 * k;
      xq.ds += c0 * (k / 32);
    }
    const __half* xh = a.x_f16 ? a.x_f16 + c0 * k : nullptr;
    float* y = a.y + c0 * a.ldy;
    switch (W.type) {
#define LLM_CASE(T)                          \
  case T:                                    \
    launch_type<T>(a, n, xq, xh, y, stream); \
    break;
      LLM_CASE(DType::F16)
      LLM_CASE(DType::Q8_0)
      LLM_CASE(DType::Q4_0)
      LLM_CASE(DType::Q4_1)
      LLM_CASE(DType::Q5_0)
      LLM_CASE(DType::Q4_K)
      LLM_CASE(DType::Q5_K)
      LLM_CASE(DType::Q6_K)
#undef LLM_CASE
      default:
        break;
    }
  }
}

}  // namespace llm::cuda
