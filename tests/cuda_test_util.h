// Helpers of the CUDA tests: skipping (exit code 77) without a device, device buffers
// filled from host vectors, and error measures that never let NaN pass.
#pragma once
#include <cuda_runtime_api.h>
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "cuda/cuda_types.h"

namespace llm::test {

// Exits with 77 (CTest's "skipped") when no CUDA device is usable. Called from a static
// initializer so that doctest never starts.
inline bool require_cuda_device() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n == 0) {
    std::fprintf(stderr, "skipped: no CUDA device (%s)\n",
                 e != cudaSuccess ? cudaGetErrorString(e) : "device count is 0");
    std::exit(77);
  }
  return true;
}

inline std::vector<float> randn(size_t n, uint32_t seed, float sd = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, sd);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// A device copy of a host vector; poison() fills it with NaN bytes (0xFF).
template <class T>
struct Dev {
  cuda::DeviceBuffer buf;
  size_t n = 0;
  Dev() = default;
  explicit Dev(size_t count) : buf(count * sizeof(T) + 16), n(count) { poison(); }
  explicit Dev(const std::vector<T>& v) : Dev(v.size()) { upload(v); }
  void upload(const std::vector<T>& v) {
    REQUIRE(v.size() <= n);
    cuda::check(cudaMemcpy(buf.get(), v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice),
                "upload");
  }
  void poison() { cuda::check(cudaMemset(buf.get(), 0xff, buf.size()), "poison"); }
  std::vector<T> get() const {
    cuda::check(cudaDeviceSynchronize(), "sync before download");
    std::vector<T> v(n);
    cuda::check(cudaMemcpy(v.data(), buf.get(), n * sizeof(T), cudaMemcpyDeviceToHost), "download");
    return v;
  }
  T* p() const { return buf.as<T>(); }
};

// ||a - b|| / ||b|| in double; +inf when any element of a is not finite.
inline double rel_err(const float* a, const float* b, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    const double d = static_cast<double>(a[i]) - b[i];
    num += d * d;
    den += static_cast<double>(b[i]) * b[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}
inline double rel_err(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() >= b.size());
  return rel_err(a.data(), b.data(), b.size());
}

}  // namespace llm::test
