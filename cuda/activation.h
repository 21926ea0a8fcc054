// SwiGLU: out = silu(gate) * up, silu(g) = g / (1 + exp(-g)), in the formats asked for.
#pragma once
#include "cuda/cuda_types.h"

namespace llm::cuda {

// gate, up: (n_rows, n) f32 (rows `ld` floats apart);  out: (n_rows, n).
void swiglu(const float* gate, const float* up, int64_t ld, int n_rows, int n, const ActOut& out,
            cudaStream_t stream);

}  // namespace llm::cuda
