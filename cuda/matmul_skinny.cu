// Skinny products (see matmul_skinny.h): weights through a per-warp shared-memory ring and
// ldmatrix, activations through a ring shared by the CTA's warps, int8 or f16 mma.sync.
//
// A stage is 64 bytes of each of a warp's 16 rows: 4 Q4_0/Q4_1 units (128 elements), 2 Q8_0
// units (64) or 32 F16 elements, plus the units' scales. In shared memory a row's four
// 16-byte pieces sit at slots p ^ ((row / 2) % 4), so that the 8 rows of one ldmatrix
// matrix fall in 8 distinct bank groups.
//
// Fragments (cuda/mma.cuh): ldmatrix hands lane 4g + t word t of row g of each 8 x 16-byte
// matrix, which is exactly the mma.sync A operand when a matrix is 8 weight rows of one
// 16-byte piece:
//   Q4_0/Q4_1: piece = one unit's nibbles; its low nibbles are elements 4t..4t+3 and its
//     high nibbles 16+4t..16+4t+3, the k32 int8 A fragment's two words;
//   Q8_0: pieces 2j, 2j+1 = unit j's elements 0..15 and 16..31;
//   F16: pieces 2j, 2j+1 = elements 16j..16j+7 and 16j+8..16j+15 of a k16 step.
// The activations are laid out [row][k] in shared memory, so the B operand (8 activation
// rows) comes from ldmatrix the same way.
#include <algorithm>
#include <string>

#include "cuda/matmul_skinny.h"
#include "cuda/matmul_skinny_f16wg.h"
#include "cuda/matmul_skinny_jobs.cuh"
#include "cuda/matmul_skinny_q4r.h"
#include "cuda/mma.cuh"
#include "cuda/qweight.cuh"
#include "engine/error.h"

namespace llm::cuda {
namespace {

using sk::Jobs;
using sk::kTileRows;
using sk::q4_half_pairs;

// A CTA is 4 row groups of 16 rows (a 64-row tile) times KG k-groups, each of which takes
// its share of the CTA's stages; with 2 the halves' sums meet in shared memory at the end.
// Twice the warps per tile hide twice the latency of each warp's chain of loads, products
// and scale arithmetic; measured on an H100 (PERF.md) that pays from 9 rows on, while at
// 8 rows the second CTA barrier participant and activation copy cost more.
constexpr int kRowWarps = 4, kMaxWarps = 8;
static_assert(kTileRows == 16 * kRowWarps);
constexpr int k_groups(int NG) {
  return NG == 1 ? 1 : 2;
}
// H (half mode, Q4_0 with more than kHalfFrom rows): the weights are dequantized to f16
// in registers and multiplied with f16 activations, so the per-row-group cost is two f16
// mma per unit instead of an int8 mma and its f32 scale arithmetic.
constexpr int kPieceRow = 64;  // weight bytes of one row per stage

constexpr bool is_q8(DType T) {
  return T != DType::F16;
}
// K elements per stage.
constexpr int stage_elems(DType T) {
  return T == DType::F16 ? 32 : T == DType::Q8_0 ? 64 : 128;
}
// 32-element units per stage (q8 activation blocks).
constexpr int stage_units(DType T) {
  return stage_elems(T) / 32;
}
// Scale bytes of one row per stage: f16 d per unit, Q4_1 half2 (d, m) per unit.
constexpr int stage_sc_bytes(DType T) {
  return T == DType::F16 ? 0 : T == DType::Q4_1 ? 4 * stage_units(T) : 2 * stage_units(T);
}
// Whether the activations are q8 blocks (else f16).
constexpr bool q8_acts(DType T, bool H) {
  return is_q8(T) && !H;
}
// Staged activation bytes of one row per stage: the values, and {d, s} per unit.
constexpr int stage_x_bytes(DType T, bool H) {
  return q8_acts(T, H) ? stage_elems(T) : 2 * stage_elems(T);
}
constexpr int stage_xd_bytes(DType T, bool H) {
  return q8_acts(T, H) ? 8 * stage_units(T) : 0;
}
// Row stride of the staged activations: 16 bytes past a multiple of 128 for ldmatrix (8
// rows of 16 bytes), 32 for the half mode's 8-byte loads (8 rows of 32 bytes).
constexpr int x_stride_of(DType T, bool H) {
  return stage_x_bytes(T, H) + (H ? 32 : 16);
}
// Ring depth (stages in flight: KS - 2 to KS - 1): F16 stages hold 4x fewer elements, so
// its ring is deeper; one group of 8 rows (a CTA of 4 warps, few warps per SM) gets 10
// (H100, 8-row steps 3.87 -> 3.74 ms; 12 was slower); 3+ groups and the half mode, whose
// activation rows are wide, get 4; two groups 6.
constexpr int ring_stages(DType T, bool H, int NG) {
  return T == DType::F16 ? 8 : NG >= 3 || H ? 4 : NG == 1 ? 10 : 6;
}
constexpr int weight_smem(DType T, bool H, int NG) {
  return kRowWarps * k_groups(NG) * ring_stages(T, H, NG) * 16 * (kPieceRow + stage_sc_bytes(T));
}

// NG groups of 8 activation rows (n <= 8 NG). Split blockIdx.y covers stages
// [y * total / S, (y + 1) * total / S) of every row.
template <DType T, int NG, bool H>
__global__ void __launch_bounds__(kMaxWarps * 32)
    mm_sk_kernel(Jobs jobs, ActQ8 xq, const __half* __restrict__ xh, int n, int64_t ldy,
                 bool accumulate, int total, bool halves, float* __restrict__ partial,
                 int* __restrict__ counters, bool x_l1) {
  constexpr int NC = 8 * NG;
  constexpr int SC = stage_sc_bytes(T);
  constexpr int UPS = stage_units(T);
  constexpr int XB = stage_x_bytes(T, H);
  constexpr int KS = ring_stages(T, H, NG);
  constexpr bool QX = q8_acts(T, H);
  constexpr int kKGroups = k_groups(NG), kWarps = kRowWarps * kKGroups;
  extern __shared__ __align__(16) uint8_t smem[];
  __shared__ int last;

  const int warp = static_cast<int>(threadIdx.x >> 5), lane = static_cast<int>(threadIdx.x & 31);
  const int g = lane >> 2, t = lane & 3;
  const int rw = warp % kRowWarps, kh = warp / kRowWarps;  // row group, k-group
  const int tile = static_cast<int>(blockIdx.x);
  // SwiGLU mode: the warp's matrix by its row group (gate or up), 32 rows of each per CTA.
  const int j = sk::job_of(jobs, tile, rw >> 1);
  const DevMatrix W = sk::pick(jobs.W, j);
  const int first_tile = j == 0 || jobs.glu ? 0 : jobs.tile_end[j - 1];
  const int64_t M = W.rows, K = W.cols, RT = jobs.rows_total;
  const int S = static_cast<int>(gridDim.y);
  const int st0 = static_cast<int>(static_cast<int64_t>(blockIdx.y) * total / S);
  const int nst = static_cast<int>(static_cast<int64_t>(blockIdx.y + 1) * total / S) - st0;
  const int64_t tile0 = static_cast<int64_t>(tile - first_tile) * (jobs.glu ? 32 : kTileRows);
  const int64_t row0 = tile0 + 16 * (jobs.glu ? rw & 1 : rw);
  // k-group 0 takes the first n0 of the CTA's stages, k-group 1 the other n1.
  const int n0 = (nst + kKGroups - 1) / kKGroups, n1 = nst - n0;
  const int my_n = kh ? n1 : n0, my_st0 = st0 + (kh ? n0 : 0);

  // Shared memory: the warps' weight rings and their scales, the CTA's activation ring and
  // its {d, s} (both k-groups' rows in each slot). Local stage i sits in slot i % KS.
  uint8_t* wring = smem + static_cast<size_t>(warp) * KS * 16 * kPieceRow;  // (KS, 16, 64)
  uint8_t* wsc = smem + static_cast<size_t>(kWarps) * KS * 16 * kPieceRow +
                 static_cast<size_t>(warp) * KS * 16 * SC;  // (KS, 16, SC)
  constexpr int x_stride = x_stride_of(T, H);
  uint8_t* xs = smem + weight_smem(T, H, NG);  // (KS, kKGroups, NC, x_stride)
  float2* xd = reinterpret_cast<float2*>(xs + static_cast<size_t>(KS) * kKGroups * NC *
                                                  x_stride);  // (KS, kKGroups, UPS, NC)

  // What this thread copies per stage, with the addresses worked out once: two 16-byte
  // pieces of its warp's weight rows (and one row's scales), and up to XQ pieces of the
  // activations (and XD {d, s} pairs), all advancing by a fixed stride per stage. Shared
  // addresses are 32-bit; the main loop keeps all of them in registers (keep_in_register).
  const uint32_t s_base = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  uint32_t w_s[2];
  const uint8_t* w_g[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int R = (lane >> 2) + 8 * h, P = lane & 3;
    const int64_t r = min(row0 + R, M - 1);  // rows past M: loaded, never stored
    w_g[h] = W.qs + r * W.qs_stride + static_cast<int64_t>(my_st0) * kPieceRow + P * 16;
    w_s[h] = s_base + static_cast<uint32_t>(warp * KS * 16 * kPieceRow + R * kPieceRow +
                                            ((P ^ ((R >> 1) & 3)) << 4));
  }
  const uint8_t* sc_g = SC > 0 ? W.sc + min(row0 + (lane & 15), M - 1) * W.sc_stride +
                                     static_cast<int64_t>(my_st0) * SC
                               : W.qs;
  uint32_t sc_s = s_base + static_cast<uint32_t>(kWarps * KS * 16 * kPieceRow +
                                                 warp * KS * 16 * SC + (lane & 15) * SC);
  constexpr int kPieces = XB / 16;  // 16-byte pieces of one activation row per stage
  constexpr int XQ = (kKGroups * NC * kPieces + kWarps * 32 - 1) / (kWarps * 32);
  constexpr int XD = (kKGroups * NC * UPS + kWarps * 32 - 1) / (kWarps * 32);
  const int64_t x_row_bytes = QX ? K : 2 * K;
  const uint32_t s_xs = s_base + static_cast<uint32_t>(weight_smem(T, H, NG));
  const uint32_t s_xd = s_xs + static_cast<uint32_t>(KS * kKGroups * NC * x_stride);
  // Piece idx: k-group kg = idx / (NC * kPieces), then row c, piece p; copied while the
  // local stage is below that k-group's count (x_lim; 0 for rows past n).
  const uint8_t* xbase =
      QX ? reinterpret_cast<const uint8_t*>(xq.qs) : reinterpret_cast<const uint8_t*>(xh);
  uint32_t x_s[XQ], x_lim[XQ];
  const uint8_t* x_g[XQ];
#pragma unroll
  for (int q = 0; q < XQ; ++q) {
    const int idx = static_cast<int>(threadIdx.x) + q * kWarps * 32;
    const int kg = idx / (NC * kPieces), rem = idx % (NC * kPieces);
    const int c = rem / kPieces, p = rem % kPieces;
    const int first = st0 + (kg ? n0 : 0);
    const bool ok = kg < kKGroups && c < n;
    x_g[q] = ok ? xbase + c * x_row_bytes + static_cast<int64_t>(first) * XB + p * 16 : xbase;
    x_s[q] = s_xs + static_cast<uint32_t>((kg * NC + c) * x_stride + p * 16);
    x_lim[q] = ok ? static_cast<uint32_t>(kg ? n1 : n0) : 0u;
  }
  uint32_t d_s[XD], d_lim[XD];
  const uint8_t* d_g[XD];
#pragma unroll
  for (int q = 0; q < XD; ++q) {
    const int idx = static_cast<int>(threadIdx.x) + q * kWarps * 32;
    const int kg = idx / (NC * UPS), rem = idx % (NC * UPS);
    const int c = rem / UPS, u = rem % UPS;
    const int first = st0 + (kg ? n0 : 0);
    const bool ok = QX && kg < kKGroups && c < n;
    d_g[q] = ok ? reinterpret_cast<const uint8_t*>(xq.ds + c * (K / 32) +
                                                   static_cast<int64_t>(first) * UPS + u)
                : xbase;
    d_s[q] = s_xd + static_cast<uint32_t>(((kg * UPS + u) * NC + c) * 8);
    d_lim[q] = ok ? static_cast<uint32_t>(kg ? n1 : n0) : 0u;
  }
  auto keep_addresses = [&]() {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      keep_in_register(w_s[h]);
      keep_in_register(w_g[h]);
    }
    keep_in_register(sc_s);
    keep_in_register(sc_g);
#pragma unroll
    for (int q = 0; q < XQ; ++q) {
      keep_in_register(x_s[q]);
      keep_in_register(x_g[q]);
      keep_in_register(x_lim[q]);
    }
    if constexpr (QX) {
#pragma unroll
      for (int q = 0; q < XD; ++q) {
        keep_in_register(d_s[q]);
        keep_in_register(d_g[q]);
        keep_in_register(d_lim[q]);
      }
    }
  };
  // Stage i (of this split) into ring slot `slot`.
  auto issue_w = [&](int i, int slot) {
    if (i >= my_n) return;
    const uint32_t so = static_cast<uint32_t>(slot * 16 * kPieceRow);
    const int64_t go = static_cast<int64_t>(i) * kPieceRow;
#pragma unroll
    for (int h = 0; h < 2; ++h) cp_async16_s(w_s[h] + so, w_g[h] + go);
    if constexpr (SC > 0)
      if (lane < 16)
        cp_async_s<SC>(sc_s + static_cast<uint32_t>(slot * 16 * SC),
                       sc_g + static_cast<int64_t>(i) * SC);
  };
  auto issue_x = [&](int i, int slot) {
    if (i >= n0) return;
    const uint32_t so = static_cast<uint32_t>(slot * kKGroups * NC * x_stride);
    const int64_t go = static_cast<int64_t>(i) * XB;
    const uint32_t iu = static_cast<uint32_t>(i);
#pragma unroll
    for (int q = 0; q < XQ; ++q)
      if (iu < x_lim[q]) cp_async16_l1_s(x_s[q] + so, x_g[q] + go, x_l1);
    if constexpr (QX) {
      const uint32_t sd = static_cast<uint32_t>(slot * kKGroups * UPS * NC * 8);
      const int64_t gd = static_cast<int64_t>(i) * UPS * 8;
#pragma unroll
      for (int q = 0; q < XD; ++q)
        if (iu < d_lim[q]) cp_async_s<8>(d_s[q] + sd, d_g[q] + gd);
    }
  };

  // Rows n..NC-1 of every slot and k-group are zero (never copied into).
  for (int idx = static_cast<int>(threadIdx.x); idx < KS * kKGroups * (NC - n) * (XB / 16);
       idx += kWarps * 32) {
    const int per_slot = (NC - n) * (XB / 16);
    const int sk = idx / per_slot, rem = idx - sk * per_slot;  // sk: slot * kKGroups + kg
    const int c = n + rem / (XB / 16), p = rem % (XB / 16);
    *reinterpret_cast<uint4*>(xs + (sk * NC + c) * x_stride + p * 16) = make_uint4(0, 0, 0, 0);
  }
  if constexpr (QX) {
    for (int idx = static_cast<int>(threadIdx.x); idx < KS * kKGroups * UPS * (NC - n);
         idx += kWarps * 32) {
      const int su = idx / (NC - n), c = n + idx % (NC - n);
      xd[su * NC + c] = make_float2(0.0f, 0.0f);
    }
  }

  // Prologue: the first KS - 2 stages' weights before waiting for the producer of the
  // activations, then their activations; group i holds stage i's activations (group 0
  // also all the prologue's weights).
  for (int i = 0; i < KS - 2; ++i) issue_w(i, i);
  pdl_wait();
  pdl_trigger();
  for (int i = 0; i < KS - 2; ++i) {
    issue_x(i, i);
    cp_async_commit();
  }

  float acc[NG][4];
#pragma unroll
  for (int i = 0; i < NG; ++i)
#pragma unroll
    for (int e = 0; e < 4; ++e) acc[i][e] = 0.0f;

  // ldmatrix row addresses: lane 8m + i gives row i of matrix m.
  const int lm = lane >> 3, li = lane & 7;
  const int aR = (lm & 1) * 8 + li;  // weight row of this lane's A address
  // One stage's products from ring slot `slot`.
  auto stage = [&](const int slot) {
    const uint8_t* wb = wring + slot * 16 * kPieceRow;
    const uint8_t* sb = wsc + slot * 16 * SC;
    const uint8_t* xrow = xs + ((slot * kKGroups + kh) * NC + li) * x_stride;  // B row, group 0
    const float2* xdi = xd + (slot * kKGroups + kh) * UPS * NC;

    if constexpr (H) {
      // A: unit j's nibble words of rows g / g + 8 (a[j >> 1][(j & 1) * 2 + 0 / 1]).
      uint32_t a[2][4];
#pragma unroll
      for (int p = 0; p < 2; ++p) {
        const int P = 2 * p + (lm >> 1);
        ldmatrix_x4(a[p], wb + aR * kPieceRow + ((P ^ ((aR >> 1) & 3)) << 4));
      }
      const uint16_t* sg = reinterpret_cast<const uint16_t*>(sb + g * SC);
      const uint16_t* sg8 = reinterpret_cast<const uint16_t*>(sb + (g + 8) * SC);
#pragma unroll
      for (int j = 0; j < UPS; ++j) {
        // mma k-slots 2t, 2t+1 / 2t+8, 2t+9 of step s hold elements 16s + 4t, +1 / +2, +3.
        uint32_t fa[2][2], fb[2][2];  // [step][pair] of rows g, g + 8
        q4_half_pairs(a[j >> 1][(j & 1) * 2], __half2half2(__ushort_as_half(sg[j])), fa[0][0],
                      fa[0][1], fa[1][0], fa[1][1]);
        q4_half_pairs(a[j >> 1][(j & 1) * 2 + 1], __half2half2(__ushort_as_half(sg8[j])), fb[0][0],
                      fb[0][1], fb[1][0], fb[1][1]);
#pragma unroll
        for (int ng = 0; ng < NG; ++ng) {
          const uint8_t* xr =
              xs + ((slot * kKGroups + kh) * NC + 8 * ng + g) * x_stride + j * 64 + 8 * t;
#pragma unroll
          for (int st2 = 0; st2 < 2; ++st2) {
            const uint2 b = *reinterpret_cast<const uint2*>(xr + 32 * st2);
            mma_f16(acc[ng], fa[st2][0], fb[st2][0], fa[st2][1], fb[st2][1], b.x, b.y);
          }
        }
      }
    } else if constexpr (T == DType::F16) {
      uint32_t a[2][4];
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        const int P = 2 * j + (lm >> 1);
        ldmatrix_x4(a[j], wb + aR * kPieceRow + ((P ^ ((aR >> 1) & 3)) << 4));
      }
      // Every group's B first: the loads' latencies overlap, then the products.
      uint32_t b[NG][4];
#pragma unroll
      for (int ng = 0; ng < NG; ++ng) ldmatrix_x4(b[ng], xrow + ng * 8 * x_stride + lm * 16);
#pragma unroll
      for (int ng = 0; ng < NG; ++ng)
#pragma unroll
        for (int j = 0; j < 2; ++j)
          mma_f16(acc[ng], a[j][0], a[j][1], a[j][2], a[j][3], b[ng][2 * j], b[ng][2 * j + 1]);
    } else {
      // A words: unit j's rows g / g + 8 (Q8_0: and their second halves).
      constexpr int NA = 2;        // weight ldmatrix.x4 per stage
      constexpr int NB = XB / 64;  // activation ldmatrix.x4 per stage and group of 8 rows
      uint32_t a[NA][4];
#pragma unroll
      for (int p = 0; p < NA; ++p) {
        // Q8_0: matrix m = piece 2p + (m >> 1) of rows (m & 1); Q4: unit 2p + (m >> 1).
        const int P = 2 * p + (lm >> 1);
        ldmatrix_x4(a[p], wb + aR * kPieceRow + ((P ^ ((aR >> 1) & 3)) << 4));
      }
      // Per-unit scales of rows g and g + 8.
      float da[UPS], db[UPS], ma[UPS], mb[UPS];
#pragma unroll
      for (int j = 0; j < UPS; ++j) {
        if constexpr (T == DType::Q4_1) {
          const float2 fa =
              half2_bits_to_float2(*reinterpret_cast<const uint32_t*>(sb + g * SC + 4 * j));
          const float2 fb =
              half2_bits_to_float2(*reinterpret_cast<const uint32_t*>(sb + (g + 8) * SC + 4 * j));
          da[j] = fa.x;
          ma[j] = fa.y;
          db[j] = fb.x;
          mb[j] = fb.y;
        } else {
          da[j] = half_bits_to_float(*reinterpret_cast<const uint16_t*>(sb + g * SC + 2 * j));
          db[j] = half_bits_to_float(*reinterpret_cast<const uint16_t*>(sb + (g + 8) * SC + 2 * j));
          ma[j] = mb[j] = 0.0f;
        }
      }
      // Every group's B first: the loads' latencies overlap, then the products.
      uint32_t bb[NG][NB][4];
#pragma unroll
      for (int ng = 0; ng < NG; ++ng)
#pragma unroll
        for (int p = 0; p < NB; ++p)
          ldmatrix_x4(bb[ng][p], xrow + ng * 8 * x_stride + p * 64 + lm * 16);
#pragma unroll
      for (int ng = 0; ng < NG; ++ng) {
        const uint32_t(&b)[NB][4] = bb[ng];
#pragma unroll
        for (int j = 0; j < UPS; ++j) {
          int a0, a1, a2, a3, b0, b1;
          if constexpr (T == DType::Q8_0) {
            a0 = static_cast<int>(a[j][0]);
            a1 = static_cast<int>(a[j][1]);
            a2 = static_cast<int>(a[j][2]);
            a3 = static_cast<int>(a[j][3]);
            b0 = static_cast<int>(b[0][2 * j]);
            b1 = static_cast<int>(b[0][2 * j + 1]);
          } else {
            const uint32_t wa = a[j >> 1][(j & 1) * 2], wbw = a[j >> 1][(j & 1) * 2 + 1];
            a0 = static_cast<int>(wa & 0x0f0f0f0fu);
            a1 = static_cast<int>(wbw & 0x0f0f0f0fu);
            a2 = static_cast<int>((wa >> 4) & 0x0f0f0f0fu);
            a3 = static_cast<int>((wbw >> 4) & 0x0f0f0f0fu);
            b0 = static_cast<int>(b[j >> 1][(j & 1) * 2]);
            b1 = static_cast<int>(b[j >> 1][(j & 1) * 2 + 1]);
          }
          // |sum| <= 32 * 127 * 127 < 2^22: exact through the float bias.
          int s[4];
          mma_s8_k32_biased(s, a0, a1, a2, a3, b0, b1);
          // {dx, sx} of activation rows 8 ng + 2t and 8 ng + 2t + 1 for this unit.
          const float4 xv = *reinterpret_cast<const float4*>(&xdi[j * NC + 8 * ng + 2 * t]);
          const float fs[4] = {unbias(s[0]), unbias(s[1]), unbias(s[2]), unbias(s[3])};
          const float dx[2] = {xv.x, xv.z}, sx[2] = {xv.y, xv.w};
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const float d = e < 2 ? da[j] : db[j];
            const int c = e & 1;
            // The GEMV's arithmetic per unit (qweight.cuh combine_unit).
            if constexpr (T == DType::Q8_0) {
              acc[ng][e] += d * dx[c] * fs[e];
            } else if constexpr (T == DType::Q4_0) {
              acc[ng][e] += d * (dx[c] * fs[e] - 8.0f * sx[c]);
            } else {
              const float m = e < 2 ? ma[j] : mb[j];
              acc[ng][e] += d * dx[c] * fs[e] + m * sx[c];
            }
          }
        }
      }
    }
  };

  // Two stages per barrier: the second stage's fragment loads overlap the first one's
  // arithmetic, and the barrier (all warps done with the slots refilled next) is paid once.
  // Committed before iteration i: KS - 2 + i groups; stages i, i + 1 are groups i, i + 1.
  for (int i = 0, slot = 0; i < n0; i += 2, slot = (slot + 2) % KS) {
    keep_addresses();
    cp_async_wait<KS - 4>();
    __syncthreads();
    const int f0 = (slot + KS - 2) % KS, f1 = (slot + KS - 1) % KS;  // stages i+KS-2, i+KS-1
    issue_w(i + KS - 2, f0);
    issue_x(i + KS - 2, f0);
    cp_async_commit();
    issue_w(i + KS - 1, f1);
    issue_x(i + KS - 1, f1);
    cp_async_commit();
    if (i < my_n) stage(slot);
    if (i + 1 < my_n) stage(slot + 1 == KS ? 0 : slot + 1);
  }

  // k-group 1 hands its sums to k-group 0 through the (now idle) rings: sum = S0 + S1.
  float* red = reinterpret_cast<float*>(smem);  // (kRowWarps, 32, NG * 4)
  if constexpr (kKGroups == 2) {
    cp_async_wait<0>();
    __syncthreads();
    if (kh == 1) {
#pragma unroll
      for (int ng = 0; ng < NG; ++ng)
#pragma unroll
        for (int e = 0; e < 4; ++e) red[(rw * 32 + lane) * NG * 4 + ng * 4 + e] = acc[ng][e];
    }
    __syncthreads();
    if (kh == 0) {
#pragma unroll
      for (int ng = 0; ng < NG; ++ng)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[ng][e] += red[(rw * 32 + lane) * NG * 4 + ng * 4 + e];
    }
  }

  // Epilogues (matmul_skinny_epilogue.cuh): the tile's sums meet in shared memory (the
  // rings are idle), gl (64, NC + 1), then the SwiGLU or q/k/v outputs are written.
  const sk::Out o{.y = sk::pick(jobs.y, j),
                  .ldy = ldy,
                  .accumulate = accumulate,
                  .S = S,
                  .partial = partial,
                  .RT = RT,
                  .row_off = sk::pick(jobs.row_off, j),
                  .n = n,
                  .M = M};
  if (jobs.glu || sk::pick(jobs.epi, j) != Epilogue::None) {
    cp_async_wait<0>();
    __syncthreads();
    float* gl = reinterpret_cast<float*>(smem);
    if (kh == 0) tile_sums_to_shared<NG>(gl, acc, rw, lane);
    __syncthreads();
    sk::finish_epilogue(gl, NC, jobs, j, tile0, o, warp, kWarps);
    return;
  }
  if (kh == 0) sk::store_fragments<NG>(acc, row0, lane, o);
  if (S == 1 || !last_split_arrival(counters, S, last)) return;
  sk::split_sum<2>(o, tile0, halves, counters, kWarps * 32);
}

struct Split {
  int splits = 1;
  int total = 0;  // stages of a row
};

// Column-parallel products (split_k false) keep K whole: fused q/k/v and gate/up have
// tiles enough to fill the GPU. Long-K products with few rows (split_k: wo, w_down) are
// split until the grid has about cfg.target_ctas CTAs: a function of their tiles and K,
// which a tensor-parallel rank shares (row-parallel: same rows, its slice of K). Halves:
// an even count whose first half covers exactly the first half of K, split as the rank
// holding that half would. Neither depends on n: a row's sums are the same whatever
// shares the step.
Split split_of(DType T, int64_t cols, int64_t tiles, const MmSkConfig& cfg, bool split_k,
               bool halves) {
  Split s;
  s.total = static_cast<int>(cols / stage_elems(T));
  auto splits = [&](int total) {
    int64_t want = 1;
    if (split_k) want = ceil_div(cfg.target_ctas, tiles);
    if (!split_k && cfg.col_split_elems > 0)
      want = ceil_div(total, std::max(1, cfg.col_split_elems / stage_elems(T)));
    return static_cast<int>(std::clamp<int64_t>(want, 1, total));
  };
  s.splits = halves && s.total % 2 == 0 ? 2 * splits(s.total / 2) : splits(s.total);
  return s;
}

template <DType T, int NG, bool H>
size_t smem_bytes() {
  return static_cast<size_t>(weight_smem(T, H, NG)) +
         static_cast<size_t>(ring_stages(T, H, NG)) * k_groups(NG) * 8 * NG *
             (x_stride_of(T, H) + stage_xd_bytes(T, H));
}

template <DType T, int NG, bool H>
void launch_ng(const MmSkArgs& a, const Jobs& jobs, int tiles, int n, const ActQ8& xq,
               const __half* xh, int c0, cudaStream_t stream) {
  const Split s = split_of(T, a.W[0]->cols, tiles, a.cfg, a.split_k, a.k_halves);
  if (s.splits > 1 && (!a.ws.partial || !a.ws.counters))
    throw Error("mm_sk: a split product needs a workspace");
  if (s.splits > 1 && jobs.glu) throw Error("mm_sk: the SwiGLU mode keeps K whole");
  for (int i = 0; i < a.n_jobs; ++i)
    if (s.splits > 1 && a.epilogue[i] != Epilogue::None)
      throw Error("mm_sk: an epilogue keeps K whole");
  Jobs jc = jobs;
  for (int i = 0; i < a.n_jobs; ++i) jc.y[i] = a.y[i] ? a.y[i] + c0 * a.ldy : nullptr;
  for (int i = 0; i < a.n_jobs; ++i)  // a later pass: its rows' positions and slots
    if (c0 > 0 && jc.epi[i] != Epilogue::None) {
      if (jc.rope[i].positions) jc.rope[i].positions += c0;
      if (jc.rope[i].slots) jc.rope[i].slots += c0;
      if (jc.rope[i].cs) jc.rope[i].cs += static_cast<int64_t>(c0) * (jc.rope[i].rope_dim / 2);
    }
  if (jc.glu && c0 > 0) {  // a later pass: its activation rows of the output
    const int64_t off = static_cast<int64_t>(c0) * a.W[0]->rows;
    ActOut& o = jc.glu_out;
    if (o.f32) o.f32 += off;
    if (o.f16) o.f16 += off;
    if (o.q8.qs) {
      o.q8.qs += off;
      o.q8.ds += off / 32;
    }
  }
  // The kernels that take f16 activations: the fields they share.
  auto half_launch = [&](int total, bool halves) {
    sk::HalfLaunch l;
    l.jobs = jc;
    l.n_jobs = a.n_jobs;
    l.tiles = tiles;
    l.splits = s.splits;
    l.total = total;
    l.n = n;
    l.bufs = a.cfg.reg_bufs;
    l.x_slots = a.cfg.reg_x_slots;
    l.x_l1 = a.cfg.reg_x_l1;
    l.xh = xh;
    l.ldy = a.ldy;
    l.accumulate = a.accumulate;
    l.halves = halves;
    l.partial = a.ws.partial;
    l.counters = a.ws.counters;
    return l;
  };
  const bool halves = s.splits > 1 && a.k_halves;
  if constexpr (T == DType::F16) {
    // Halves: the kernel's stages split in two at K / 2 exactly.
    if (a.cfg.f16_wgmma && a.W[0]->cols % (halves ? 128 : 64) == 0) {
      sk::launch_f16wg(half_launch(sk::f16wg_stages(a.W[0]->cols), halves), stream);
      return;
    }
  }
  if constexpr (H) {
    bool fits = true;
    for (int i = 0; i < a.n_jobs; ++i) fits = fits && sk::q4r_fits(*a.W[i]);
    if (a.cfg.reg_weights && fits && n > kSkHalfFrom && n <= kSkRegMaxRows) {  // this pass's rows
      sk::launch_q4r(half_launch(s.total, halves), stream);
      return;
    }
  }
  const size_t smem = smem_bytes<T, NG, H>();
  CUDA_CHECK(cudaFuncSetAttribute(
      mm_sk_kernel<T, NG, H>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  const dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>(s.splits));
  launch(mm_sk_kernel<T, NG, H>, grid, kRowWarps * k_groups(NG) * 32, smem, stream, jc, xq, xh, n,
         a.ldy, a.accumulate, s.total, halves, a.ws.partial, a.ws.counters, a.cfg.ring_x_l1);
  CUDA_CHECK_LAUNCH();
}

// The half mode exists for Q4_0 only (no kernels of it for the other types).
template <DType T, int NG>
void launch_half(const MmSkArgs& a, const Jobs& jobs, int tiles, int n, const ActQ8& xq,
                 const __half* xh, int c0, cudaStream_t stream) {
  if constexpr (T == DType::Q4_0) launch_ng<T, NG, true>(a, jobs, tiles, n, xq, xh, c0, stream);
}

template <DType T>
void launch_type(const MmSkArgs& a, const Jobs& jobs, int tiles, int n, const ActQ8& xq,
                 const __half* xh, int c0, cudaStream_t stream) {
  // The half mode by the pass's row count (a pass of the rows past 64 may differ).
  const bool half = T == DType::Q4_0 && mm_sk_half(*a.W[0], a.n);
  switch ((n + 7) / 8) {
#define LLM_NG(G)                                                    \
  case G:                                                            \
    if (half)                                                        \
      launch_half<T, G>(a, jobs, tiles, n, xq, xh, c0, stream);      \
    else                                                             \
      launch_ng<T, G, false>(a, jobs, tiles, n, xq, xh, c0, stream); \
    break;
    LLM_NG(1)
    LLM_NG(2)
    LLM_NG(3)
    LLM_NG(4)
    LLM_NG(5)
    LLM_NG(6)
    LLM_NG(7)
    LLM_NG(8)
#undef LLM_NG
    default:
      break;
  }
}

}  // namespace

bool mm_sk_supported(const DevMatrix& W) {
  const DType T = W.type;
  if (T != DType::F16 && T != DType::Q8_0 && T != DType::Q4_0 && T != DType::Q4_1) return false;
  auto aligned = [](const void* p, int64_t stride, int64_t a) {
    return reinterpret_cast<uintptr_t>(p) % a == 0 && stride % a == 0;
  };
  return W.cols % stage_elems(T) == 0 && W.rows > 0 && aligned(W.qs, W.qs_stride, 16) &&
         (stage_sc_bytes(T) == 0 || aligned(W.sc, W.sc_stride, stage_sc_bytes(T)));
}

bool mm_sk_half(const DevMatrix& W, int n) {
  return W.type == DType::Q4_0 && n > kSkHalfFrom;
}

bool mm_sk_wants_q8(const DevMatrix& W, int n) {
  return W.type != DType::F16 && !mm_sk_half(W, n);
}

int mm_sk_splits(const DevMatrix& W, const MmSkConfig& cfg, bool split_k, bool k_halves) {
  return split_of(W.type, W.cols, ceil_div(W.rows, kTileRows), cfg, split_k, k_halves).splits;
}

size_t mm_sk_partial_floats(const DevMatrix& W, int64_t rows_total, const MmSkConfig& cfg) {
  size_t most = 0;
  const int64_t tiles = ceil_div(W.rows, kTileRows);
  for (bool split_k : {false, true})
    for (bool h : {false, true})
      most = std::max(most,
                      static_cast<size_t>(split_of(W.type, W.cols, tiles, cfg, split_k, h).splits) *
                          kSkMaxCols * rows_total);
  return most;
}

size_t mm_sk_tiles(const DevMatrix& W) {
  return static_cast<size_t>(ceil_div(W.rows, kTileRows));
}

void mm_sk(const MmSkArgs& a, cudaStream_t stream) {
  if (a.n <= 0) return;
  if (a.n_jobs < 1 || a.n_jobs > kSkMaxJobs) throw Error("mm_sk: 1 to 3 matrices per launch");
  const DevMatrix& W0 = *a.W[0];
  Jobs jobs{};
  int tiles = 0;
  int64_t rows = 0;
  for (int i = 0; i < a.n_jobs; ++i) {
    const DevMatrix& W = *a.W[i];
    if (!mm_sk_supported(W))
      throw Error(std::string("mm_sk: unsupported weights ") + dtype_name(W.type));
    if (W.type != W0.type || W.cols != W0.cols)
      throw Error("mm_sk: the matrices of one launch need one type and width");
    jobs.W[i] = W;
    jobs.row_off[i] = rows;
    tiles += static_cast<int>(ceil_div(W.rows, kTileRows));
    rows += W.rows;
  }
  int acc_tiles = 0;
  for (int i = 0; i < kSkMaxJobs; ++i) {  // jobs past n_jobs end at the last tile: never picked
    if (i < a.n_jobs) acc_tiles += static_cast<int>(ceil_div(a.W[i]->rows, kTileRows));
    jobs.tile_end[i] = acc_tiles;
  }
  jobs.rows_total = rows;
  for (int i = 0; i < a.n_jobs; ++i) {
    jobs.epi[i] = a.epilogue[i];
    jobs.rope[i] = a.rope[i];
    if (a.epilogue[i] != Epilogue::None && (a.W[i]->rows % 2 != 0 || a.rope[i].head_dim % 2 != 0))
      throw Error("mm_sk: the RoPE epilogue needs even rows and head dimension");
  }
  if (a.glu) {
    if (a.n_jobs != 2 || a.W[1]->rows != W0.rows || W0.rows % 32 != 0)
      throw Error("mm_sk: the SwiGLU mode takes gate and up of one shape, rows divisible by 32");
    jobs.glu = true;
    jobs.glu_out = a.glu_out;
    tiles = static_cast<int>(W0.rows / 32);
  }
  const int64_t k = W0.cols;
  for (int c0 = 0; c0 < a.n; c0 += kSkMaxCols) {
    const int n = std::min(a.n - c0, kSkMaxCols);
    ActQ8 xq = a.x_q8;
    if (xq.qs) {
      xq.qs += c0 * k;
      xq.ds += c0 * (k / 32);
    }
    const __half* xh = a.x_f16 ? a.x_f16 + c0 * k : nullptr;
    switch (W0.type) {
      case DType::F16:
        launch_type<DType::F16>(a, jobs, tiles, n, xq, xh, c0, stream);
        break;
      case DType::Q8_0:
        launch_type<DType::Q8_0>(a, jobs, tiles, n, xq, xh, c0, stream);
        break;
      case DType::Q4_0:
        launch_type<DType::Q4_0>(a, jobs, tiles, n, xq, xh, c0, stream);
        break;
      case DType::Q4_1:
        launch_type<DType::Q4_1>(a, jobs, tiles, n, xq, xh, c0, stream);
        break;
      default:
        break;
    }
  }
}

}  // namespace llm::cuda
