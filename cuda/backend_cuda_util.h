// What the CUDA backend's two translation units share: backend_cuda.cu (the steps) and
// backend_cuda_load.cu (construction, weight upload and allocation).
#pragma once

namespace llm::cuda {

inline constexpr int kMaxSplit = 16;

}  // namespace llm::cuda
