#include <cublas_v2.h>

#include <algorithm>
#include <vector>

#include "cuda/common.cuh"
#include "cuda/device_info.h"
#include "cuda/matmul.h"

namespace llm::cuda {
namespace {

// Random halves in [-1, 1) from a hash of the index (no zeros: they can run faster).
__global__ void fill_random_kernel(__half* p, size_t n, uint32_t seed) {
  const size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  uint32_t x = static_cast<uint32_t>(i) * 2654435761u ^ seed;
  x ^= x >> 16;
  x *= 0x7feb352du;
  x ^= x >> 15;
  x *= 0x846ca68bu;
  x ^= x >> 16;
  p[i] = __float2half_rn(static_cast<float>(x & 0xffffff) / 8388608.0f - 1.0f);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

DeviceCeiling measure_device_ceiling(int gpu) {
  DeviceCeiling c;
  CUDA_CHECK(cudaSetDevice(gpu));
  cudaDeviceProp prop{};
  CUDA_CHECK(cudaGetDeviceProperties(&prop, gpu));
  c.name = prop.name;
  c.memory_total = prop.totalGlobalMem;
  cudaStream_t s;
  CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  cudaEvent_t a, b;
  CUDA_CHECK(cudaEventCreate(&a));
  CUDA_CHECK(cudaEventCreate(&b));
  auto time_ms = [&](auto&& fn, int reps) {
    std::vector<double> t;
    for (int i = 0; i < 3; ++i) fn();  // warm-up
    for (int i = 0; i < reps; ++i) {
      CUDA_CHECK(cudaEventRecord(a, s));
      fn();
      CUDA_CHECK(cudaEventRecord(b, s));
      CUDA_CHECK(cudaEventSynchronize(b));
      float ms = 0;
      CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
      t.push_back(ms);
    }
    return median(t);
  };
  {
    const size_t bytes = 1ull << 30;
    DeviceBuffer src(bytes), dst(bytes);
    fill_random_kernel<<<static_cast<unsigned>(bytes / 2 / 256), 256, 0, s>>>(src.as<__half>(),
                                                                              bytes / 2, 1);
    CUDA_CHECK_LAUNCH();
    const double ms = time_ms(
        [&] {
          CUDA_CHECK(cudaMemcpyAsync(dst.get(), src.get(), bytes, cudaMemcpyDeviceToDevice, s));
        },
        10);
    c.copy_gbs = 2.0 * static_cast<double>(bytes) / (ms * 1e-3) / 1e9;
  }
  {
    const int n = 8192;
    const size_t elems = static_cast<size_t>(n) * n;
    DeviceBuffer A(elems * 2), B(elems * 2), C(elems * 2);
    fill_random_kernel<<<static_cast<unsigned>(elems / 256), 256, 0, s>>>(A.as<__half>(), elems, 2);
    fill_random_kernel<<<static_cast<unsigned>(elems / 256), 256, 0, s>>>(B.as<__half>(), elems, 3);
    CUDA_CHECK_LAUNCH();
    cublasHandle_t h;
    cublas_check(cublasCreate(&h), "cublasCreate");
    cublas_check(cublasSetStream(h, s), "cublasSetStream");
    const float alpha = 1.0f, beta = 0.0f;
    try {
      const double ms = time_ms(
          [&] {
            cublas_check(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, n, n, n, &alpha, A.get(),
                                      CUDA_R_16F, n, B.get(), CUDA_R_16F, n, &beta, C.get(),
                                      CUDA_R_16F, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                         "cublasGemmEx");
          },
          10);
      c.gemm_tflops = 2.0 * n * static_cast<double>(n) * n / (ms * 1e-3) / 1e12;
    } catch (...) {
      cublasDestroy(h);
      throw;
    }
    cublasDestroy(h);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  cudaStreamDestroy(s);
  return c;
}

}  // namespace llm::cuda
