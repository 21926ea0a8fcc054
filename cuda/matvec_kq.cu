// Decode GEMV kernels for Q4_K/Q5_K, Q6_K and Q8_0 that hold fewer registers per byte in
// flight than the generic unit kernel of cuda/matvec_quant.cu (MatvecVariant selects
// them). As there, a warp owns two consecutive rows, a software pipeline keeps the next U
// slots of weights loading while the current ones are used, and finish() reduces.
//
// k-quants: lane l takes unit u0 + l of a 32-unit slot, i.e. sub-block j = l & 7 of the
//   slot's super-block l >> 3, so one 16-byte load per lane covers 512 contiguous bytes.
//   The slot's four super-blocks carry 64 bytes of scales per row; the generic kernel has
//   every lane hold the whole 16-byte block of its unit (4 registers per unit and row in
//   flight, each block fetched by 8 lanes). Here each lane loads one 32-bit word of them
//   for both rows (lanes 0-15 row 0, lanes 16-31 row 1) — 1 register per slot — and the
//   lanes that need a word get it by shuffle when the slot is used.
// Q8_0: lanes 2k and 2k+1 take the two 16-byte halves of unit u0 + k, so one load covers
//   512 contiguous bytes. The generic kernel's lane reads its unit's 32 bytes with two
//   16-byte loads, each touching every 32-byte sector of the warp's 1 KiB half-used (with
//   L1 bypassed, every sector crosses from L2 twice), and each lane needs twice the
//   activation registers.
#include "cuda/matvec_jobs.cuh"
#include "cuda/qweight.cuh"

namespace llm::cuda::mv {
namespace {

// Loads of data read once per step, bypassing L1 (kept for the activations).
__device__ __forceinline__ uint32_t ld4_stream(const void* p) {
  uint32_t r;
  asm volatile("ld.global.nc.L1::no_allocate.u32 %0, [%1];" : "=r"(r) : "l"(p));
  return r;
}
__device__ __forceinline__ uint2 ld8_stream(const void* p) {
  uint2 r;
  asm volatile("ld.global.nc.L1::no_allocate.v2.u32 {%0,%1}, [%2];"
               : "=r"(r.x), "=r"(r.y)
               : "l"(p));
  return r;
}
__device__ __forceinline__ uint32_t ld2_stream(const void* p) {
  unsigned short r;
  asm volatile("ld.global.nc.L1::no_allocate.u16 %0, [%1];" : "=h"(r) : "l"(p));
  return r;
}

__device__ __forceinline__ uint32_t shfl(uint32_t v, int src) {
  return __shfl_sync(0xffffffffu, v, src);
}

// One column's q8 activation block u: 8 words of int8 and {d, d * sum(q)}.
struct XBlock {
  int xi[8];
  float2 ds;
};
__device__ __forceinline__ XBlock load_x(const ActQ8& x, int c, int64_t cols, int u) {
  const int8_t* xq = x.qs + c * cols + u * 32;
  const uint4 a = ld16(xq), b = ld16(xq + 16);
  XBlock r;
  r.xi[0] = static_cast<int>(a.x);
  r.xi[1] = static_cast<int>(a.y);
  r.xi[2] = static_cast<int>(a.z);
  r.xi[3] = static_cast<int>(a.w);
  r.xi[4] = static_cast<int>(b.x);
  r.xi[5] = static_cast<int>(b.y);
  r.xi[6] = static_cast<int>(b.z);
  r.xi[7] = static_cast<int>(b.w);
  r.ds = __ldg(x.ds + c * (cols / 32) + u);
  return r;
}

// The pipeline every kernel here runs: the first slot's weights load before the wait for
// the producer (constant data), then each slot's successor loads while it is used.
template <typename Stage, typename Load, typename Use>
__device__ __forceinline__ void stream_slots(const Load& load, const Use& use, int nu, int step) {
  Stage w;
  load(w, 0);
  pdl_wait();
  pdl_trigger();
  for (int u0 = 0; u0 < nu; u0 += step) {
    Stage next;
    if (u0 + step < nu) load(next, u0 + step);
    use(w, u0);
    w = next;
  }
}

// --- Q4_K, Q5_K ------------------------------------------------------------------------
// Rows r0 and r0 + 1 (clamped: a tail row is recomputed, not stored) of job j.
template <DType T, int NC, int U>
__device__ __forceinline__ void rows_k4(const Jobs& J, int j, int64_t r0, const ActQ8& x, int n) {
  const int lane = threadIdx.x & 31;
  const DevMatrix& W = J.job[j].W;
  const int nu = static_cast<int>(W.cols / 32);  // units per row
  const int64_t row[2] = {r0, min(r0 + 1, W.rows - 1)};
  const uint8_t* qs[2];
  const uint8_t* qh[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    qs[r] = W.qs + row[r] * W.qs_stride + lane * 16;
    qh[r] = T == DType::Q5_K ? W.qh + row[r] * W.qh_stride + lane * 4 : nullptr;
  }
  // This lane's scale word: row lane >> 4, word lane & 15 of the slot's 4 super-blocks,
  // which start at unit sb_unit of the slot.
  const uint8_t* sbp = W.sb + row[lane >> 4] * W.sb_stride + (lane & 15) * 4;
  const int sb_unit = ((lane & 15) >> 2) * 8;

  struct Stage {
    uint4 q[U][2];     // 16 B of nibbles of unit (slot i, row r)
    uint32_t h[U][2];  // Q5_K: fifth bits of that unit
    uint32_t sb[U];    // the lane's scale word of slot i
  };
  auto load = [&](Stage& s, int u0) {
#pragma unroll
    for (int i = 0; i < U; ++i) {
      const int ub = u0 + 32 * i;  // warp-uniform
      if (ub >= nu) break;
      if (ub + lane < nu) {
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          s.q[i][r] = ld16_stream(qs[r] + ub * 16);
          if constexpr (T == DType::Q5_K) s.h[i][r] = ld4_stream(qh[r] + ub * 4);
        }
      }
      s.sb[i] = ub + sb_unit < nu ? ld4_stream(sbp + ub * 2) : 0u;
    }
  };

  // Sub-block j = lane & 7 of a super-block (ggml's get_scale_min_k4): j < 4 takes the
  // low 6 bits of bytes j of words 1 and 2, j >= 4 the nibbles of byte j - 4 of word 3
  // and the top 2 bits of bytes j - 4 of words 1 and 2.
  const int shift = 8 * (lane & 3);
  const bool upper = (lane & 4) != 0;
  float acc[2][NC];
#pragma unroll
  for (int r = 0; r < 2; ++r)
#pragma unroll
    for (int c = 0; c < NC; ++c) acc[r][c] = 0.0f;

  auto use = [&](const Stage& s, int u0) {
#pragma unroll
    for (int i = 0; i < U; ++i) {
      const int ub = u0 + 32 * i;
      if (ub >= nu) break;
      float dsc[2], dmn[2];  // d * scale and dmin * min of this lane's sub-block
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const int src = 16 * r + 4 * (lane >> 3);  // word 0 of this lane's super-block
        const uint32_t w0 = shfl(s.sb[i], src);
        const uint32_t w1 = shfl(s.sb[i], src + 1) >> shift;
        const uint32_t w2 = shfl(s.sb[i], src + 2) >> shift;
        const uint32_t w3 = shfl(s.sb[i], src + 3) >> shift;
        const uint32_t sc = upper ? (w3 & 0xfu) | ((w1 >> 2) & 0x30u) : w1 & 63u;
        const uint32_t mn = upper ? ((w3 >> 4) & 0xfu) | ((w2 >> 2) & 0x30u) : w2 & 63u;
        const float2 dd = half2_bits_to_float2(w0);
        dsc[r] = __fmul_rn(dd.x, static_cast<float>(sc));
        dmn[r] = __fmul_rn(dd.y, static_cast<float>(mn));
      }
      const int u = ub + lane;
      if (u < nu) {
        Unit w[2];
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          w[r].q = s.q[i][r];
          w[r].h0 = s.h[i][r];
        }
#pragma unroll
        for (int c = 0; c < NC; ++c) {
          if (c >= n) break;
          const XBlock xb = load_x(x, c, W.cols, u);
#pragma unroll
          for (int r = 0; r < 2; ++r) {
            int s0 = 0, s1 = 0;
#pragma unroll
            for (int k = 0; k < 4; ++k) {
              int lo, hi;
              unit_word_pair<T>(w[r], k, lo, hi);
              s0 = dp4a(lo, xb.xi[k], s0);
              s1 = dp4a(hi, xb.xi[4 + k], s1);
            }
            // explicit roundings: the same bits in every kernel instance (batch invariance)
            const float a =
                __fmaf_rn(__fmul_rn(dsc[r], xb.ds.x), static_cast<float>(s0 + s1), acc[r][c]);
            acc[r][c] = __fmaf_rn(-dmn[r], xb.ds.y, a);
          }
        }
      }
    }
  };

  stream_slots<Stage>(load, use, nu, 32 * U);
  finish<2, NC>(J.job[j], r0, n, acc);
}

// --- Q6_K ------------------------------------------------------------------------------
// Scales as for Q4_K (one word of the slot's int8 scales[16] per lane and row half);
// sub-block j of a super-block needs scales 2j, 2j+1: half (j & 1) of word j >> 1, held by
// lane 16 r + (lane >> 1). The f16 d of the U slots' super-blocks (U * 2 rows * 4 values)
// is one 2-byte load per lane of the first 8 U lanes.
// The quants are used unsigned (0..63) in the dot products; the offset of 32 comes back
// as 32 * sum(x) over each half of the activation block, computed once for both rows —
// except with more than 4 columns, where that sum would cost more than centring the
// weights (two operations per word and row).
template <int NC, int U>
__device__ __forceinline__ void rows_q6(const Jobs& J, int j, int64_t r0, const ActQ8& x, int n) {
  static_assert(U <= 4, "the d loads use 8 lanes per slot");
  constexpr bool kCentre = NC > 4;
  const int lane = threadIdx.x & 31;
  const DevMatrix& W = J.job[j].W;
  const int nu = static_cast<int>(W.cols / 32);  // units per row
  const int64_t row[2] = {r0, min(r0 + 1, W.rows - 1)};
  const uint8_t* qs[2];
  const uint8_t* qh[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    qs[r] = W.qs + row[r] * W.qs_stride + lane * 16;
    qh[r] = W.qh + row[r] * W.qh_stride + lane * 8;
  }
  const uint8_t* sbp = W.sb + row[lane >> 4] * W.sb_stride + (lane & 15) * 4;
  const int sb_unit = ((lane & 15) >> 2) * 8;
  // d loads: lane l < 8 U takes slot l >> 3, row (l >> 2) & 1, super-block l & 3.
  const int d_slot = lane >> 3;
  const uint8_t* dp = W.sc + row[(lane >> 2) & 1] * W.sc_stride + d_slot * 8 + (lane & 3) * 2;
  const int d_unit = 32 * d_slot + 8 * (lane & 3);

  struct Stage {
    uint4 q[U][2];   // low nibbles of unit (slot i, row r)
    uint2 h[U][2];   // its high pairs
    uint32_t sb[U];  // the lane's scale word of slot i
    uint32_t d;      // f16 bits of one super-block's d (lanes < 8 U)
  };
  auto load = [&](Stage& s, int u0) {
#pragma unroll
    for (int i = 0; i < U; ++i) {
      const int ub = u0 + 32 * i;
      if (ub >= nu) break;
      if (ub + lane < nu) {
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          s.q[i][r] = ld16_stream(qs[r] + ub * 16);
          s.h[i][r] = ld8_stream(qh[r] + ub * 8);
        }
      }
      s.sb[i] = ub + sb_unit < nu ? ld4_stream(sbp + ub * 2) : 0u;
    }
    s.d = d_slot < U && u0 + d_unit < nu ? ld2_stream(dp + u0 / 4) : 0u;
  };

  const int half_shift = 16 * (lane & 1);
  float acc[2][NC];
#pragma unroll
  for (int r = 0; r < 2; ++r)
#pragma unroll
    for (int c = 0; c < NC; ++c) acc[r][c] = 0.0f;

  auto use = [&](const Stage& s, int u0) {
#pragma unroll
    for (int i = 0; i < U; ++i) {
      const int ub = u0 + 32 * i;
      if (ub >= nu) break;
      int sc0[2], sc1[2];
      float d[2];
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const uint32_t sw = shfl(s.sb[i], 16 * r + (lane >> 1)) >> half_shift;
        sc0[r] = static_cast<int8_t>(sw & 0xffu);
        sc1[r] = static_cast<int8_t>((sw >> 8) & 0xffu);
        d[r] = half_bits_to_float(
            static_cast<uint16_t>(shfl(s.d, 8 * i + 4 * r + (lane >> 3)) & 0xffffu));
      }
      const int u = ub + lane;
      if (u < nu) {
#pragma unroll
        for (int c = 0; c < NC; ++c) {
          if (c >= n) break;
          const XBlock xb = load_x(x, c, W.cols, u);
          int sx0 = 0, sx1 = 0;  // sums of the two halves of the activation block
          if constexpr (!kCentre) {
#pragma unroll
            for (int k = 0; k < 4; ++k) {
              sx0 = dp4a(xb.xi[k], 0x01010101, sx0);
              sx1 = dp4a(xb.xi[4 + k], 0x01010101, sx1);
            }
          }
#pragma unroll
          for (int r = 0; r < 2; ++r) {
            int s0 = 0, s1 = 0;
#pragma unroll
            for (int k = 0; k < 4; ++k) {
              const uint32_t wq = word_of(s.q[i][r], k);
              uint32_t lo = (wq & 0x0f0f0f0fu) | (((s.h[i][r].x >> (2 * k)) & 0x03030303u) << 4);
              uint32_t hi =
                  ((wq >> 4) & 0x0f0f0f0fu) | (((s.h[i][r].y >> (2 * k)) & 0x03030303u) << 4);
              if constexpr (kCentre) {
                // q - 32 per byte (q <= 63: adding 0x60 cannot carry; the xor flips the
                // sign bit, giving q + 96 - 128)
                lo = (lo + 0x60606060u) ^ 0x80808080u;
                hi = (hi + 0x60606060u) ^ 0x80808080u;
              }
              s0 = dp4a(static_cast<int>(lo), xb.xi[k], s0);
              s1 = dp4a(static_cast<int>(hi), xb.xi[4 + k], s1);
            }
            const int isum = sc0[r] * (s0 - 32 * sx0) + sc1[r] * (s1 - 32 * sx1);
            acc[r][c] = __fmaf_rn(__fmul_rn(d[r], xb.ds.x), static_cast<float>(isum), acc[r][c]);
          }
        }
      }
    }
  };

  stream_slots<Stage>(load, use, nu, 32 * U);
  finish<2, NC>(J.job[j], r0, n, acc);
}

// --- Q8_0 ------------------------------------------------------------------------------
// A slot is 16 units (512 bytes of quants) per row: lane l holds half l & 1 of unit
// u0 + (l >> 1) and its f16 d (the two lanes of a unit load the same 2 bytes).
template <int NC, int U>
__device__ __forceinline__ void rows_q8(const Jobs& J, int j, int64_t r0, const ActQ8& x, int n) {
  const int lane = threadIdx.x & 31;
  const DevMatrix& W = J.job[j].W;
  const int nu = static_cast<int>(W.cols / 32);  // units per row
  const int64_t row[2] = {r0, min(r0 + 1, W.rows - 1)};
  const int unit = lane >> 1, half = lane & 1;
  const uint8_t* qs[2];
  const uint8_t* sc[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    qs[r] = W.qs + row[r] * W.qs_stride + lane * 16;
    sc[r] = W.sc + row[r] * W.sc_stride + unit * 2;
  }
  struct Stage {
    uint4 q[U][2];     // half of unit (slot i, row r)
    uint32_t d[U][2];  // f16 bits of its d
  };
  auto load = [&](Stage& s, int u0) {
#pragma unroll
    for (int i = 0; i < U; ++i) {
      const int ub = u0 + 16 * i;
      if (ub >= nu) break;
      if (ub + unit < nu) {
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          s.q[i][r] = ld16_stream(qs[r] + ub * 32);
          s.d[i][r] = ld2_stream(sc[r] + ub * 2);
        }
      }
    }
  };
  float acc[2][NC];
#pragma unroll
  for (int r = 0; r < 2; ++r)
#pragma unroll
    for (int c = 0; c < NC; ++c) acc[r][c] = 0.0f;

  auto use = [&](const Stage& s, int u0) {
#pragma unroll
    for (int i = 0; i < U; ++i) {
      const int ub = u0 + 16 * i;
      if (ub >= nu) break;
      const int u = ub + unit;
      if (u >= nu) continue;  // no shuffles below: lanes may leave
      float d[2];
#pragma unroll
      for (int r = 0; r < 2; ++r) d[r] = half_bits_to_float(static_cast<uint16_t>(s.d[i][r]));
#pragma unroll
      for (int c = 0; c < NC; ++c) {
        if (c >= n) break;
        const uint4 xv = ld16(x.qs + c * W.cols + u * 32 + half * 16);
        const float xd = __ldg(&x.ds[c * nu + u].x);
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          const uint4& q = s.q[i][r];
          int s0 = dp4a(static_cast<int>(q.x), static_cast<int>(xv.x), 0);
          int s1 = dp4a(static_cast<int>(q.y), static_cast<int>(xv.y), 0);
          s0 = dp4a(static_cast<int>(q.z), static_cast<int>(xv.z), s0);
          s1 = dp4a(static_cast<int>(q.w), static_cast<int>(xv.w), s1);
          acc[r][c] = __fmaf_rn(__fmul_rn(d[r], xd), static_cast<float>(s0 + s1), acc[r][c]);
        }
      }
    }
  };

  stream_slots<Stage>(load, use, nu, 16 * U);
  finish<2, NC>(J.job[j], r0, n, acc);
}

template <DType T, int NC, int U>
__device__ __forceinline__ void rows_of(const Jobs& J, int j, int64_t r0, const ActQ8& x, int n) {
  if constexpr (T == DType::Q8_0)
    rows_q8<NC, U>(J, j, r0, x, n);
  else if constexpr (T == DType::Q6_K)
    rows_q6<NC, U>(J, j, r0, x, n);
  else
    rows_k4<T, NC, U>(J, j, r0, x, n);
}

template <DType T, int NC, int U, int MinBlocks>
__global__ void __launch_bounds__(kWarps * 32, MinBlocks) kq_kernel(Jobs J, ActQ8 x, int n) {
  const int64_t g = static_cast<int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  int j;
  int64_t r0;
  if (!locate<2>(J, g, j, r0)) return;
  rows_of<T, NC, U>(J, j, r0, x, n);
}

// Jobs of two k-quant types in one launch: each warp takes its job's path (warp-uniform).
template <DType T0, DType T1, int NC, int U, int MinBlocks>
__global__ void __launch_bounds__(kWarps * 32, MinBlocks) kq_mixed_kernel(Jobs J, ActQ8 x, int n) {
  const int64_t g = static_cast<int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  int j;
  int64_t r0;
  if (!locate<2>(J, g, j, r0)) return;
  if (J.job[j].W.type == T1)
    rows_of<T1, NC, U>(J, j, r0, x, n);
  else
    rows_of<T0, NC, U>(J, j, r0, x, n);
}

constexpr int kSlots = 2;  // U: slots in flight per lane and row (plus as many loading)

// Register caps as resident CTAs (of 4 warps) per SM: 6 = at most 80 registers, 24 warps,
// as the Q4_0 kernel; Q6_K holds 6 more bytes per unit and row: 5 = 96 registers, 20 warps.
// Uncapped, ptxas takes 95-125 (more independent work per warp, fewer warps).
constexpr int min_blocks(DType t0, DType t1) {
  return t0 == DType::Q6_K || t1 == DType::Q6_K ? 5 : 6;
}

template <DType T0, DType T1, int NC, int U, int MinBlocks>
void launch_one(const Jobs& J, const ActQ8& x, int n, cudaStream_t stream) {
  const unsigned blocks = static_cast<unsigned>(ceil_div(J.group_start[J.n_jobs], kWarps));
  if constexpr (T0 == T1)
    launch(kq_kernel<T0, NC, U, MinBlocks>, blocks, kWarps * 32, 0, stream, J, x, n);
  else
    launch(kq_mixed_kernel<T0, T1, NC, U, MinBlocks>, blocks, kWarps * 32, 0, stream, J, x, n);
  CUDA_CHECK_LAUNCH();
}

// The comparison kernels (MatvecVariant::uncapped, q8_deep) exist for one column only:
// batch-1 decode is what they are measured on.
template <DType T0, DType T1, int NC>
void launch_capped(const Jobs& J, const ActQ8& x, int n, const MatvecVariant& v,
                   cudaStream_t stream) {
  if constexpr (NC == 1 && T0 == DType::Q8_0) {
    if (v.q8_deep) return launch_one<T0, T1, NC, 4, 6>(J, x, n, stream);
  } else if constexpr (NC == 1) {
    if (v.uncapped) return launch_one<T0, T1, NC, kSlots, 1>(J, x, n, stream);
  }
  launch_one<T0, T1, NC, kSlots, min_blocks(T0, T1)>(J, x, n, stream);
}

template <int NC>
void launch_nc(const Jobs& J, DType t0, DType t1, const ActQ8& x, int n, const MatvecVariant& v,
               cudaStream_t stream) {
  using D = DType;
  const auto is = [&](D a, D b) { return t0 == a && t1 == b; };
  if (is(D::Q4_K, D::Q4_K))
    launch_capped<D::Q4_K, D::Q4_K, NC>(J, x, n, v, stream);
  else if (is(D::Q5_K, D::Q5_K))
    launch_capped<D::Q5_K, D::Q5_K, NC>(J, x, n, v, stream);
  else if (is(D::Q6_K, D::Q6_K))
    launch_capped<D::Q6_K, D::Q6_K, NC>(J, x, n, v, stream);
  else if (is(D::Q8_0, D::Q8_0))
    launch_capped<D::Q8_0, D::Q8_0, NC>(J, x, n, v, stream);
  else if (is(D::Q4_K, D::Q6_K))  // pairs ordered by type id: Q4_K < Q5_K < Q6_K
    launch_capped<D::Q4_K, D::Q6_K, NC>(J, x, n, v, stream);
  else if (is(D::Q5_K, D::Q6_K))
    launch_capped<D::Q5_K, D::Q6_K, NC>(J, x, n, v, stream);
  else if (is(D::Q4_K, D::Q5_K))
    launch_capped<D::Q4_K, D::Q5_K, NC>(J, x, n, v, stream);
  else
    throw Error(std::string("matvec: no k-quant kernel for ") + dtype_name(t0) + " and " +
                dtype_name(t1));
}

bool is_kquant(DType t) {
  return t == DType::Q4_K || t == DType::Q5_K || t == DType::Q6_K;
}

}  // namespace

bool kq_handles(DType t, const MatvecVariant& v) {
  return (v.kquant && is_kquant(t)) || (v.q8 && t == DType::Q8_0);
}

bool kq_handles_pair(DType t, DType t2, const MatvecVariant& v) {
  return v.kquant && v.mixed && is_kquant(t) && is_kquant(t2);
}

void kq_launch(const Jobs& J, const ActQ8& x, int nc, const MatvecVariant& v, cudaStream_t stream) {
  DType t0 = J.job[0].W.type, t1 = t0;
  for (int i = 1; i < J.n_jobs; ++i)
    if (J.job[i].W.type != t0) t1 = J.job[i].W.type;
  for (int i = 0; i < J.n_jobs; ++i)
    if (J.job[i].W.type != t0 && J.job[i].W.type != t1)
      throw Error("matvec: at most two weight types per launch");
  if (t0 == t1 ? !kq_handles(t0, v) : !kq_handles_pair(t0, t1, v))
    throw Error("matvec: kq_launch called for types it does not handle");
  if (static_cast<int>(t1) < static_cast<int>(t0)) std::swap(t0, t1);
  if (nc <= 1)
    launch_nc<1>(J, t0, t1, x, nc, v, stream);
  else if (nc <= 2)
    launch_nc<2>(J, t0, t1, x, nc, v, stream);
  else if (nc <= 4)
    launch_nc<4>(J, t0, t1, x, nc, v, stream);
  else
    launch_nc<8>(J, t0, t1, x, nc, v, stream);
}

}  // namespace llm::cuda::mv
