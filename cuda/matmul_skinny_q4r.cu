// The skinny products' half mode for Q4_0 (17..32 activation rows) with the weights
// loaded from global memory straight into registers.
//
// Why: mm_sk's own kernel stages the weights through a shared-memory ring, and at 32
// rows the shared-memory pipe is its limit (H100, Nsight Compute: ~85 % busy; cp.async
// writes cost about one wavefront per 32-byte sector, and each warp of 16 weight rows
// reads the whole activation tile per stage). Here a warp takes 32 weight rows (two mma
// m-tiles sharing each activation fragment) and its lanes load them with 16-byte global
// loads, several stages ahead; only the activations go through shared memory.
//
// Layout. A stage is 64 bytes of each weight row: four Q4_0 units (128 elements). Lane
// 4g + t loads unit t of rows g and g + 8 of each m-tile (16 bytes each: a warp reads 8
// rows x 64 contiguous bytes). The mma k-slots of lane t then hold elements of unit t
// only: for nibble word w of the unit (bytes 4w..4w+3), the f16 step "lo" takes elements
// 4w..4w+3 (slots 2t, 2t+1 / 2t+8, 2t+9) and "hi" elements 16+4w..16+4w+3, and the B
// operand (activation row g) holds the same elements of that row. Each unit's scale is
// multiplied into its weights before the mma (as in mm_sk's half mode), so one mma may
// mix four units. The activations of a stage, 256 bytes a row, sit in shared memory with
// their 16-byte pieces permuted (piece q of unit u at 4u + (q ^ 2(u >> 1) ^ (row & 1)) &
// 3), so that each quarter warp's 16-byte fragment loads (rows g, g + 1, units 0..3) hit
// eight distinct bank groups.
//
// A CTA is 2 row warps (a 64-row tile) x 2 k-groups; each k-group streams its half of the
// CTA's stages through its own activation ring, and the halves' sums meet in shared memory
// at the end (as in mm_sk). One barrier per stage serves the whole CTA: a named barrier per
// k-group was within run-to-run noise on an H100, and compute-sanitizer's racecheck does
// not follow named barriers. (4 k-groups of the same tile, for more warps per SM: slower.)
//
// The activation copies allocate in L1 (cp.async.ca): every tile of an unsplit launch
// reads all the activations, stage by stage, so the three CTAs an SM holds mostly find a
// stage that a neighbour copied. H100, 7B Q4_0, 32-row decode steps: 5.77 -> 5.13-5.18 ms.
// The ring has 3 slots (48 KiB a CTA at 32 rows) rather than 4 (64 KiB): the smaller
// shared-memory carve-out leaves more of the SM's 256 KiB to L1 (5.90-5.93 -> 5.74-5.81 ms
// before the L1 copies; with the carve-out forced to the maximum, 3 slots lost it again).
// Tiles, splits, the split-K sums and the epilogues are mm_sk's (matmul_skinny_jobs.cuh);
// measurements in PERF.md.
#include <algorithm>
#include <type_traits>

#include "cuda/matmul_skinny_q4r.h"
#include "engine/error.h"

namespace llm::cuda::sk {
namespace {

constexpr int kRW = 2, kKG = 2;  // row warps (a 64-row tile) and k-groups of a CTA
constexpr int kWarps = kRW * kKG, kThreads = 32 * kWarps;
constexpr int kXB = 256;    // activation bytes of one row per stage (128 f16)
constexpr int kPiece = 64;  // weight bytes of one row per stage (4 units of 16 bytes)
constexpr int kSc = 8;      // scale bytes of one row per stage (4 f16)

// Weight stage in registers: [m-tile][row g / g + 8] nibbles and scale bits.
struct WStage {
  uint4 q[2][2];
  uint32_t d[2][2];
};

template <int W>
__device__ __forceinline__ uint32_t word(const uint4& v) {
  return W == 0 ? v.x : W == 1 ? v.y : W == 2 ? v.z : v.w;
}
// Physical 16-byte piece of piece q of unit u in an activation row with parity `odd`.
__device__ __forceinline__ int x_piece(int u, int q, int odd) {
  return 4 * u + ((q ^ ((u >> 1) << 1) ^ odd) & 3);
}

// NG groups of 8 activation rows (n <= 8 NG); NB weight stages in registers; XS
// activation ring slots per k-group. Three weight stages need more registers than three
// CTAs per SM leave (168: spills).
template <int NG, int NB, int XS>
__global__ void __launch_bounds__(kThreads, NB == 3 ? 2 : 3)
    mm_q4r_kernel(Jobs jobs, const __half* __restrict__ xh, int n, int64_t ldy, bool accumulate,
                  int total, bool halves, float* __restrict__ partial, int* __restrict__ counters,
                  bool x_l1) {
  constexpr int NC = 8 * NG;
  constexpr int kXStages = XS;
  constexpr int kSlot = kKG * NC * kXB;            // bytes of one ring slot (all k-groups)
  extern __shared__ __align__(16) uint8_t smem[];  // (kXStages, kKG, NC, kXB)
  __shared__ int last;

  const int warp = static_cast<int>(threadIdx.x >> 5), lane = static_cast<int>(threadIdx.x & 31);
  const int g = lane >> 2, t = lane & 3;
  const int rw = warp % kRW, kh = warp / kRW;  // row warp, k-group
  const int tile = static_cast<int>(blockIdx.x);
  const int j = job_of(jobs, tile, rw);  // SwiGLU: row warp 0 gate, 1 up
  const DevMatrix W = pick(jobs.W, j);
  const int first_tile = j == 0 || jobs.glu ? 0 : j == 1 ? jobs.tile_end[0] : jobs.tile_end[1];
  const int64_t M = W.rows, K = W.cols;
  const int S = static_cast<int>(gridDim.y);
  const int st0 = static_cast<int>(static_cast<int64_t>(blockIdx.y) * total / S);
  const int nst = static_cast<int>(static_cast<int64_t>(blockIdx.y + 1) * total / S) - st0;
  const int64_t tile0 = static_cast<int64_t>(tile - first_tile) * (jobs.glu ? 32 : kTileRows);
  const int64_t row0 = tile0 + (jobs.glu ? 0 : 32 * rw);  // this warp's 32 rows
  // k-group 0 takes the first n0 of the CTA's stages, k-group 1 the other n1 (as mm_sk).
  const int n0 = (nst + 1) / 2, n1 = nst - n0;
  const int my_n = kh ? n1 : n0, my_st0 = st0 + (kh ? n0 : 0);

  // Weight rows of this lane: m-tile mt, row g + 8 h (rows past M: loaded, never stored),
  // as 32-bit offsets from the stage's base (q4r_fits), kept in registers: left to itself
  // the compiler worked the clamped 64-bit addresses out again in every stage.
  const uint8_t* q_base = W.qs + static_cast<int64_t>(my_st0) * kPiece + 16 * t;
  const uint8_t* d_base = W.sc + static_cast<int64_t>(my_st0) * kSc + 2 * t;
  uint32_t q_off[2][2], d_off[2][2];
#pragma unroll
  for (int mt = 0; mt < 2; ++mt)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t r = min(row0 + 16 * mt + 8 * h + g, M - 1);
      q_off[mt][h] = static_cast<uint32_t>(r * W.qs_stride);
      d_off[mt][h] = static_cast<uint32_t>(r * W.sc_stride);
    }
  auto load_w = [&](WStage& b, int i) {
    if (i >= my_n) return;
    keep_in_register(q_base);
    keep_in_register(d_base);
    const uint8_t* qb = q_base + static_cast<int64_t>(i) * kPiece;
    const uint8_t* db = d_base + static_cast<int64_t>(i) * kSc;
#pragma unroll
    for (int mt = 0; mt < 2; ++mt)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        keep_in_register(q_off[mt][h]);
        keep_in_register(d_off[mt][h]);
        b.q[mt][h] = ld16_stream(qb + q_off[mt][h]);  // read once: no L1 allocation
        b.d[mt][h] = __ldg(reinterpret_cast<const unsigned short*>(db + d_off[mt][h]));
      }
  };

  // Activation copies: the k-group's 64 threads copy rows cc, cc + 4, ... (piece p).
  const int ktid = static_cast<int>(threadIdx.x) - kRW * 32 * kh;
  const int cc = ktid >> 4, p = ktid & 15;
  const int x_off = (kh * NC + cc) * kXB + 16 * x_piece(p >> 2, p & 3, cc & 1);  // in smem
  const uint32_t x_s =
      static_cast<uint32_t>(__cvta_generic_to_shared(smem)) + static_cast<uint32_t>(x_off);
  const int64_t row_bytes = 2 * K;
  const uint8_t* x_g = reinterpret_cast<const uint8_t*>(xh) + cc * row_bytes +
                       static_cast<int64_t>(my_st0) * kXB + p * 16;
  auto issue_x = [&](int i, int slot) {
    if (i >= my_n) return;
    const uint32_t so = static_cast<uint32_t>(slot * kSlot);
    const uint8_t* src = x_g + static_cast<int64_t>(i) * kXB;
#pragma unroll
    for (int q = 0; q < NC / 4; ++q)
      if (cc + 4 * q < n) cp_async16_l1_s(x_s + so + q * 4 * kXB, src + q * 4 * row_bytes, x_l1);
  };
  // B fragment addresses: row g of group 0, piece q of unit t.
  uint32_t b_off[4];
#pragma unroll
  for (int q = 0; q < 4; ++q) b_off[q] = static_cast<uint32_t>(16 * x_piece(t, q, g & 1));
  // Shared memory is read and zeroed with plain loads and stores (not asm without a memory
  // clobber, which the compiler may move across a barrier).
  const uint8_t* b_row = smem + (kh * NC + g) * kXB;

  WStage wb[NB];
#pragma unroll
  for (int s = 0; s < NB - 1; ++s) load_w(wb[s], s);  // weights: before the producer finishes
  pdl_wait();
  pdl_trigger();
  // Rows n..NC-1 of every slot are zero (never copied into).
#pragma unroll
  for (int q = 0; q < NC / 4; ++q)
    if (cc + 4 * q >= n)
      for (int s = 0; s < kXStages; ++s)
        *reinterpret_cast<uint4*>(smem + x_off + s * kSlot + q * 4 * kXB) = make_uint4(0, 0, 0, 0);
  for (int s = 0; s < kXStages - 1; ++s) {
    issue_x(s, s);
    cp_async_commit();
  }

  float acc[2][NG][4];
#pragma unroll
  for (int mt = 0; mt < 2; ++mt)
#pragma unroll
    for (int ng = 0; ng < NG; ++ng)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[mt][ng][e] = 0.0f;

  auto compute = [&](const WStage& b, int slot) {
    const uint8_t* xb = b_row + slot * kSlot;
    __half2 d[2][2];
#pragma unroll
    for (int mt = 0; mt < 2; ++mt)
#pragma unroll
      for (int h = 0; h < 2; ++h)
        d[mt][h] = __half2half2(__ushort_as_half(static_cast<unsigned short>(b.d[mt][h])));
    auto half_words = [&](auto WP) {
      constexpr int wp = decltype(WP)::value;  // nibble words 2 wp, 2 wp + 1
      // B: piece wp holds the "lo" elements of both words, piece 2 + wp the "hi" ones.
      uint4 blo[NG], bhi[NG];
#pragma unroll
      for (int ng = 0; ng < NG; ++ng) {
        blo[ng] = *reinterpret_cast<const uint4*>(xb + ng * 8 * kXB + b_off[wp]);
        bhi[ng] = *reinterpret_cast<const uint4*>(xb + ng * 8 * kXB + b_off[2 + wp]);
      }
#pragma unroll
      for (int mt = 0; mt < 2; ++mt) {
        uint32_t A[2][2][4];  // [word][lo / hi][a0..a3]: a0 / a2 row g, a1 / a3 row g + 8
        q4_half_pairs(word<2 * wp>(b.q[mt][0]), d[mt][0], A[0][0][0], A[0][0][2], A[0][1][0],
                      A[0][1][2]);
        q4_half_pairs(word<2 * wp>(b.q[mt][1]), d[mt][1], A[0][0][1], A[0][0][3], A[0][1][1],
                      A[0][1][3]);
        q4_half_pairs(word<2 * wp + 1>(b.q[mt][0]), d[mt][0], A[1][0][0], A[1][0][2], A[1][1][0],
                      A[1][1][2]);
        q4_half_pairs(word<2 * wp + 1>(b.q[mt][1]), d[mt][1], A[1][0][1], A[1][0][3], A[1][1][1],
                      A[1][1][3]);
#pragma unroll
        for (int ng = 0; ng < NG; ++ng) {
          const uint32_t(&a0)[4] = A[0][0];
          const uint32_t(&a1)[4] = A[1][0];
          const uint32_t(&h0)[4] = A[0][1];
          const uint32_t(&h1)[4] = A[1][1];
          mma_f16(acc[mt][ng], a0[0], a0[1], a0[2], a0[3], blo[ng].x, blo[ng].y);
          mma_f16(acc[mt][ng], a1[0], a1[1], a1[2], a1[3], blo[ng].z, blo[ng].w);
          mma_f16(acc[mt][ng], h0[0], h0[1], h0[2], h0[3], bhi[ng].x, bhi[ng].y);
          mma_f16(acc[mt][ng], h1[0], h1[1], h1[2], h1[3], bhi[ng].z, bhi[ng].w);
        }
      }
    };
    half_words(std::integral_constant<int, 0>{});
    half_words(std::integral_constant<int, 1>{});
  };

  // Step i: stage i + NB - 1's weights into the registers stage i - 1 used, stage i's
  // activations landed (this thread's copies, then the CTA barrier, after which
  // slot (i - 1) % kXStages is free for stage i + kXStages - 1), then the products.
  // Committed before step i: kXStages - 1 + i groups; stage i is group i.
  // Both k-groups take n0 steps (k-group 1 one without products where n1 < n0), so that
  // one CTA barrier serves both.
  auto step = [&](auto B, int i) {
    constexpr int b = decltype(B)::value;
    if (i >= n0) return;
    load_w(wb[(b + NB - 1) % NB], i + NB - 1);
    cp_async_wait<kXStages - 2>();
    __syncthreads();
    issue_x(i + kXStages - 1, (i + kXStages - 1) % kXStages);
    cp_async_commit();
    if (i < my_n) compute(wb[b], i % kXStages);
  };
  for (int i = 0; i < n0; i += NB) {
    step(std::integral_constant<int, 0>{}, i);
    step(std::integral_constant<int, 1>{}, i + 1);
    if constexpr (NB == 3) step(std::integral_constant<int, 2>{}, i + 2);
  }

  // k-group 1 hands its sums to k-group 0 through the idle ring: sum = S0 + S1.
  cp_async_wait<0>();
  __syncthreads();
  float* red = reinterpret_cast<float*>(smem);  // (kRW, 32, 2, NG, 4)
  if (kh == 1) {
#pragma unroll
    for (int mt = 0; mt < 2; ++mt)
#pragma unroll
      for (int ng = 0; ng < NG; ++ng)
#pragma unroll
        for (int e = 0; e < 4; ++e)
          red[(((rw * 32 + lane) * 2 + mt) * NG + ng) * 4 + e] = acc[mt][ng][e];
  }
  __syncthreads();
  if (kh == 0) {
#pragma unroll
    for (int mt = 0; mt < 2; ++mt)
#pragma unroll
      for (int ng = 0; ng < NG; ++ng)
#pragma unroll
        for (int e = 0; e < 4; ++e)
          acc[mt][ng][e] += red[(((rw * 32 + lane) * 2 + mt) * NG + ng) * 4 + e];
  }

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
    __syncthreads();  // red read
    float* gl = reinterpret_cast<float*>(smem);
    // Tile rows 16 (2 rw + mt): the same rows mm_sk's row group 2 rw + mt has.
    if (kh == 0)
#pragma unroll
      for (int mt = 0; mt < 2; ++mt) tile_sums_to_shared<NG>(gl, acc[mt], 2 * rw + mt, lane);
    __syncthreads();
    finish_epilogue(gl, NC, jobs, j, tile0, o, warp, kWarps);
    return;
  }
  if (kh == 0)
#pragma unroll
    for (int mt = 0; mt < 2; ++mt) store_fragments<NG>(acc[mt], row0 + 16 * mt, lane, o);
  if (S == 1 || !last_split_arrival(counters, S, last)) return;
  split_sum<8>(o, tile0, halves, counters, kThreads);
}

template <int NG, int NB, int XS>
void launch_ng(const HalfLaunch& l, cudaStream_t stream) {
  constexpr int NC = 8 * NG;
  const size_t ring = static_cast<size_t>(XS) * kKG * NC * kXB;
  const size_t gl = static_cast<size_t>(kTileRows) * (NC + 1) * sizeof(float);
  const size_t red = static_cast<size_t>(kRW) * 32 * 2 * NG * 4 * sizeof(float);
  const size_t smem = std::max(ring, std::max(gl, red));
  CUDA_CHECK(cudaFuncSetAttribute(mm_q4r_kernel<NG, NB, XS>,
                                  cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  static_cast<int>(smem)));
  const dim3 grid(static_cast<unsigned>(l.tiles), static_cast<unsigned>(l.splits));
  launch(mm_q4r_kernel<NG, NB, XS>, grid, kThreads, smem, stream, l.jobs, l.xh, l.n, l.ldy,
         l.accumulate, l.total, l.halves, l.partial, l.counters, l.x_l1);
  CUDA_CHECK_LAUNCH();
}

template <int NG, int NB>
void launch_slots(const HalfLaunch& l, cudaStream_t stream) {
  if (l.x_slots == 4)
    launch_ng<NG, NB, 4>(l, stream);
  else
    launch_ng<NG, NB, 3>(l, stream);
}

template <int NG>
void launch_bufs(const HalfLaunch& l, cudaStream_t stream) {
  if (l.bufs == 3)
    launch_slots<NG, 3>(l, stream);
  else
    launch_slots<NG, 2>(l, stream);
}

}  // namespace

void launch_q4r(const HalfLaunch& l, cudaStream_t stream) {
  if (l.jobs.W[0].type != DType::Q4_0) throw Error("mm_sk: the register mode is Q4_0 only");
  switch ((l.n + 7) / 8) {
    case 3:
      launch_bufs<3>(l, stream);
      break;
    case 4:
      launch_bufs<4>(l, stream);
      break;
    default:
      throw Error("mm_sk: the register mode takes 17 to 32 rows");
  }
}

}  // namespace llm::cuda::sk
