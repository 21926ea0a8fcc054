// Matrix-vector products for decode (a few activation rows): y = x · Wᵀ, reading every
// weight byte once per call and dequantizing in registers. Quantized weights use integer
// dot products against q8 activations (dp4a); F32/F16/BF16 weights use f32 activations.
#pragma once
#include "cuda/cuda_types.h"

namespace llm::cuda {

// What happens to the results of the q/k/v projections in a decode step, fused into the
// matvec: bias, RoPE (llama's Norm pairing: rows 2i and 2i+1 of a head, which one warp
// computes together), and for k and v the f16 store into the KV cache at each column's
// slot. Column c of the activations is batch row c.
enum class Epilogue { None, RopeToY, RopeToCache, ToCache };
struct RopeStore {
  const float* bias = nullptr;         // (W.rows) or null
  const int32_t* positions = nullptr;  // (n)
  const int32_t* slots = nullptr;      // (n)
  const float* inv_freq = nullptr;     // (rope_dim / 2)
  int head_dim = 0, rope_dim = 0;
  __half* cache = nullptr;  // (n_slots, W.rows) this layer's K or V
  // Optional (the skinny products' epilogue): (n, rope_dim / 2) {cos, sin} of each row's
  // angles (rope_cs_table), instead of working them out per element.
  const float2* cs = nullptr;
};

// One matrix of a launch: y[c * ldy + r] (+)= sum_k W[r][k] * x[c][k].
struct MatvecJob {
  DevMatrix W;
  float* y = nullptr;  // (n, ldy) f32
  int64_t ldy = 0;
  bool accumulate = false;  // add into y (residual connections) instead of overwriting
  Epilogue epilogue = Epilogue::None;
  RopeStore rope;  // for the epilogues other than None
  // The order of the sums, so that tensor parallelism over two ranks gives the same bits as
  // one GPU (the generic unit and float kernels; the k-quant and Q8_0 kernels ignore it):
  //   k_offset: W is columns [k_offset, k_offset + W.cols) of a wider matrix (a rank's
  //     slice); lanes take the elements the whole matrix's kernel would give them.
  //   k_split: the sum over columns [0, k_split) and the sum over the rest are reduced apart
  //     and added to y in that order, y = (y + S0) + S1: what rank 0 (y + S0) and rank 1
  //     (S1) give after their all-reduce. 0: one sum. Multiples of 32 (of 8 for floats).
  int64_t k_offset = 0;
  int64_t k_split = 0;
};

// Whether the matvec of W computes rows in even-aligned pairs (what the RoPE epilogues
// need): every weight type but float rows of a length not divisible by 8.
bool matvec_pairs_rows(const DevMatrix& W);

// Activation columns handled per pass; more columns are processed in passes.
constexpr int kMatvecMaxCols = 8;

// Alternative kernels (cuda/matvec_kq.cu says what each changes and why). A backend reads
// them once, from LLM_CUDA_MV_KQ (default 15 = 1 + 2 + 4 + 8; 0: the first kernels): a bit mask
//   1  Q4_K, Q5_K, Q6_K: super-block scales loaded once per super-block as one word per
//      lane and handed out by shuffles, instead of a 16-byte copy per unit in flight
//   2  Q8_0: two lanes per unit, so that a load instruction covers 512 contiguous bytes
//   4  (with 1) matrices of different k-quant types in one launch: q/k/v of the layers
//      whose v is Q6_K in Q4_K_M / Q5_K_M files
//   8  (with 1) the k-quant kernels at one column without their register cap (ptxas's
//      choice: more independent loads per warp, fewer warps per SM)
//  16  (with 2) the Q8_0 kernel at one column with 4 slots in flight instead of 2 (the
//      default kernel's bytes in flight per warp), still capped at 80 registers
// (7 = the candidates). Results agree with the default kernels to float rounding.
struct MatvecVariant {
  bool kquant = false;
  bool q8 = false;
  bool mixed = false;
  bool uncapped = false;
  bool q8_deep = false;
  // A product split in two halves of K (MatvecJob::k_split) at one column with fewer row
  // groups (2 rows) than this: a warp for each half, the same sums (generic quantized
  // kernel). The backend sets 8 per SM (H100: the llama-1b draft's wo / w_down, 1,024
  // groups, gained; a 7B's 2,048 lost 6 %; PERF.md, run 80); LLM_CUDA_MV_PAIRS=0: never.
  int64_t pairs_below = INT64_MAX;
};
// Parses LLM_CUDA_MV_KQ (unset: 15); throws llm::Error for a value that is not a
// number from 0 to 31.
MatvecVariant matvec_variant_from_env();

// How many of the first n_jobs jobs (1..3) can share one launch: same cols and type, or
// under v.mixed two k-quant types.
int matvec_group(const MatvecJob* jobs, int n_jobs, const MatvecVariant& v);

// The input row's RMSNorm done by the product itself (one row, generic quantized types):
// every block of 512 threads normalizes the row into shared memory as rmsnorm() would, bit for
// bit, instead of a launch of its own. h: (cols) f32; w: (cols) the norm weights.
struct MatvecNorm {
  const float* h = nullptr;
  const float* w = nullptr;
  float eps = 0.0f;
};
// Whether matvec can take `norm` for these jobs at n columns: n == 1; Q4_0, Q4_1 or Q5_0
// (matvec_quant's generic kernel); no k_split; cols where rmsnorm's register kernel runs 512
// threads (1,924 to 2,048, a multiple of 32).
bool matvec_norm_supported(const MatvecJob* jobs, int n_jobs, int n);

// Up to 3 jobs that matvec_group puts together run as one launch (q/k/v, gate/up).
//   x_f32: (n, cols) f32 — read for float weights;  x_q8: (n, cols) — read for quantized.
//   norm: null, or the row to normalize instead of reading x (matvec_norm_supported).
void matvec(const MatvecJob* jobs, int n_jobs, const float* x_f32, const ActQ8& x_q8, int n,
            cudaStream_t stream, const MatvecVariant& variant = {},
            const MatvecNorm* norm = nullptr);

}  // namespace llm::cuda
