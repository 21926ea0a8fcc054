// Tensor-core products for a few to 64 activation rows per pass. A CTA owns 16 weight rows and
// all the pass's activation columns; its NW warps split the row's units (32 elements)
// between them and meet in shared memory at the end, so that every weight byte is read
// once per pass and thousands of CTAs keep the memory system busy.
//
// Fragments (PTX ISA, mma.m16n8k16): lane = 4 g + t; A (16 x 16) rows g and g + 8, B
// (16 x 8) column g, C rows g, g + 8 and columns 2t, 2t + 1. The order of k within one
// mma is free as long as A and B agree, so every lane reads whole words:
//   int8 (quantized): one mma per half unit; lane t holds word t of the half (elements
//     4t..4t+3 of 0..15, or of 16..31) for its two rows and its column; the integer sums
//     of the two halves meet the unit's scales in f32 (combine_unit).
//   f16: two mmas per unit; lane t loads elements 8t..8t+7 of the unit (16 bytes) and
//     feeds 8t..8t+3 to the first, 8t+4..8t+7 to the second.
#include "cuda/matmul_tc.h"
#include "cuda/qweight.cuh"

namespace llm::cuda {
namespace {

__device__ __forceinline__ void mma_s8(int (&c)[4], int a0, int a1, int b0) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5}, {%6}, "
      "{%0,%1,%2,%3};"
      : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
      : "r"(a0), "r"(a1), "r"(b0));
}

__device__ __forceinline__ void mma_f16(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                        uint32_t a3, uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// NT tiles of 8 columns (n <= 8 NT), NW warps per CTA.
template <DType T, int NT, int NW>
__global__ void __launch_bounds__(NW * 32)
    mm_tc_kernel(DevMatrix W, ActQ8 xq, const __half* __restrict__ xh, int n, float* __restrict__ y,
                 int64_t ldy, bool accumulate) {
  __shared__ float part[NW][NT][4][32];  // each warp's partial sums, in fragment order
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int g = lane >> 2, t = lane & 3;
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * 16;
  const int64_t ra = min(row0 + g, W.rows - 1), rb = min(row0 + g + 8, W.rows - 1);
  const int64_t k = W.cols, nu = k / 32;
  float acc[NT][4];
#pragma unroll
  for (int i = 0; i < NT; ++i)
#pragma unroll
    for (int e = 0; e < 4; ++e) acc[i][e] = 0.0f;

  pdl_wait();
  pdl_trigger();
  if constexpr (T == DType::F16) {
    const uint8_t* pa = W.qs + ra * W.qs_stride;
    const uint8_t* pb = W.qs + rb * W.qs_stride;
#pragma unroll 2
    for (int64_t u = warp; u < nu; u += NW) {
      const uint4 wa = ld16_stream(pa + (u * 32 + 8 * t) * 2);
      const uint4 wb = ld16_stream(pb + (u * 32 + 8 * t) * 2);
#pragma unroll
      for (int i = 0; i < NT; ++i) {
        if (8 * i >= n) break;
        const int col = min(8 * i + g, n - 1);  // columns past n compute garbage, not stored
        const uint4 xb = ld16(xh + col * k + u * 32 + 8 * t);
        mma_f16(acc[i], wa.x, wb.x, wa.y, wb.y, xb.x, xb.y);
        mma_f16(acc[i], wa.z, wb.z, wa.w, wb.w, xb.z, xb.w);
      }
    }
  } else {
#pragma unroll 2
    for (int64_t u = warp; u < nu; u += NW) {
      const Unit ua = load_unit<T>(W, ra, u), ub = load_unit<T>(W, rb, u);
      int a_lo, a_hi, b_lo, b_hi;
      unit_word_pair<T>(ua, t, a_lo, a_hi);
      unit_word_pair<T>(ub, t, b_lo, b_hi);
#pragma unroll
      for (int i = 0; i < NT; ++i) {
        if (8 * i >= n) break;
        const int col = min(8 * i + g, n - 1);
        const int8_t* xc = xq.qs + col * k + u * 32;
        int s_lo[4] = {0, 0, 0, 0}, s_hi[4] = {0, 0, 0, 0};
        mma_s8(s_lo, a_lo, b_lo, static_cast<int>(ld4(xc + 4 * t)));
        mma_s8(s_hi, a_hi, b_hi, static_cast<int>(ld4(xc + 16 + 4 * t)));
        // This lane's C entries: rows g (0, 1) and g + 8 (2, 3); columns 2t, 2t + 1.
        const int c0 = min(8 * i + 2 * t, n - 1), c1 = min(8 * i + 2 * t + 1, n - 1);
        const float2 d0 = __ldg(xq.ds + c0 * nu + u), d1 = __ldg(xq.ds + c1 * nu + u);
        acc[i][0] += combine_unit<T>(ua, u, s_lo[0], s_hi[0], d0);
        acc[i][1] += combine_unit<T>(ua, u, s_lo[1], s_hi[1], d1);
        acc[i][2] += combine_unit<T>(ub, u, s_lo[2], s_hi[2], d0);
        acc[i][3] += combine_unit<T>(ub, u, s_lo[3], s_hi[3], d1);
      }
    }
  }

#pragma unroll
  for (int i = 0; i < NT; ++i)
#pragma unroll
    for (int e = 0; e < 4; ++e) part[warp][i][e][lane] = acc[i][e];
  __syncthreads();
  // Every thread finishes entries (i, e, lane) in a fixed warp order (deterministic).
  for (int idx = threadIdx.x; idx < NT * 4 * 32; idx += NW * 32) {
    const int i = idx / 128, e = (idx / 32) & 3, l = idx & 31;
    const int64_t r = row0 + (l >> 2) + (e >= 2 ? 8 : 0);
    const int c = 8 * i + 2 * (l & 3) + (e & 1);
    if (r >= W.rows || c >= n) continue;
    float v = 0.0f;
#pragma unroll
    for (int w = 0; w < NW; ++w) v += part[w][i][e][l];
    float* out = y + c * ldy + r;
    *out = accumulate ? *out + v : v;
  }
}

// Eight warps whatever the column count: a column's sums then run in the same order in
// every launch (bitwise batch invariance), and the partials take 32 KiB at NT = 8.
constexpr int kWarps = 8;

template <DType T, int NT>
void launch_nt(const MmTcArgs& a, int n, const ActQ8& xq, const __half* xh, float* y,
               cudaStream_t stream) {
  constexpr int NW = kWarps;
  const unsigned blocks = static_cast<unsigned>(ceil_div(a.W->rows, 16));
  launch(mm_tc_kernel<T, NT, NW>, blocks, NW * 32, 0, stream, *a.W, xq, xh, n, y, a.ldy,
         a.accumulate);
  CUDA_CHECK_LAUNCH();
}

template <DType T>
void launch_type(const MmTcArgs& a, int n, const ActQ8& xq, const __half* xh, float* y,
                 cudaStream_t stream) {
  if (n <= 8)
    launch_nt<T, 1>(a, n, xq, xh, y, stream);
  else if (n <= 16)
    launch_nt<T, 2>(a, n, xq, xh, y, stream);
  else if (n <= 32)
    launch_nt<T, 4>(a, n, xq, xh, y, stream);
  else
    launch_nt<T, 8>(a, n, xq, xh, y, stream);
}

}  // namespace

bool mm_tc_supported(const DevMatrix& W) {
  if (W.cols % 32 != 0) return false;
  switch (W.type) {
    case DType::F16:
      return W.qs_stride % 16 == 0;
    case DType::Q8_0:
    case DType::Q4_0:
    case DType::Q4_1:
    case DType::Q5_0:
    case DType::Q4_K:
    case DType::Q5_K:
    case DType::Q6_K:
      return true;
    default:
      return false;
  }
}

bool mm_tc_wants_q8(const DevMatrix& W) {
  return W.type != DType::F16;
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
