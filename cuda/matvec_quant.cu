// Decode GEMV. A warp owns R consecutive output rows of one job and walks the row's
// units (32 elements; 8 for float weights) with its lanes, U units in flight per lane;
// the weight loads are 16 bytes wide and bypass L1, the activations (read by every warp)
// stay in L1. Partial sums meet in a warp reduction.
#include <cstdlib>
#include <string>

#include "cuda/act.cuh"
#include "cuda/matvec_jobs.cuh"
#include "cuda/matvec_quant.h"
#include "cuda/qweight.cuh"
#include "cuda/rmsnorm.h"

namespace llm::cuda {
namespace {

using mv::finish;
using mv::finish_split;
using mv::Jobs;
using mv::kMaxJobs;
using mv::kWarps;
using mv::locate;

// Lane l takes the units u with (u + lane_offset) % 32 == l, in increasing order, U at a time;
// the sums over units below `split` go to acc0, the rest to acc1 (split 0: all to acc0).
// PAIRS (one job with k_split, one column): two warps per row group, warp 2i the units below
// `split`, warp 2i + 1 the rest, each lane the same units in the same order as one warp
// would, so the same bits in half the chain; the second hands its reduced sums over.
// NORM (one column, no pairs): blocks of kNormWarps warps normalize J.norm's row into shared
// memory first (act.cuh's norm_row_q8) and read the activations from there.
constexpr int kNormWarps = 16;
constexpr int kNormMax = 4 * kNormWarps * 32;

template <DType T, int R, int NC, int U, bool PAIRS, bool NORM = false>
__global__ void __launch_bounds__((NORM ? kNormWarps : kWarps) * 32)
    matvec_q_kernel(Jobs J, ActQ8 x, int n) {
  constexpr int WARPS = NORM ? kNormWarps : kWarps;
  __shared__ float handed[PAIRS ? kWarps / 2 : 1][R][NC];
  __shared__ __align__(16) int8_t xq_s[NORM ? kNormMax : 16];
  __shared__ float2 xd_s[NORM ? kNormMax / 32 : 1];
  __shared__ float red[NORM ? 32 : 1];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t g = static_cast<int64_t>(blockIdx.x) * WARPS + warp;
  int j = 0;
  int64_t r0 = 0;
  // A NORM block's warps past the end still take part in the norm's barriers.
  const bool active = locate<R>(J, PAIRS ? g / 2 : g, j, r0);
  if (!NORM && !active) return;
  const int half = PAIRS ? static_cast<int>(g & 1) : 0;
  const MatvecJob& job = J.job[j];
  const DevMatrix& W = job.W;
  const int64_t nu = W.cols / 32;
  int64_t rows[R];
#pragma unroll
  for (int r = 0; r < R; ++r)
    rows[r] = min(r0 + r, W.rows - 1);  // clamp: tail rows recompute, not stored
  float acc0[R][NC], acc1[R][NC];
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int c = 0; c < NC; ++c) acc0[r][c] = acc1[r][c] = 0.0f;
  const int lane_offset = static_cast<int>((job.k_offset / 32) % 32);
  const int64_t split = job.k_split > 0 && job.k_split / 32 < nu ? job.k_split / 32 : nu;

  // Software pipeline: the next U units of every row load while the current ones are
  // used. The first loads are weights only, so they go out before pdl_wait() and overlap
  // the end of the previous kernel.
  Unit w[U][R];
  auto load = [&](Unit(&dst)[U][R], int64_t u0) {
#pragma unroll
    for (int i = 0; i < U; ++i)
#pragma unroll
      for (int r = 0; r < R; ++r)
        if (u0 + 32 * i < nu) dst[i][r] = load_unit<T>(W, rows[r], u0 + 32 * i);
  };
  // The lane's units: from its first at or after `first` (0, or split for the second warp
  // of a pair), below `last`.
  const int64_t first = half ? split : 0, last = PAIRS && !half ? split : nu;
  const int64_t start = first + ((lane - lane_offset - first) % 32 + 32) % 32;
  if (active) load(w, start);
  float4 norm_w = make_float4(0, 0, 0, 0);
  if constexpr (NORM) norm_w = norm_row_weights(J.norm.w, W.cols);
  pdl_wait();
  pdl_trigger();
  if constexpr (NORM) {
    norm_row_q8(J.norm.h, norm_w, W.cols, J.norm.eps, xq_s, xd_s, red);
    if (!active) return;
  }
  for (int64_t u0 = start; u0 < last; u0 += 32 * U) {
    Unit next[U][R];
    if (u0 + 32 * U < last) load(next, u0 + 32 * U);
#pragma unroll
    for (int i = 0; i < U; ++i) {
      const int64_t u = u0 + 32 * i;
      if (u >= last) break;
      const bool low = u < split;
#pragma unroll
      for (int c = 0; c < NC; ++c) {
        if (c >= n) break;
        int xi[8];
        float2 xds;
        if constexpr (NORM)
          load_act_q8<true>(xq_s, xd_s, u, xi, xds);
        else
          load_act_q8<false>(x.qs + c * W.cols, x.ds + c * nu, u, xi, xds);
#pragma unroll
        for (int r = 0; r < R; ++r) {
          // An explicit add: whether the compiler fused it with dot_unit's last product
          // could differ between the NC instantiations, and a column's bits must not.
          const float d = dot_unit<T>(w[i][r], u, xi, xds);
          if (low)
            acc0[r][c] = __fadd_rn(acc0[r][c], d);
          else
            acc1[r][c] = __fadd_rn(acc1[r][c], d);
        }
      }
    }
#pragma unroll
    for (int i = 0; i < U; ++i)
#pragma unroll
      for (int r = 0; r < R; ++r) w[i][r] = next[i][r];
  }
  if constexpr (PAIRS) {
    // The second warp's sums (acc1) reach the first through shared memory; a barrier of
    // the pair's 64 threads (both warps of a pair exist or neither does).
    if (half) {
#pragma unroll
      for (int r = 0; r < R; ++r)
#pragma unroll
        for (int c = 0; c < NC; ++c) {
          const float v = warp_sum(acc1[r][c]);
          if (lane == 0) handed[warp / 2][r][c] = v;
        }
    }
    asm volatile("bar.sync %0, 64;" ::"r"(1 + warp / 2));
    if (half) return;
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
      for (int c = 0; c < NC; ++c) acc1[r][c] = handed[warp / 2][r][c];
    finish_split<R, NC>(job, r0, n, acc0, acc1, true);
    return;
  }
  if (split < nu)
    finish_split<R, NC>(job, r0, n, acc0, acc1);
  else
    finish<R, NC>(job, r0, n, acc0);
}

// Float weights, 8 elements per lane step (cols % 8 == 0), kept as raw words until used
// (half the registers of floats for F16/BF16).
template <DType T>
struct Raw8 {
  uint4 a;
  uint4 b;  // F32 only
};
template <DType T>
__device__ __forceinline__ Raw8<T> load8(const uint8_t* row, int64_t c8) {
  Raw8<T> r;
  if constexpr (T == DType::F32) {
    r.a = ld16_stream(row + c8 * 32);
    r.b = ld16_stream(row + c8 * 32 + 16);
  } else {
    r.a = ld16_stream(row + c8 * 16);
  }
  return r;
}
template <DType T>
__device__ __forceinline__ void unpack8(const Raw8<T>& r, float (&w)[8]) {
  if constexpr (T == DType::F32) {
    w[0] = __uint_as_float(r.a.x);
    w[1] = __uint_as_float(r.a.y);
    w[2] = __uint_as_float(r.a.z);
    w[3] = __uint_as_float(r.a.w);
    w[4] = __uint_as_float(r.b.x);
    w[5] = __uint_as_float(r.b.y);
    w[6] = __uint_as_float(r.b.z);
    w[7] = __uint_as_float(r.b.w);
  } else {
    const uint32_t v[4] = {r.a.x, r.a.y, r.a.z, r.a.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      if constexpr (T == DType::F16) {
        const float2 f = half2_bits_to_float2(v[i]);
        w[2 * i] = f.x;
        w[2 * i + 1] = f.y;
      } else {
        w[2 * i] = __uint_as_float(v[i] << 16);
        w[2 * i + 1] = __uint_as_float(v[i] & 0xffff0000u);
      }
    }
  }
}

// Lane l takes the 8-element steps c with (c + lane_offset) % 32 == l, in increasing order,
// U at a time; the sums over steps below `split` go to acc0, the rest to acc1.
template <DType T, int R, int NC, int U>
__global__ void __launch_bounds__(kWarps * 32)
    matvec_f_kernel(Jobs J, const float* __restrict__ x, int n) {
  const int lane = threadIdx.x & 31;
  const int64_t g = static_cast<int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  int j;
  int64_t r0;
  if (!locate<R>(J, g, j, r0)) return;
  const MatvecJob& job = J.job[j];
  const DevMatrix& W = job.W;
  const int64_t n8 = W.cols / 8;
  const uint8_t* rowp[R];
#pragma unroll
  for (int r = 0; r < R; ++r) rowp[r] = W.qs + min(r0 + r, W.rows - 1) * W.qs_stride;
  float acc0[R][NC], acc1[R][NC];
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int c = 0; c < NC; ++c) acc0[r][c] = acc1[r][c] = 0.0f;
  const int lane_offset = static_cast<int>((job.k_offset / 8) % 32);
  const int64_t split = job.k_split > 0 && job.k_split / 8 < n8 ? job.k_split / 8 : n8;

  Raw8<T> w[U][R];
  auto load = [&](Raw8<T>(&dst)[U][R], int64_t c0) {
#pragma unroll
    for (int i = 0; i < U; ++i)
#pragma unroll
      for (int r = 0; r < R; ++r)
        if (c0 + 32 * i < n8) dst[i][r] = load8<T>(rowp[r], c0 + 32 * i);
  };
  const int64_t start = ((lane - lane_offset) % 32 + 32) % 32;
  load(w, start);
  pdl_wait();
  pdl_trigger();
  for (int64_t c0 = start; c0 < n8; c0 += 32 * U) {
    Raw8<T> next[U][R];
    if (c0 + 32 * U < n8) load(next, c0 + 32 * U);
#pragma unroll
    for (int i = 0; i < U; ++i) {
      const int64_t c8 = c0 + 32 * i;
      if (c8 >= n8) break;
      const bool low = c8 < split;
      float4 xa[NC], xb[NC];
#pragma unroll
      for (int c = 0; c < NC; ++c) {
        if (c >= n) break;
        xa[c] = __ldg(reinterpret_cast<const float4*>(x + c * W.cols + c8 * 8));
        xb[c] = __ldg(reinterpret_cast<const float4*>(x + c * W.cols + c8 * 8 + 4));
      }
#pragma unroll
      for (int r = 0; r < R; ++r) {
        float wf[8];
        unpack8<T>(w[i][r], wf);
#pragma unroll
        for (int c = 0; c < NC; ++c) {
          if (c >= n) break;
          float s = low ? acc0[r][c] : acc1[r][c];
          s = fmaf(wf[0], xa[c].x, s);
          s = fmaf(wf[1], xa[c].y, s);
          s = fmaf(wf[2], xa[c].z, s);
          s = fmaf(wf[3], xa[c].w, s);
          s = fmaf(wf[4], xb[c].x, s);
          s = fmaf(wf[5], xb[c].y, s);
          s = fmaf(wf[6], xb[c].z, s);
          s = fmaf(wf[7], xb[c].w, s);
          if (low)
            acc0[r][c] = s;
          else
            acc1[r][c] = s;
        }
      }
    }
#pragma unroll
    for (int i = 0; i < U; ++i)
#pragma unroll
      for (int r = 0; r < R; ++r) w[i][r] = next[i][r];
  }
  if (split < n8)
    finish_split<R, NC>(job, r0, n, acc0, acc1);
  else
    finish<R, NC>(job, r0, n, acc0);
}

// Any row length (tiny models): one element per lane step.
template <DType T, int NC>
__global__ void __launch_bounds__(kWarps * 32)
    matvec_f_scalar_kernel(Jobs J, const float* __restrict__ x, int n) {
  const int lane = threadIdx.x & 31;
  const int64_t g = static_cast<int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  int j;
  int64_t r0;
  pdl_wait();
  pdl_trigger();
  if (!locate<1>(J, g, j, r0)) return;
  const DevMatrix& W = J.job[j].W;
  const uint8_t* row = W.qs + r0 * W.qs_stride;
  float acc[1][NC];
#pragma unroll
  for (int c = 0; c < NC; ++c) acc[0][c] = 0.0f;
  for (int64_t e = lane; e < W.cols; e += 32) {
    float w;
    if constexpr (T == DType::F32)
      w = reinterpret_cast<const float*>(row)[e];
    else if constexpr (T == DType::F16)
      w = half_bits_to_float(reinterpret_cast<const uint16_t*>(row)[e]);
    else
      w = bf16_bits_to_float(reinterpret_cast<const uint16_t*>(row)[e]);
#pragma unroll
    for (int c = 0; c < NC; ++c)
      if (c < n) acc[0][c] = fmaf(w, x[c * W.cols + e], acc[0][c]);
  }
  finish<1, NC>(J.job[j], r0, n, acc);
}

constexpr int kRows = 2;  // rows per warp (4 measured slower on an H100: fewer warps in flight)

template <DType T, int NC, int U>
void launch_u(const Jobs& J, const float* x_f32, const ActQ8& x_q8, int n, cudaStream_t stream) {
  const unsigned blocks = static_cast<unsigned>(ceil_div(J.group_start[J.n_jobs], kWarps));
  if constexpr (T == DType::F32 || T == DType::F16 || T == DType::BF16) {
    if (J.job[0].W.cols % 8 == 0 && J.job[0].W.qs_stride % 16 == 0)
      launch(matvec_f_kernel<T, kRows, NC, U>, blocks, kWarps * 32, 0, stream, J, x_f32, n);
    else
      launch(matvec_f_scalar_kernel<T, NC>, blocks, kWarps * 32, 0, stream, J, x_f32, n);
  } else {
    // One job split in two halves of K at one column: a warp pair per row group (the
    // launch's group count doubles). H100, llama-1b-shaped Q4_0 draft: PERF.md, run 80.
    bool pairs = false;
    if constexpr (NC == 1)
      pairs = J.pairs && J.n_jobs == 1 && J.job[0].k_split > 0 &&
              J.job[0].k_split < J.job[0].W.cols && J.job[0].epilogue == Epilogue::None;
    if (J.norm.h) {
      if constexpr (NC == 1) {
        const unsigned bn = static_cast<unsigned>(ceil_div(J.group_start[J.n_jobs], kNormWarps));
        launch(matvec_q_kernel<T, kRows, 1, U, false, true>, bn, kNormWarps * 32, 0, stream, J,
               x_q8, n);
      }
    } else if (pairs) {
      const unsigned b2 = static_cast<unsigned>(ceil_div(2 * J.group_start[1], kWarps));
      launch(matvec_q_kernel<T, kRows, 1, U, true>, b2, kWarps * 32, 0, stream, J, x_q8, n);
    } else {
      launch(matvec_q_kernel<T, kRows, NC, U, false>, blocks, kWarps * 32, 0, stream, J, x_q8, n);
    }
  }
  CUDA_CHECK_LAUNCH();
}

// Two units per lane and row in flight (plus two prefetched): 4 measured slower on an
// H100 (registers, fewer warps resident).
template <DType T, int NC>
void launch_nc(const Jobs& J, const float* x_f32, const ActQ8& x_q8, int n, cudaStream_t stream) {
  launch_u<T, NC, 2>(J, x_f32, x_q8, n, stream);
}

template <DType T>
void launch_type(const Jobs& J, const float* x_f32, const ActQ8& x_q8, int n, cudaStream_t stream) {
  if (n <= 1)
    launch_nc<T, 1>(J, x_f32, x_q8, n, stream);
  else if (n <= 2)
    launch_nc<T, 2>(J, x_f32, x_q8, n, stream);
  else if (n <= 4)
    launch_nc<T, 4>(J, x_f32, x_q8, n, stream);
  else
    launch_nc<T, 8>(J, x_f32, x_q8, n, stream);
}

}  // namespace

bool matvec_pairs_rows(const DevMatrix& W) {
  return !is_float_type(W.type) || (W.cols % 8 == 0 && W.qs_stride % 16 == 0);
}

MatvecVariant matvec_variant_from_env() {
  MatvecVariant v;
  // Default 15: measured faster on an H200 (PERF.md: Q4_K_M tg128 +6-10 %, Q8_0 +6 %);
  // 16 (Q8_0 with 4 slots) was 31 % slower. 0 restores the first kernels.
  const char* e = std::getenv("LLM_CUDA_MV_KQ");
  const char* const spec = e && *e ? e : "15";
  char* end = nullptr;
  const long bits = std::strtol(spec, &end, 10);
  if (*end != '\0' || bits < 0 || bits > 31)
    throw Error(std::string("LLM_CUDA_MV_KQ must be a bit mask from 0 to 31 (1: k-quant "
                            "kernels, 2: Q8_0 kernel, 4: mixed k-quant launches, 8: k-quant "
                            "kernels uncapped, 16: Q8_0 with 4 slots), got '") +
                spec + "'");
  v.kquant = (bits & 1) != 0;
  v.q8 = (bits & 2) != 0;
  v.mixed = (bits & 4) != 0;
  v.uncapped = (bits & 8) != 0;
  v.q8_deep = (bits & 16) != 0;
  // LLM_CUDA_MV_PAIRS=0: a k_split product at one column in one warp per row group.
  if (const char* p = std::getenv("LLM_CUDA_MV_PAIRS"); p && std::string(p) == "0")
    v.pairs_below = 0;
  return v;
}

int matvec_group(const MatvecJob* jobs, int n_jobs, const MatvecVariant& v) {
  const DType t = jobs[0].W.type;
  DType other = t;  // the second type of a mixed launch, once there is one
  int k = 1;
  for (; k < n_jobs && k < kMaxJobs; ++k) {
    const DevMatrix& W = jobs[k].W;
    if (W.cols != jobs[0].W.cols) break;
    if (W.type == t || W.type == other) continue;
    if (other != t || !mv::kq_handles_pair(t, W.type, v)) break;
    other = W.type;
  }
  return k;
}

bool matvec_norm_supported(const MatvecJob* jobs, int n_jobs, int n) {
  if (n != 1 || n_jobs <= 0 || n_jobs > kMaxJobs) return false;
  const int64_t cols = jobs[0].W.cols;
  if (cols <= 0 || cols > kNormMax || cols % 32 != 0 ||
      rmsnorm_vec_threads(static_cast<int>(cols)) != kNormWarps * 32)
    return false;
  for (int i = 0; i < n_jobs; ++i) {
    const DType t = jobs[i].W.type;
    if (!(t == DType::Q4_0 || t == DType::Q4_1 || t == DType::Q5_0) || t != jobs[0].W.type ||
        jobs[i].W.cols != cols || jobs[i].k_split != 0 || jobs[i].k_offset != 0)
      return false;
  }
  return true;
}

void matvec(const MatvecJob* jobs, int n_jobs, const float* x_f32, const ActQ8& x_q8, int n,
            cudaStream_t stream, const MatvecVariant& variant, const MatvecNorm* norm) {
  if (n <= 0 || n_jobs <= 0) return;
  if (n_jobs > kMaxJobs) throw Error("matvec: at most 3 matrices per launch");
  if (norm && !matvec_norm_supported(jobs, n_jobs, n))
    throw Error(
        "matvec: the norm inside the product needs one row of Q4_0, Q4_1 or Q5_0 "
        "matrices 1,924 to 2,048 wide (a multiple of 32), without k_split");
  const DType t = jobs[0].W.type;
  const int64_t cols = jobs[0].W.cols;
  if (matvec_group(jobs, n_jobs, variant) != n_jobs)
    throw Error("matvec: fused matrices must share width and type (or be mixable k-quants)");
  bool mixed = false;
  for (int i = 1; i < n_jobs; ++i) mixed = mixed || jobs[i].W.type != t;
  const bool fl = is_float_type(t);
  const bool scalar = fl && !(cols % 8 == 0 && jobs[0].W.qs_stride % 16 == 0);
  for (int c0 = 0; c0 < n; c0 += kMatvecMaxCols) {
    const int nc = n - c0 < kMatvecMaxCols ? n - c0 : kMatvecMaxCols;
    const int rows_per_group = scalar ? 1 : kRows;
    Jobs J{};
    J.n_jobs = n_jobs;
    if (norm) J.norm = *norm;
    J.pairs = ceil_div(jobs[0].W.rows, static_cast<int64_t>(kRows)) < variant.pairs_below;
    J.group_start[0] = 0;
    for (int i = 0; i < n_jobs; ++i) {
      J.job[i] = jobs[i];
      if (J.job[i].y) J.job[i].y += c0 * jobs[i].ldy;
      if (jobs[i].epilogue != Epilogue::None) {
        if (scalar) throw Error("matvec: the RoPE epilogue needs paired rows");
        J.job[i].rope.positions += c0;
        J.job[i].rope.slots += c0;
      }
      J.group_start[i + 1] = J.group_start[i] + ceil_div(jobs[i].W.rows, rows_per_group);
    }
    const float* xf = x_f32 ? x_f32 + c0 * cols : nullptr;
    ActQ8 xq = x_q8;
    if (xq.qs) {
      xq.qs += c0 * cols;
      xq.ds += c0 * (cols / 32);
    }
    if (mixed || mv::kq_handles(t, variant)) {
      mv::kq_launch(J, xq, nc, variant, stream);
      continue;
    }
    switch (t) {
#define LLM_CASE(T)                        \
  case T:                                  \
    launch_type<T>(J, xf, xq, nc, stream); \
    break;
      LLM_CASE(DType::F32)
      LLM_CASE(DType::F16)
      LLM_CASE(DType::BF16)
      LLM_CASE(DType::Q8_0)
      LLM_CASE(DType::Q4_0)
      LLM_CASE(DType::Q4_1)
      LLM_CASE(DType::Q5_0)
      LLM_CASE(DType::Q4_K)
      LLM_CASE(DType::Q5_K)
      LLM_CASE(DType::Q6_K)
#undef LLM_CASE
      default:
        throw Error(std::string("matvec: unsupported type ") + dtype_name(t));
    }
  }
}

}  // namespace llm::cuda
