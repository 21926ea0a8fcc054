// One-row feed-forward input: silu(gate · x) * (up · x) from quantized gate and up
// matrices in one launch, written in the formats the down product reads (f32 / f16 / q8).
// A block owns 32 consecutive outputs (a q8 block of the result), so the SwiGLU and its
// quantization need no other block: the separate SwiGLU launch of a one-row step goes away.
// Where the row is short enough, the block also computes the RMSNorm before the product
// (every block the whole row: 8 KiB of reads at 2,048 wide), and that launch goes too.
#pragma once
#include "cuda/cuda_types.h"

namespace llm::cuda {

// Whether matvec_glu takes this pair: the same generic quantized type (Q4_0, Q4_1, Q5_0:
// the types whose one-row GEMV is matvec_quant's generic kernel), equal shapes, rows and
// cols multiples of 32.
bool matvec_glu_supported(const DevMatrix& gate, const DevMatrix& up);
// Whether it can also normalize its input row of n elements (n = gate.cols) as rmsnorm()
// would, bit for bit: where rmsnorm's register kernel runs 512 threads (n 1,924 to 2,048).
bool matvec_glu_norm_supported(int64_t n);
// Blocks of one launch: gate.rows / 32 (512 threads each, two resident per SM).
int64_t matvec_glu_blocks(const DevMatrix& gate);

// The input row: q8 activations (x_q8, gate.cols), or with `norm` the f32 row h to
// normalize by rmsnorm(h, w, eps) first (matvec_glu_norm_supported(gate.cols)).
struct GluInput {
  ActQ8 x_q8;
  const float* h = nullptr;       // (gate.cols) f32, or null: x_q8
  const float* norm_w = nullptr;  // (gate.cols)
  float eps = 0.0f;
};

// out: one row of gate.rows elements (must not alias the input). Each row's sums are the
// generic GEMV's bit for bit (the same units per lane in the same order), the SwiGLU is
// swiglu()'s and the norm rmsnorm()'s, so the result equals rmsnorm + matvec + swiglu.
void matvec_glu(const DevMatrix& gate, const DevMatrix& up, const GluInput& in, const ActOut& out,
                cudaStream_t stream);

}  // namespace llm::cuda
