// What the CUDA backend's translation units share: backend_cuda.cu (the steps),
// backend_cuda_plan.cu (a step's inputs and launch decisions) and backend_cuda_load.cu
// (construction, weight upload and allocation).
#pragma once

namespace llm::cuda {

inline constexpr int kMaxSplit = 16;

}  // namespace llm::cuda
