#include "cuda/embed.h"
#include "cuda/qweight.cuh"

namespace llm::cuda {
namespace {

// Quantized: one thread per 32-element unit of the selected row.
template <DType T>
__global__ void embed_quant_kernel(DevMatrix W, const int32_t* __restrict__ tokens,
                                   float* __restrict__ out) {
  pdl_wait();
  pdl_trigger();
  const int64_t nu = W.cols / 32;
  const int64_t u = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (u >= nu) return;
  const int row = blockIdx.y;
  const int64_t r = tokens[row];
  const Unit x = load_unit<T>(W, r, u);
  float v[32];
  dequant_unit<T>(x, u, v);
  float4* o = reinterpret_cast<float4*>(out + row * W.cols + u * 32);
#pragma unroll
  for (int i = 0; i < 8; ++i)
    o[i] = make_float4(v[4 * i], v[4 * i + 1], v[4 * i + 2], v[4 * i + 3]);
}

// Plain floats: one thread per element.
template <DType T>
__global__ void embed_float_kernel(DevMatrix W, const int32_t* __restrict__ tokens,
                                   float* __restrict__ out) {
  pdl_wait();
  pdl_trigger();
  const int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= W.cols) return;
  const int row = blockIdx.y;
  const uint8_t* src = W.qs + static_cast<int64_t>(tokens[row]) * W.qs_stride;
  float v;
  if constexpr (T == DType::F32)
    v = reinterpret_cast<const float*>(src)[e];
  else if constexpr (T == DType::F16)
    v = half_bits_to_float(reinterpret_cast<const uint16_t*>(src)[e]);
  else
    v = bf16_bits_to_float(reinterpret_cast<const uint16_t*>(src)[e]);
  out[row * W.cols + e] = v;
}

}  // namespace

void embed(const DevMatrix& W, const int32_t* tokens, int n, float* out, cudaStream_t stream) {
  if (n <= 0) return;
  const int threads = 128;
  if (is_float_type(W.type)) {
    const dim3 grid(static_cast<unsigned>(ceil_div(W.cols, threads)), static_cast<unsigned>(n));
    switch (W.type) {
      case DType::F32:
        launch(embed_float_kernel<DType::F32>, grid, threads, 0, stream, W, tokens, out);
        break;
      case DType::F16:
        launch(embed_float_kernel<DType::F16>, grid, threads, 0, stream, W, tokens, out);
        break;
      default:
        launch(embed_float_kernel<DType::BF16>, grid, threads, 0, stream, W, tokens, out);
        break;
    }
  } else {
    const dim3 grid(static_cast<unsigned>(ceil_div(W.cols / 32, threads)),
                    static_cast<unsigned>(n));
    switch (W.type) {
#define LLM_CASE(T)                                                          \
  case T:                                                                    \
    launch(embed_quant_kernel<T>, grid, threads, 0, stream, W, tokens, out); \
    break;
      LLM_CASE(DType::Q8_0)
      LLM_CASE(DType::Q4_0)
      LLM_CASE(DType::Q4_1)
      LLM_CASE(DType::Q5_0)
      LLM_CASE(DType::Q4_K)
      LLM_CASE(DType::Q5_K)
      LLM_CASE(DType::Q6_K)
#undef LLM_CASE
      default:
        throw Error(std::string("embed: unsupported type ") + dtype_name(W.type));
    }
  }
  CUDA_CHECK_LAUNCH();
}

}  // namespace llm::cuda
