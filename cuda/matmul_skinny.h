// Products of a few to 64 activation rows that stream the weights at close to the memory
// bandwidth: batched decode, speculative verification, a short chunk after a cached prefix.
//
// Each warp streams 16 weight rows through a shared-memory ring (cp.async, 16-byte
// pieces, several stages in flight) and reads its mma.sync fragments with ldmatrix; the
// activations of the same stages come through a ring shared by the CTA's 4 warps. Quantized weights
// (Q4_0, Q4_1, Q8_0) multiply q8 activations as int8 on the tensor cores, one k32 product per
// 32-element unit, whose integer sum meets the unit's scales in f32 exactly as in the GEMV
// (cuda/qweight.cuh combine_unit); F16 weights multiply f16 activations with f32 accumulation.
#pragma once
#include "cuda/cuda_types.h"
#include "cuda/matvec_quant.h"  // Epilogue, RopeStore

namespace llm::cuda {

// Activation rows per pass; more rows run in passes (the weights are read again).
constexpr int kSkMaxCols = 64;

// Whether mm_sk handles this matrix: F16, Q8_0, Q4_0, Q4_1 with rows of a whole number of
// 64-byte pieces (F16: 32 elements, Q8_0: 64, Q4_0/Q4_1: 128) and aligned planes.
bool mm_sk_supported(const DevMatrix& W);
// Q4_0 products of more than this many rows dequantize the weights to f16 in registers
// and take f16 activations (the half mode): two f16 mma per unit and group of 8 rows
// instead of an int8 mma and its scale arithmetic, which costs more from 3 groups on.
constexpr int kSkHalfFrom = 16;
bool mm_sk_half(const DevMatrix& W, int n);
// Whether the activations of an n-row product are q8 (quantized weights) rather than f16.
bool mm_sk_wants_q8(const DevMatrix& W, int n);

// Split-K scratch (cuda_types.h): partial (splits, n, rows of the launch), counters one per
// 64-row tile of the launch.
using MmSkWorkspace = SplitKWorkspace;

// Matrices one launch may take (of one type and width: q/k/v, gate/up).
constexpr int kSkMaxJobs = 3;

// CTAs a split launch aims for (about 2 per SM): K of split_k products is cut until
// tiles x splits reaches it.
struct MmSkConfig {
  int target_ctas = 264;
  int col_split_elems = 0;  // > 0: K of the other products too is cut into pieces this long
  // The half mode's passes of up to kSkRegMaxRows rows load the weights straight into
  // registers (cuda/matmul_skinny_q4r.cu) instead of through the shared-memory ring;
  // reg_bufs weight stages (2 or 3) are held in registers, and the activations come
  // through a ring of reg_x_slots stages (3 or 4) in shared memory.
  bool reg_weights = true;
  int reg_bufs = 2;
  int reg_x_slots = 3;
  // The activation copies of the register kernel and of the ring kernel allocate in L1
  // (cp.async.ca): the CTAs an SM holds read the same activations.
  bool reg_x_l1 = true;
  bool ring_x_l1 = true;
  // F16 weights on warpgroup MMA, both operands through shared memory
  // (cuda/matmul_skinny_f16wg.cu; sm_90a only: mm_sk_wgmma_available). The caller sets it.
  bool f16_wgmma = false;
};
constexpr int kSkRegMaxRows = 32;
// Whether this build's code for the current device has the warpgroup-MMA kernels (sm_90a:
// an H100 or H200 built with CMAKE_CUDA_ARCHITECTURES 90a); asks the device each call.
bool mm_sk_wgmma_available();

// The number of CTAs K is split across in a launch whose first matrix is W, for any n:
// without split_k K stays whole; with it the count depends on W's rows and K only, so a
// tensor-parallel rank holding a slice of K splits that slice as one GPU with k_halves
// splits each half.
int mm_sk_splits(const DevMatrix& W, const MmSkConfig& cfg, bool split_k = false,
                 bool k_halves = false);
// Workspace sizes: floats of partial any n needs for launches with W's type and width and
// rows_total rows in all; counters: a launch needs the sum of its matrices' mm_sk_tiles.
size_t mm_sk_partial_floats(const DevMatrix& W, int64_t rows_total, const MmSkConfig& cfg);
size_t mm_sk_tiles(const DevMatrix& W);

struct MmSkArgs {
  const DevMatrix* W[kSkMaxJobs] = {};  // n_jobs matrices of one type and width
  float* y[kSkMaxJobs] = {};            // y[j]: (n, ldy) f32, y[j][c * ldy + r]
  int n_jobs = 1;
  ActQ8 x_q8;                     // (n, W.cols): for quantized weights
  const __half* x_f16 = nullptr;  // (n, W.cols): for F16 weights
  int n = 0;
  int64_t ldy = 0;
  bool accumulate = false;  // y += instead of y =
  // Few rows and a long K (wo, w_down): split K across CTAs to fill the GPU.
  bool split_k = false;
  // Sum the two halves of K apart, y = (y + S0) + S1: one GPU then gives the bits of two
  // tensor-parallel ranks that hold a half each (row-parallel wo and w_down).
  bool k_halves = false;
  MmSkWorkspace ws;
  MmSkConfig cfg;
  // SwiGLU mode: W[0] = gate, W[1] = up (same shape, rows divisible by 32, K whole:
  // cfg.col_split_elems 0); instead of y, the launch writes silu(gate·x) * (up·x) to
  // glu_out, (n, rows), in each format asked for, with the SwiGLU kernel's arithmetic.
  bool glu = false;
  ActOut glu_out;
  // Per matrix, instead of y (K whole, rows even): the attention inputs' epilogue of the
  // decode GEMV (matvec_quant.h) — bias, RoPE of llama's neighbour pairs (2i, 2i+1) and
  // the f16 store into the paged cache at each row's slot; RopeToY writes y[c * ldy + r].
  Epilogue epilogue[kSkMaxJobs] = {Epilogue::None, Epilogue::None, Epilogue::None};
  RopeStore rope[kSkMaxJobs];
};

void mm_sk(const MmSkArgs& a, cudaStream_t stream);

}  // namespace llm::cuda
