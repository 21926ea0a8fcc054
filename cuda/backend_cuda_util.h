// What the CUDA backend's two translation units share: backend_cuda.cu (construction and
// steps) and backend_cuda_load.cu (weight upload and allocation).
#pragma once
#include <cstddef>
#include <cstdio>
#include <string>

namespace llm::cuda {

inline constexpr size_t kDequantMaxElems = 64ull << 20;
inline constexpr size_t kCublasWorkspace = 32ull << 20;

inline std::string gib(double bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f GiB", bytes / (1024.0 * 1024 * 1024));
  return buf;
}

inline size_t align256(size_t x) {
  return (x + 255) / 256 * 256;
}

}  // namespace llm::cuda
