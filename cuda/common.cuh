// Shared device helpers for cuda/: error checks that throw llm::Error, warp reductions,
// vector loads, and RAII owners of device and pinned memory. Included by .cu files only
// (the launcher headers that C++ code sees include cuda/cuda_types.h instead).
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "cuda/cuda_types.h"
#include "engine/error.h"

namespace llm::cuda {

// --- warp reductions -------------------------------------------------------------
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ int warp_sum_int(int v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Sum over the whole block (blockDim.x a multiple of 32, at most 1024). `red` holds 32
// floats of shared memory. Every thread gets the result.
__device__ __forceinline__ float block_sum(float v, float* red) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();  // `red` may still be read by a previous call
  if (lane == 0) red[warp] = v;
  __syncthreads();
  v = lane < n_warps ? red[lane] : 0.0f;
  return warp_sum(v);
}
__device__ __forceinline__ float block_max(float v, float* red) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) red[warp] = v;
  __syncthreads();
  v = lane < n_warps ? red[lane] : -INFINITY;
  return warp_max(v);
}

// Split-K arrival on one counter: after every thread of the block stored its partials,
// counts the block in and returns, in every thread, whether it is the last of `arrivals`
// blocks; that one then reads the others' partials (around L1: __ldcg) and resets the
// counter to zero for the next launch.
__device__ __forceinline__ bool last_arrival(int* counter, int arrivals) {
  __shared__ int flag;
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) flag = atomicAdd(counter, 1) == arrivals - 1;
  __syncthreads();
  const bool last = flag != 0;
  if (last) __threadfence();
  return last;
}

// --- vector loads (read-only path, 16/8/4 bytes; callers guarantee alignment) -----
__device__ __forceinline__ uint4 ld16(const void* p) {
  return __ldg(static_cast<const uint4*>(p));
}
__device__ __forceinline__ uint2 ld8(const void* p) {
  return __ldg(static_cast<const uint2*>(p));
}
__device__ __forceinline__ uint32_t ld4(const void* p) {
  return __ldg(static_cast<const unsigned int*>(p));
}
// Loads that bypass L1 allocation: weights are read once per step, keep L1 for activations.
__device__ __forceinline__ uint4 ld16_stream(const void* p) {
  uint4 r;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
               : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
               : "l"(p));
  return r;
}

__device__ __forceinline__ float2 half2_bits_to_float2(uint32_t bits) {
  __half2 h;
  memcpy(&h, &bits, 4);
  return __half22float2(h);
}
__device__ __forceinline__ float half_bits_to_float(uint16_t bits) {
  return __half2float(__ushort_as_half(bits));
}
__device__ __forceinline__ float bf16_bits_to_float(uint32_t bits16) {
  return __uint_as_float(bits16 << 16);
}

// --- Programmatic Dependent Launch (sm_90) ------------------------------------------
// Kernels are launched so that the next kernel in the stream may start while this one
// drains. Every kernel calls pdl_wait() before it touches memory an earlier kernel wrote
// (or that an earlier kernel still reads), and pdl_trigger() to let its successor launch;
// only reads of constant data (weights) may come before pdl_wait().
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// Integer dot of four signed bytes (sm_61+ dp4a).
__device__ __forceinline__ int dp4a(int a, int b, int c) {
  return __dp4a(a, b, c);
}

// --- host-side checks --------------------------------------------------------------
// Throws llm::Error naming the failed call, where, and CUDA's message.
[[noreturn]] void throw_cuda_error(cudaError_t e, const char* call, const char* file, int line);

#define CUDA_CHECK(call)                                                                     \
  do {                                                                                       \
    cudaError_t err_ = (call);                                                               \
    if (err_ != cudaSuccess) ::llm::cuda::throw_cuda_error(err_, #call, __FILE__, __LINE__); \
  } while (0)

// After a kernel launch: launch-configuration errors surface here.
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())

__host__ __device__ __forceinline__ int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

// Keeps the GPU busy for a while: work queued behind it then runs back to back, so that
// events between kernels time the kernels rather than the host's launch rate.
void gpu_spin(cudaStream_t stream, double microseconds);

// An empty kernel launched without the PDL attribute and without an early trigger: work
// queued after it cannot start before everything queued before it has completed, even
// work launched by a library with the PDL attribute (NCCL's symmetric kernels: see
// CudaBackend::all_reduce_h).
void full_dependency_fence(cudaStream_t stream);

// Whether kernels are launched with Programmatic Dependent Launch: on for sm_90+, off
// with LLM_CUDA_PDL=0 in the environment (a switch for measurements and debugging).
bool pdl_enabled();

// Launches kernel<<<grid, block, smem, stream>>>(args...) with the PDL attribute.
template <class... KArgs, class... Args>
void launch(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
            Args... args) {
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = pdl_enabled() ? 1 : 0;
  CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, static_cast<KArgs>(args)...));
}

}  // namespace llm::cuda
