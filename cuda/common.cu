#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "cuda/common.cuh"

namespace llm::cuda {

void throw_cuda_error(cudaError_t e, const char* call, const char* file, int line) {
  const char* base = file;
  for (const char* p = file; *p; ++p)
    if (*p == '/') base = p + 1;
  throw Error(std::string("CUDA error in ") + call + " (" + base + ":" + std::to_string(line) +
              "): " + cudaGetErrorName(e) + ": " + cudaGetErrorString(e));
}

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw Error(std::string("CUDA error in ") + what + ": " + cudaGetErrorName(e) + ": " +
                cudaGetErrorString(e));
}

namespace {
__global__ void spin_kernel(unsigned long long ns) {
  unsigned long long start, now;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
  do {
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
  } while (now - start < ns);
}
}  // namespace

void gpu_spin(cudaStream_t stream, double microseconds) {
  spin_kernel<<<1, 1, 0, stream>>>(static_cast<unsigned long long>(microseconds * 1000.0));
  CUDA_CHECK_LAUNCH();
}

namespace {
__global__ void fence_kernel() {}
}  // namespace

void full_dependency_fence(cudaStream_t stream) {
  fence_kernel<<<1, 32, 0, stream>>>();
  CUDA_CHECK_LAUNCH();
}

bool pdl_enabled() {
  static const bool on = [] {
    const char* e = std::getenv("LLM_CUDA_PDL");
    if (e && std::strcmp(e, "0") == 0) return false;
    int dev = 0, major = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) {
      (void)cudaGetLastError();
      return false;
    }
    return major >= 9;
  }();
  return on;
}

bool type_supported(DType t) {
  switch (t) {
    case DType::F32:
    case DType::F16:
    case DType::BF16:
    case DType::Q8_0:
    case DType::Q4_0:
    case DType::Q4_1:
    case DType::Q5_0:
    case DType::Q4_K:
    case DType::Q5_K:
    case DType::Q6_K:
      return true;
    default:
      return false;
  }
}

static std::string gib(size_t b) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f GiB", static_cast<double>(b) / (1024.0 * 1024 * 1024));
  return buf;
}

void* cuda_alloc(MemKind kind, size_t bytes) {
  void* p = nullptr;
  if (kind == MemKind::Pinned) {
    CUDA_CHECK(cudaHostAlloc(&p, bytes, cudaHostAllocDefault));
    return p;
  }
  const cudaError_t e = cudaMalloc(&p, bytes);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky-free error state
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    throw Error("out of GPU memory: allocating " + gib(bytes) + " with " + gib(free_b) +
                " free of " + gib(total_b) + " (" + cudaGetErrorString(e) + ")");
  }
  return p;
}

void cuda_free(MemKind kind, void* p) noexcept {
  if (kind == MemKind::Pinned)
    cudaFreeHost(p);
  else
    cudaFree(p);
}

}  // namespace llm::cuda
