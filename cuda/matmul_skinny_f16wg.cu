// The skinny products of F16 weights on Hopper's tensor memory accelerator (TMA) and
// warpgroup MMA (wgmma): a CTA (one warpgroup) streams a 64-row tile of weights and the
// step's activations through a ring of shared-memory stages, each filled by two bulk
// tensor copies (one thread issues them; an mbarrier counts their bytes in), and
// multiplies them with m64nNk16 straight from shared memory (N = 8 NG activation rows).
// Neither operand goes through registers or the load/store unit: per 8 KiB of weights a
// warp issues a few dozen instructions, and nothing but the copies' latency and the
// stages in flight (5) bound a CTA.
//
// Why not cp.async: the same kernel with each thread copying 16-byte pieces (PERF.md)
// stalled on the copies' own issue (their address registers are held until the load
// unit takes them) and reached 40 % of DRAM bandwidth, half of cuBLAS at 8 rows.
//
// Layout: a stage is 64 elements (128 bytes) of each of the tile's 64 weight rows and of
// the NC = 8 NG activation rows, stored by the copies in the 128-byte swizzle (rows of 128
// bytes, 16-byte pieces XOR-ed by row % 8, 1024-byte aligned), which wgmma reads K-major
// with an 8-row stride of 1024 bytes; k16 step s starts 32 s bytes in. Rows past the
// matrix or past n come in as zeros (the copies' out-of-bounds fill).
//
// Rows: warp w's accumulators are tile rows 16w..16w+15 (the SwiGLU mode: tile rows
// 0..31 gate, 32..63 up, as mm_sk). Tiles, splits, split-K sums and epilogues are mm_sk's
// (matmul_skinny_jobs.cuh).
#include <cuda.h>  // CUtensorMap (the encoder is the driver's, fetched at run time)

#include <algorithm>
#include <string>

#include "cuda/matmul_skinny_f16wg.h"
#include "engine/error.h"

namespace llm::cuda::sk {
namespace {

constexpr int kThreads = 128;  // one warpgroup
constexpr int kStageElems = 64;
constexpr int kRowBytes = 2 * kStageElems;  // bytes of a row per stage (one swizzle row)
constexpr int kStages = 6;                  // ring slots; kStages - 1 stages in flight
constexpr int kABytes = kTileRows * kRowBytes;
constexpr int slot_bytes(int NG) {
  return kABytes + 8 * NG * kRowBytes;  // both parts multiples of 1024
}

// K-major operand in the 128-byte swizzle: 8-row groups 1024 bytes apart.
__device__ __forceinline__ uint64_t sw128_desc(uint32_t addr) {
  return static_cast<uint64_t>((addr & 0x3FFFF) >> 4) | (uint64_t{1} << 16) |
         (uint64_t{1024 >> 4} << 32) | (uint64_t{1} << 62);
}

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
__device__ __forceinline__ void wg_fence() {
  asm volatile("wgmma.fence.sync.aligned;" ::: "memory");
}
__device__ __forceinline__ void wg_commit() {
  asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");
}
template <int N>
__device__ __forceinline__ void wg_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(N) : "memory");
}
template <int NG>
__device__ __forceinline__ void pin(float (&d)[NG][4]) {
#pragma unroll
  for (int i = 0; i < NG; ++i)
#pragma unroll
    for (int e = 0; e < 4; ++e) asm volatile("" : "+f"(d[i][e])::"memory");
}
__device__ __forceinline__ void mbar_init(uint32_t bar, int count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_expect(uint32_t bar, int bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar), "r"(bytes)
               : "memory");
}
__device__ __forceinline__ void mbar_wait(uint32_t bar, int parity) {
  asm volatile(
      "{\n.reg .pred p;\nwait_%=:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n"
      "@!p bra wait_%=;\n}\n" ::"r"(bar),
      "r"(parity)
      : "memory");
}
// Box (x, y) of `map` into shared memory at dst; its bytes complete on `bar`.
__device__ __forceinline__ void tma_load(uint32_t dst, const CUtensorMap* map, int x, int y,
                                         uint32_t bar) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
      " [%0], [%1, {%2, %3}], [%4];" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(x), "r"(y), "r"(bar)
      : "memory");
}

// d (64 x 8 NG; this warp's 16 rows) += A (64 x 16, desc a) * B (16 x 8 NG, desc b).
#define LLM_WG_SS(NG, SHAPE, DREGS, AREG, BREG, ...)                                      \
  __device__ __forceinline__ void wgmma(float(&d)[NG][4], uint64_t a, uint64_t b) {       \
    asm volatile(                                                                         \
        "{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"                                        \
        "wgmma.mma_async.sync.aligned." SHAPE ".f32.f16.f16 {" DREGS "}, " AREG ", " BREG \
        ", p, 1, 1, 0, 0;\n}\n"                                                           \
        : __VA_ARGS__                                                                     \
        : "l"(a), "l"(b));                                                                \
  }
#define LLM_D4(i) "+f"(d[i][0]), "+f"(d[i][1]), "+f"(d[i][2]), "+f"(d[i][3])
LLM_WG_SS(1, "m64n8k16", "%0, %1, %2, %3", "%4", "%5", LLM_D4(0))
LLM_WG_SS(2, "m64n16k16", "%0, %1, %2, %3, %4, %5, %6, %7", "%8", "%9", LLM_D4(0), LLM_D4(1))
LLM_WG_SS(3, "m64n24k16", "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11", "%12", "%13",
          LLM_D4(0), LLM_D4(1), LLM_D4(2))
LLM_WG_SS(4, "m64n32k16", "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15",
          "%16", "%17", LLM_D4(0), LLM_D4(1), LLM_D4(2), LLM_D4(3))
LLM_WG_SS(8, "m64n64k16",
          "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, "
          "%19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31",
          "%32", "%33", LLM_D4(0), LLM_D4(1), LLM_D4(2), LLM_D4(3), LLM_D4(4), LLM_D4(5), LLM_D4(6),
          LLM_D4(7))
#undef LLM_D4
#undef LLM_WG_SS
#endif

// The launch's tensor maps: weights of each matrix (boxes of 64 x 64 rows; the SwiGLU
// mode: gate and up, 32 rows), and the activations (64 x NC rows).
struct Maps {
  CUtensorMap w[kSkMaxJobs];
  CUtensorMap x;
};

// NG groups of 8 activation rows (n <= 8 NG; NG 1, 2, 3, 4 or 8). CTAs per SM: as many
// as the ring's shared memory allows (3, or 2 with 64 rows).
template <int NG>
__global__ void __launch_bounds__(kThreads, NG >= 8 ? 2 : 3)
    mm_f16wg_kernel(const __grid_constant__ Maps maps, Jobs jobs, int n, int64_t ldy,
                    bool accumulate, int total, bool halves, float* __restrict__ partial,
                    int* __restrict__ counters) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  constexpr int NC = 8 * NG, SLOT = slot_bytes(NG), kBBytes = NC * kRowBytes;
  extern __shared__ uint8_t smem_raw[];  // (kStages, SLOT) from a 1024-byte boundary
  __shared__ __align__(8) uint64_t full[kStages];
  __shared__ int last;
  uint8_t* smem = smem_raw + ((1024 - (__cvta_generic_to_shared(smem_raw) & 1023)) & 1023);

  const int warp = static_cast<int>(threadIdx.x >> 5), lane = static_cast<int>(threadIdx.x & 31);
  const int tile = static_cast<int>(blockIdx.x);
  const int j = job_of(jobs, tile, warp >> 1);  // this warp's matrix (SwiGLU: 0, 1 gate)
  const int j0 = job_of(jobs, tile, 0);
  const DevMatrix W = pick(jobs.W, j);
  const int first_tile = j == 0 || jobs.glu ? 0 : j == 1 ? jobs.tile_end[0] : jobs.tile_end[1];
  const int64_t M = W.rows;
  const int S = static_cast<int>(gridDim.y);
  const int st0 = static_cast<int>(static_cast<int64_t>(blockIdx.y) * total / S);
  const int nst = static_cast<int>(static_cast<int64_t>(blockIdx.y + 1) * total / S) - st0;
  const int64_t tile0 = static_cast<int64_t>(tile - first_tile) * (jobs.glu ? 32 : kTileRows);
  const int64_t row0 = tile0 + 16 * (jobs.glu ? warp & 1 : warp);  // this warp's 16 rows

  const uint32_t s_base = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  const uint32_t bar0 = static_cast<uint32_t>(__cvta_generic_to_shared(full));
  const CUtensorMap* wmap = j0 == 0 ? &maps.w[0] : j0 == 1 ? &maps.w[1] : &maps.w[2];
  const bool leader = threadIdx.x == 0;
  // Stage i's weights / activations into slot i % kStages (the leader thread only).
  auto issue_w = [&](int i) {
    if (i >= nst) return;
    const uint32_t dst = s_base + static_cast<uint32_t>((i % kStages) * SLOT);
    const uint32_t bar = bar0 + static_cast<uint32_t>(8 * (i % kStages));
    const int x = (st0 + i) * kStageElems;
    mbar_expect(bar, kABytes + kBBytes);
    if (jobs.glu) {
      tma_load(dst, &maps.w[0], x, static_cast<int>(tile0), bar);
      tma_load(dst + kABytes / 2, &maps.w[1], x, static_cast<int>(tile0), bar);
    } else {
      tma_load(dst, wmap, x, static_cast<int>(tile0), bar);
    }
  };
  auto issue_x = [&](int i) {
    if (i >= nst) return;
    const uint32_t dst = s_base + static_cast<uint32_t>((i % kStages) * SLOT + kABytes);
    tma_load(dst, &maps.x, (st0 + i) * kStageElems, 0,
             bar0 + static_cast<uint32_t>(8 * (i % kStages)));
  };

  constexpr int kAhead = kStages - 1;
  if (leader) {
    for (int s = 0; s < kStages; ++s) mbar_init(bar0 + 8 * s, 1);
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    for (int i = 0; i < kAhead; ++i) issue_w(i);  // weights: before the producer finishes
  }
  pdl_wait();
  pdl_trigger();
  if (leader)
    for (int i = 0; i < kAhead; ++i) issue_x(i);
  __syncthreads();  // the barriers' initialization seen by every thread

  float acc[NG][4];
#pragma unroll
  for (int i = 0; i < NG; ++i)
#pragma unroll
    for (int e = 0; e < 4; ++e) acc[i][e] = 0.0f;

  // Step i: wait for stage i's bytes (its slot's barrier, phase i / kStages); its four
  // k16 products, leaving at most these in flight (so stage i - 1's are done in every
  // warp once all pass the CTA barrier); then the leader fills stage i - 1's slot (the
  // last, never used, one in step 0) with stage i + kStages - 1.
  for (int i = 0; i < nst; ++i) {
    mbar_wait(bar0 + static_cast<uint32_t>(8 * (i % kStages)), (i / kStages) & 1);
    const uint32_t sa = s_base + static_cast<uint32_t>((i % kStages) * SLOT);
    pin(acc);
    wg_fence();
#pragma unroll
    for (int s = 0; s < 4; ++s)
      wgmma(acc, sw128_desc(sa + 32 * s), sw128_desc(sa + kABytes + 32 * s));
    wg_commit();
    wg_wait<1>();
    pin(acc);
    __syncthreads();
    if (leader) {
      issue_w(i + kStages - 1);
      issue_x(i + kStages - 1);
    }
  }
  wg_wait<0>();
  pin(acc);

  const Out o{.y = pick(jobs.y, j),
              .ldy = ldy,
              .accumulate = accumulate,
              .S = S,
              .partial = partial,
              .RT = jobs.rows_total,
              .row_off = pick(jobs.row_off, j),
              .n = n,
              .M = M};
  if (jobs.glu || pick(jobs.epi, j) != Epilogue::None) {
    __syncthreads();  // the ring is idle
    float* gl = reinterpret_cast<float*>(smem);
    tile_sums_to_shared<NG>(gl, acc, warp, lane);
    __syncthreads();
    finish_epilogue(gl, NC, jobs, j, tile0, o, warp, kThreads / 32);
    return;
  }
  store_fragments<NG>(acc, row0, lane, o);
  if (S == 1 || !last_split_arrival(counters, S, last)) return;
  split_sum<8>(o, tile0, halves, counters, kThreads);
#else
  // Built without sm_90a code: mm_sk_wgmma_available() is false and this never launches.
  (void)maps, (void)jobs, (void)n, (void)ldy, (void)accumulate, (void)total, (void)halves;
  (void)partial, (void)counters;
  __trap();
#endif
}

__global__ void wg_probe_kernel(int* out) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  *out = 1;
#else
  *out = 0;
#endif
}

using EncodeTiled = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*,
                                 const cuuint64_t*, const cuuint64_t*, const cuuint32_t*,
                                 const cuuint32_t*, CUtensorMapInterleave, CUtensorMapSwizzle,
                                 CUtensorMapL2promotion, CUtensorMapFloatOOBfill);

// The driver's tensor-map encoder (looked up once; null where the driver lacks it).
EncodeTiled encoder() {
  static const EncodeTiled fn = [] {
    void* p = nullptr;
    cudaDriverEntryPointQueryResult q{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault,
                                         &q) != cudaSuccess ||
        q != cudaDriverEntryPointSuccess) {
      (void)cudaGetLastError();
      return static_cast<EncodeTiled>(nullptr);
    }
    return reinterpret_cast<EncodeTiled>(p);
  }();
  return fn;
}

// (rows, cols) f16 at p, rows `stride` bytes apart, in boxes of 64 columns x box_rows.
CUtensorMap f16_map(const void* p, int64_t rows, int64_t cols, int64_t stride, int box_rows) {
  const EncodeTiled enc = encoder();
  if (!enc) throw Error("mm_sk: the driver has no cuTensorMapEncodeTiled");
  CUtensorMap m;
  const cuuint64_t dims[2] = {static_cast<cuuint64_t>(cols), static_cast<cuuint64_t>(rows)};
  const cuuint64_t strides[1] = {static_cast<cuuint64_t>(stride)};
  const cuuint32_t box[2] = {kStageElems, static_cast<cuuint32_t>(box_rows)};
  const cuuint32_t elem[2] = {1, 1};
  const CUresult r =
      enc(&m, CU_TENSOR_MAP_DATA_TYPE_FLOAT16, 2, const_cast<void*>(p), dims, strides, box, elem,
          CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
          CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS)
    throw Error("mm_sk: cuTensorMapEncodeTiled failed (" + std::to_string(static_cast<int>(r)) +
                ")");
  return m;
}

template <int NG>
void launch_ng(const HalfLaunch& l, cudaStream_t stream) {
  constexpr int NC = 8 * NG;
  Maps maps{};
  const int n_jobs = l.jobs.glu ? 2 : l.n_jobs;
  for (int i = 0; i < n_jobs; ++i) {
    const DevMatrix& W = l.jobs.W[i];
    maps.w[i] = f16_map(W.qs, W.rows, W.cols, W.qs_stride, l.jobs.glu ? 32 : kTileRows);
  }
  const int64_t K = l.jobs.W[0].cols;
  maps.x = f16_map(l.xh, l.n, K, 2 * K, NC);
  const size_t ring = static_cast<size_t>(kStages) * slot_bytes(NG) + 1024;
  const size_t gl = static_cast<size_t>(kTileRows) * (NC + 1) * sizeof(float) + 1024;
  const size_t smem = std::max(ring, gl);
  CUDA_CHECK(cudaFuncSetAttribute(mm_f16wg_kernel<NG>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  static_cast<int>(smem)));
  const dim3 grid(static_cast<unsigned>(l.tiles), static_cast<unsigned>(l.splits));
  launch(mm_f16wg_kernel<NG>, grid, kThreads, smem, stream, maps, l.jobs, l.n, l.ldy, l.accumulate,
         l.total, l.halves, l.partial, l.counters);
  CUDA_CHECK_LAUNCH();
}

}  // namespace

void launch_f16wg(const HalfLaunch& l, cudaStream_t stream) {
  if (l.jobs.W[0].type != DType::F16) throw Error("mm_sk: the wgmma mode is F16 only");
  if (l.jobs.W[0].cols % kStageElems != 0)
    throw Error("mm_sk: the wgmma mode needs rows of whole 64-element stages");
  switch ((l.n + 7) / 8) {
    case 1:
      launch_ng<1>(l, stream);
      break;
    case 2:
      launch_ng<2>(l, stream);
      break;
    case 3:
      launch_ng<3>(l, stream);
      break;
    case 4:
      launch_ng<4>(l, stream);
      break;
    case 5:
    case 6:
    case 7:
    case 8:
      launch_ng<8>(l, stream);
      break;
    default:
      throw Error("mm_sk: the wgmma mode takes 1 to 64 rows");
  }
}

int f16wg_stages(int64_t cols) {
  return static_cast<int>(cols / kStageElems);
}

}  // namespace llm::cuda::sk

namespace llm::cuda {

bool mm_sk_wgmma_available() {
  int dev = 0, major = 0, minor = 0;
  if (cudaGetDevice(&dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  if (major != 9 || minor != 0) return false;
  int* d = nullptr;
  if (cudaMalloc(&d, sizeof(int)) != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  int got = 0;
  sk::wg_probe_kernel<<<1, 1>>>(d);
  cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess) e = cudaMemcpy(&got, d, sizeof(int), cudaMemcpyDeviceToHost);
  cudaFree(d);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  return got == 1;
}

}  // namespace llm::cuda
