// The table of a CUDA backend's per-op profile (CudaBackend::set_profiling) that `llm bench
// --profile` prints: GPU time per op and step, share, and the bandwidth of the ops that
// read weights.
#pragma once
#ifdef LLM_HAVE_CUDA
#include <vector>

#include "cuda/backend_cuda.h"
#include "engine/model.h"

namespace llm {

// prof: accumulated over `steps` steps; printed to stderr under the title `what`.
void print_op_profile(const Model& model, const std::vector<cuda::CudaBackend::OpTime>& prof,
                      int steps, const char* what);

}  // namespace llm
#endif
