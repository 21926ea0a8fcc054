// The one-row gate/up product with the SwiGLU in its epilogue (cuda/matvec_glu.h). Warp w of
// block b computes outputs i = 32 b + 2 w and i + 1: rows i, i + 1 of gate and of up (4 rows),
// each lane taking the units u with u % 32 == lane in increasing order, as matvec_quant's
// generic kernel does for a matrix without k_offset; the block's 32 results meet in shared
// memory and one warp quantizes them as the SwiGLU kernel would. With NORM, the block first
// normalizes the input row into shared memory as q8 (a float4 per thread, as rmsnorm's
// register kernel with the same 512 threads).
#include "cuda/act.cuh"
#include "cuda/matvec_glu.h"
#include "cuda/qweight.cuh"
#include "cuda/rmsnorm.h"

namespace llm::cuda {
namespace {

constexpr int kWarps = 16;              // a block: 32 outputs
constexpr int kThreads = kWarps * 32;   // rmsnorm's block for rows of 1,924 to 2,048
constexpr int kOut = 32 / kWarps;       // outputs per warp
constexpr int kRows = 2 * kOut;         // gate rows, then up rows
constexpr int kNormMax = 4 * kThreads;  // elements of a row the NORM mode holds

// One unit of every row in flight per lane, the next one loading (two measured slower on an
// H100: 128 registers, one block per SM; PERF.md, run 82).
template <DType T, bool NORM>
__global__ void __launch_bounds__(kThreads, 2)
    matvec_glu_kernel(DevMatrix G, DevMatrix Up, GluInput in, ActOut out) {
  __shared__ float v_s[32];
  __shared__ __align__(16) int8_t xq_s[NORM ? kNormMax : 16];
  __shared__ float2 xd_s[NORM ? kNormMax / 32 : 1];
  __shared__ float red[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t i0 = static_cast<int64_t>(blockIdx.x) * 32 + warp * kOut;
  const int64_t nu = G.cols / 32;
  float acc[kRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r) acc[r] = 0.0f;

  // Weights (and the norm's) before the PDL wait: constant; the activations after it.
  auto load = [&](Unit(&dst)[kRows], int64_t u) {
#pragma unroll
    for (int r = 0; r < kRows; ++r)
      if (u < nu)
        dst[r] = r < kOut ? load_unit<T>(G, i0 + r, u) : load_unit<T>(Up, i0 + r - kOut, u);
  };
  Unit w[kRows];
  load(w, lane);
  float4 wv = make_float4(0, 0, 0, 0);
  if constexpr (NORM) wv = norm_row_weights(in.norm_w, G.cols);
  pdl_wait();
  pdl_trigger();
  if constexpr (NORM) norm_row_q8(in.h, wv, G.cols, in.eps, xq_s, xd_s, red);
  for (int64_t u = lane; u < nu; u += 32) {
    Unit next[kRows];
    load(next, u + 32);
    int xi[8];
    float2 xds;
    if constexpr (NORM)
      load_act_q8<true>(xq_s, xd_s, u, xi, xds);
    else
      load_act_q8<false>(in.x_q8.qs, in.x_q8.ds, u, xi, xds);
#pragma unroll
    for (int r = 0; r < kRows; ++r)  // an explicit add, as the generic kernel's
      acc[r] = __fadd_rn(acc[r], dot_unit<T>(w[r], u, xi, xds));
#pragma unroll
    for (int r = 0; r < kRows; ++r) w[r] = next[r];
  }
  float g = 0.0f, up = 0.0f;
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const float s = warp_sum(acc[r]);
    if (r < kOut && lane == r) g = s;
    if (r >= kOut && lane == r - kOut) up = s;
  }
  // expf, not __expf: the SwiGLU kernel's expression (activation.cu), so the same bits.
  if (lane < kOut) v_s[warp * kOut + lane] = g / (1.0f + expf(-g)) * up;
  __syncthreads();
  if (warp == 0) act_store(out, 0, G.rows, static_cast<int64_t>(blockIdx.x) * 32 + lane, v_s[lane]);
}

template <DType T>
void launch_t(const DevMatrix& G, const DevMatrix& Up, const GluInput& in, const ActOut& out,
              cudaStream_t stream) {
  const unsigned blocks = static_cast<unsigned>(matvec_glu_blocks(G));
  if (in.h)
    launch(matvec_glu_kernel<T, true>, blocks, kThreads, 0, stream, G, Up, in, out);
  else
    launch(matvec_glu_kernel<T, false>, blocks, kThreads, 0, stream, G, Up, in, out);
}

}  // namespace

bool matvec_glu_supported(const DevMatrix& gate, const DevMatrix& up) {
  const DType t = gate.type;
  return (t == DType::Q4_0 || t == DType::Q4_1 || t == DType::Q5_0) && up.type == t &&
         gate.rows == up.rows && gate.cols == up.cols && gate.rows % 32 == 0 &&
         gate.cols % 32 == 0 && gate.rows > 0;
}

bool matvec_glu_norm_supported(int64_t n) {
  return n > 0 && n <= kNormMax && n % 32 == 0 &&
         rmsnorm_vec_threads(static_cast<int>(n)) == kThreads;
}

int64_t matvec_glu_blocks(const DevMatrix& gate) {
  return gate.rows / 32;
}

void matvec_glu(const DevMatrix& gate, const DevMatrix& up, const GluInput& in, const ActOut& out,
                cudaStream_t stream) {
  if (!matvec_glu_supported(gate, up))
    throw Error(
        "matvec_glu: gate and up must be Q4_0, Q4_1 or Q5_0 of one shape, rows and "
        "columns multiples of 32");
  if (in.h ? !in.norm_w || !matvec_glu_norm_supported(gate.cols) : !in.x_q8.qs)
    throw Error(
        "matvec_glu: needs q8 activations, or a row of 1,924 to 2,048 (a multiple of 32) "
        "and its norm weights");
  switch (gate.type) {
    case DType::Q4_0:
      launch_t<DType::Q4_0>(gate, up, in, out, stream);
      break;
    case DType::Q4_1:
      launch_t<DType::Q4_1>(gate, up, in, out, stream);
      break;
    default:
      launch_t<DType::Q5_0>(gate, up, in, out, stream);
      break;
  }
  CUDA_CHECK_LAUNCH();
}

}  // namespace llm::cuda
