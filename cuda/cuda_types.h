// Types shared by the CUDA kernels, their launchers and host code (plain C++, no
// kernels): the device layout of weight matrices and activations, and RAII owners of
// device and pinned memory. Everything here is visible to .cpp files (tests, server).
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <utility>

#include "quant/formats.h"

namespace llm::cuda {

// A weight matrix (rows, cols) on the device. GGUF blocks are repacked at upload into
// planes so that every load is aligned and coalesced; each quantized type is cut into
// units of 32 consecutive elements of a row (a k-quant super-block is 8 units).
// Row r of plane P starts at P + r * P_stride (bytes).
//
//   type        qs (per unit)           qh (per unit)   sc                    sb (per super-block)
//   F32/F16/BF16 the raw row             -               -                     -
//   Q8_0        32 int8                 -               f16 d per unit        -
//   Q4_0        16 B nibbles*           -               f16 d per unit        -
//   Q4_1        16 B nibbles*           -               half2 (d, m) per unit -
//   Q5_0        16 B nibbles*           u32 5th bits**  f16 d per unit        -
//   Q4_K        16 B nibbles*           -               -                     d, dmin, scales[12]
//   Q5_K        16 B nibbles*           u32 5th bits**  -                     d, dmin, scales[12]
//   Q6_K        16 B low nibbles*       8 B high pairs† f16 d per super-block int8 scales[16]
//
//   *  byte j holds element j (low nibble) and element j + 16 (high nibble), as Q4_0.
//   ** bit j is the fifth bit of element j.
//   †  two u32 words, word w for elements 16w..16w+15: byte k of word w holds, at bits
//      2i..2i+1, the two high bits of element 16w + 4i + k (i = 0..3), so that
//      ((word >> 2i) & 0x03030303) lines up with the nibbles of elements 16w+4i..+3.
struct DevMatrix {
  DType type = DType::F32;
  int64_t rows = 0, cols = 0;
  const uint8_t* qs = nullptr;
  int64_t qs_stride = 0;
  const uint8_t* qh = nullptr;
  int64_t qh_stride = 0;
  const uint8_t* sc = nullptr;
  int64_t sc_stride = 0;
  const uint8_t* sb = nullptr;
  int64_t sb_stride = 0;
  // (rows, cols) f16: a dense copy for GEMMs of quantized/BF16 weights, or null (the GEMM
  // then dequantizes into a scratch each call). The GEMV always reads the packed form.
  const __half* f16 = nullptr;
};

// Activations quantized for the integer dot products of the quantized matvec: per row of
// k elements, k/32 blocks of 32 int8 with scale d and s = d * sum(q) (q8_1-like).
//   qs: (n, k) int8     ds: (n, k/32) float2 {d, s}
struct ActQ8 {
  int8_t* qs = nullptr;
  float2* ds = nullptr;
};

// Scratch of a product whose K is split across CTAs: partial sums and one arrival counter
// per row tile, which the tile's last CTA resets to zero. One workspace serves one stream
// (launches on it run one after another).
struct SplitKWorkspace {
  float* partial = nullptr;  // (splits, n, rows) f32
  int* counters = nullptr;   // (tiles) int32, all zero between launches
};

// The formats a producer kernel (rmsnorm, swiglu, convert) writes its (n, k) output in;
// each pointer may be null (not wanted). q8 needs k % 32 == 0.
struct ActOut {
  float* f32 = nullptr;   // (n, k)
  __half* f16 = nullptr;  // (n, k): input of the tensor-core GEMM
  ActQ8 q8;               // input of the quantized matvec
};

inline bool is_float_type(DType t) {
  return t == DType::F32 || t == DType::F16 || t == DType::BF16;
}
// Types the CUDA backend computes with.
bool type_supported(DType t);

// --- memory owners -------------------------------------------------------------------
enum class MemKind {
  Device,  // cudaMalloc; running out throws llm::Error with the sizes and the free memory
  Pinned,  // page-locked host memory (cudaHostAlloc) for fast, asynchronous transfers
};

// Allocation and release behind CudaMemory (cuda/common.cu).
void* cuda_alloc(MemKind kind, size_t bytes);
void cuda_free(MemKind kind, void* p) noexcept;

// Owns one allocation of `bytes` (none when 0); movable, not copyable.
template <MemKind K>
class CudaMemory {
 public:
  CudaMemory() = default;
  explicit CudaMemory(size_t bytes) : p_(bytes ? cuda_alloc(K, bytes) : nullptr), n_(bytes) {}
  CudaMemory(CudaMemory&& o) noexcept
      : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
  CudaMemory& operator=(CudaMemory&& o) noexcept {
    if (this != &o) {
      reset();
      p_ = std::exchange(o.p_, nullptr);
      n_ = std::exchange(o.n_, 0);
    }
    return *this;
  }
  CudaMemory(const CudaMemory&) = delete;
  CudaMemory& operator=(const CudaMemory&) = delete;
  ~CudaMemory() { reset(); }
  void reset() {
    if (p_) cuda_free(K, p_);
    p_ = nullptr;
    n_ = 0;
  }
  void* get() const { return p_; }
  template <class T>
  T* as() const {
    return static_cast<T*>(p_);
  }
  size_t size() const { return n_; }

 private:
  void* p_ = nullptr;
  size_t n_ = 0;
};

using DeviceBuffer = CudaMemory<MemKind::Device>;
using PinnedBuffer = CudaMemory<MemKind::Pinned>;

// Throws llm::Error for a failed CUDA runtime call (host code outside .cu files).
void check(cudaError_t e, const char* what);

}  // namespace llm::cuda
