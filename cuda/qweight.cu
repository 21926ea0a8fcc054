// Repacking GGUF blocks into the DevMatrix planes (layout table in cuda/cuda_types.h).
#include "cuda/common.cuh"
#include "cuda/qweight.h"

namespace llm::cuda {

PlaneLayout plane_layout(DType t, int64_t cols) {
  PlaneLayout p;
  const auto need = [&](int64_t mult) {
    if (cols % mult != 0)
      throw Error(std::string("a ") + dtype_name(t) + " matrix needs a row length divisible by " +
                  std::to_string(mult) + ", got " + std::to_string(cols));
  };
  const int64_t nu = cols / 32, ns = cols / 256;
  switch (t) {
    case DType::F32:
      p.qs = cols * 4;
      break;
    case DType::F16:
    case DType::BF16:
      p.qs = cols * 2;
      break;
    case DType::Q8_0:
      need(32);
      p.qs = nu * 32;
      p.sc = nu * 2;
      break;
    case DType::Q4_0:
      need(32);
      p.qs = nu * 16;
      p.sc = nu * 2;
      break;
    case DType::Q4_1:
      need(32);
      p.qs = nu * 16;
      p.sc = nu * 4;
      break;
    case DType::Q5_0:
      need(32);
      p.qs = nu * 16;
      p.qh = nu * 4;
      p.sc = nu * 2;
      break;
    case DType::Q4_K:
      need(256);
      p.qs = nu * 16;
      p.sb = ns * 16;
      break;
    case DType::Q5_K:
      need(256);
      p.qs = nu * 16;
      p.qh = nu * 4;
      p.sb = ns * 16;
      break;
    case DType::Q6_K:
      need(256);
      p.qs = nu * 16;
      p.qh = nu * 8;
      p.sc = ns * 2;
      p.sb = ns * 16;
      break;
    default:
      throw Error(std::string("the CUDA backend does not support tensor type ") + dtype_name(t));
  }
  return p;
}

namespace {
constexpr size_t kAlign = 256;
size_t align_up(size_t x) {
  return (x + kAlign - 1) / kAlign * kAlign;
}
}  // namespace

size_t device_matrix_bytes(DType t, int64_t rows, int64_t cols) {
  const PlaneLayout p = plane_layout(t, cols);
  const size_t r = static_cast<size_t>(rows);
  return align_up(p.qs * r) + align_up(p.qh * r) + align_up(p.sc * r) + align_up(p.sb * r);
}

DevMatrix make_dev_matrix(DType t, int64_t rows, int64_t cols, void* base) {
  const PlaneLayout p = plane_layout(t, cols);
  DevMatrix m;
  m.type = t;
  m.rows = rows;
  m.cols = cols;
  uint8_t* cur = static_cast<uint8_t*>(base);
  const size_t r = static_cast<size_t>(rows);
  auto take = [&](int64_t row_bytes, const uint8_t*& plane, int64_t& stride) {
    if (row_bytes == 0) return;
    plane = cur;
    stride = row_bytes;
    cur += align_up(static_cast<size_t>(row_bytes) * r);
  };
  take(p.qs, m.qs, m.qs_stride);
  take(p.qh, m.qh, m.qh_stride);
  take(p.sc, m.sc, m.sc_stride);
  take(p.sb, m.sb, m.sb_stride);
  return m;
}

namespace {

__device__ __forceinline__ uint8_t* mut(const uint8_t* p) {
  return const_cast<uint8_t*>(p);
}
__device__ __forceinline__ uint16_t rd16(const uint8_t* p) {
  return static_cast<uint16_t>(p[0] | (p[1] << 8));
}

// One thread per 32-element unit of the raw rows. Raw blocks are only 2-byte aligned, so
// they are read bytewise; this runs once at load time.
template <DType T>
__global__ void repack_kernel(DevMatrix W, const uint8_t* raw, int64_t row_bytes, int64_t row0,
                              int64_t n_rows) {
  const int64_t nu = W.cols / 32;
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= n_rows * nu) return;
  const int64_t rr = idx / nu, u = idx % nu, r = row0 + rr;
  const uint8_t* src = raw + rr * row_bytes;
  uint8_t* qs = mut(W.qs) + r * W.qs_stride + u * (T == DType::Q8_0 ? 32 : 16);
  if constexpr (T == DType::Q8_0) {
    const uint8_t* b = src + u * 34;
    reinterpret_cast<uint16_t*>(mut(W.sc) + r * W.sc_stride)[u] = rd16(b);
    for (int j = 0; j < 32; ++j) qs[j] = b[2 + j];
  } else if constexpr (T == DType::Q4_0) {
    const uint8_t* b = src + u * 18;
    reinterpret_cast<uint16_t*>(mut(W.sc) + r * W.sc_stride)[u] = rd16(b);
    for (int j = 0; j < 16; ++j) qs[j] = b[2 + j];
  } else if constexpr (T == DType::Q4_1) {
    const uint8_t* b = src + u * 20;
    uint16_t* sc = reinterpret_cast<uint16_t*>(mut(W.sc) + r * W.sc_stride) + 2 * u;
    sc[0] = rd16(b);
    sc[1] = rd16(b + 2);
    for (int j = 0; j < 16; ++j) qs[j] = b[4 + j];
  } else if constexpr (T == DType::Q5_0) {
    const uint8_t* b = src + u * 22;
    reinterpret_cast<uint16_t*>(mut(W.sc) + r * W.sc_stride)[u] = rd16(b);
    reinterpret_cast<uint32_t*>(mut(W.qh) + r * W.qh_stride)[u] =
        b[2] | (b[3] << 8) | (b[4] << 16) | (static_cast<uint32_t>(b[5]) << 24);
    for (int j = 0; j < 16; ++j) qs[j] = b[6 + j];
  } else if constexpr (T == DType::Q4_K || T == DType::Q5_K) {
    constexpr int kBlock = T == DType::Q4_K ? 144 : 176;
    const uint8_t* b = src + (u / 8) * kBlock;
    const int j = static_cast<int>(u % 8);
    const uint8_t* q = b + 16 + (T == DType::Q5_K ? 32 : 0) + 32 * (j / 2);
    const int shift = (j & 1) * 4;
    for (int i = 0; i < 16; ++i)
      qs[i] = static_cast<uint8_t>(((q[i] >> shift) & 0xf) | (((q[i + 16] >> shift) & 0xf) << 4));
    if constexpr (T == DType::Q5_K) {
      const uint8_t* qh = b + 16;
      uint32_t bits = 0;
      for (int l = 0; l < 32; ++l) bits |= static_cast<uint32_t>((qh[l] >> j) & 1) << l;
      reinterpret_cast<uint32_t*>(mut(W.qh) + r * W.qh_stride)[u] = bits;
    }
    if (j == 0) {
      uint8_t* sb = mut(W.sb) + r * W.sb_stride + (u / 8) * 16;
      for (int i = 0; i < 16; ++i) sb[i] = b[i];
    }
  } else if constexpr (T == DType::Q6_K) {
    const uint8_t* b = src + (u / 8) * 210;
    const uint8_t* ql = b;
    const uint8_t* qh = b + 128;
    const int uj = static_cast<int>(u % 8), n = uj / 4, g = uj % 4;
    // element l (0..31) of this unit: low nibble and high pair of ggml's layout
    auto low = [&](int l) -> int {
      const uint8_t byte = ql[64 * n + l + 32 * (g & 1)];
      return g < 2 ? (byte & 0xf) : (byte >> 4);
    };
    auto high = [&](int l) -> int { return (qh[32 * n + l] >> (2 * g)) & 3; };
    for (int i = 0; i < 16; ++i) qs[i] = static_cast<uint8_t>(low(i) | (low(i + 16) << 4));
    uint32_t words[2] = {0, 0};
    for (int w = 0; w < 2; ++w)
      for (int i = 0; i < 4; ++i)
        for (int k = 0; k < 4; ++k)
          words[w] |= static_cast<uint32_t>(high(16 * w + 4 * i + k)) << (8 * k + 2 * i);
    uint32_t* hp = reinterpret_cast<uint32_t*>(mut(W.qh) + r * W.qh_stride + u * 8);
    hp[0] = words[0];
    hp[1] = words[1];
    if (uj == 0) {
      uint8_t* sb = mut(W.sb) + r * W.sb_stride + (u / 8) * 16;
      for (int i = 0; i < 16; ++i) sb[i] = b[192 + i];
      reinterpret_cast<uint16_t*>(mut(W.sc) + r * W.sc_stride)[u / 8] = rd16(b + 208);
    }
  }
}

}  // namespace

void repack_rows(const DevMatrix& W, const void* raw, int64_t row0, int64_t n_rows,
                 cudaStream_t stream) {
  if (n_rows <= 0) return;
  const int64_t rb = static_cast<int64_t>(row_bytes(W.type, W.cols));
  if (is_float_type(W.type)) {
    CUDA_CHECK(cudaMemcpyAsync(const_cast<uint8_t*>(W.qs) + row0 * W.qs_stride, raw,
                               static_cast<size_t>(rb * n_rows), cudaMemcpyDeviceToDevice, stream));
    return;
  }
  const int64_t total = n_rows * (W.cols / 32);
  const int threads = 256;
  const unsigned blocks = static_cast<unsigned>(ceil_div(total, threads));
  const uint8_t* src = static_cast<const uint8_t*>(raw);
  switch (W.type) {
#define LLM_REPACK(T)                                                           \
  case T:                                                                       \
    repack_kernel<T><<<blocks, threads, 0, stream>>>(W, src, rb, row0, n_rows); \
    break;
    LLM_REPACK(DType::Q8_0)
    LLM_REPACK(DType::Q4_0)
    LLM_REPACK(DType::Q4_1)
    LLM_REPACK(DType::Q5_0)
    LLM_REPACK(DType::Q4_K)
    LLM_REPACK(DType::Q5_K)
    LLM_REPACK(DType::Q6_K)
#undef LLM_REPACK
    default:
      throw Error(std::string("repack: unsupported type ") + dtype_name(W.type));
  }
  CUDA_CHECK_LAUNCH();
}

}  // namespace llm::cuda
