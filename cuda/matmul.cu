#include "cuda/matmul.h"
#include "cuda/qweight.cuh"

namespace llm::cuda {

void cublas_check(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS)
    throw Error(std::string("cuBLAS error in ") + what + ": " + cublasGetStatusName(s) + " (" +
                cublasGetStatusString(s) + ")");
}

namespace {

__device__ __forceinline__ void store32(__half* o, const float (&v)[32]) {
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    __half2 h[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) h[j] = __floats2half2_rn(v[8 * i + 2 * j], v[8 * i + 2 * j + 1]);
    reinterpret_cast<uint4*>(o)[i] = *reinterpret_cast<const uint4*>(h);
  }
}
__device__ __forceinline__ void store32(float* o, const float (&v)[32]) {
#pragma unroll
  for (int i = 0; i < 8; ++i)
    reinterpret_cast<float4*>(o)[i] =
        make_float4(v[4 * i], v[4 * i + 1], v[4 * i + 2], v[4 * i + 3]);
}

template <DType T, class Out>
__global__ void dequant_quant_kernel(DevMatrix W, int64_t row0, int64_t n_rows,
                                     Out* __restrict__ out) {
  pdl_wait();
  pdl_trigger();
  const int64_t nu = W.cols / 32;
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= n_rows * nu) return;
  const int64_t rr = idx / nu, u = idx % nu;
  const Unit x = load_unit<T>(W, row0 + rr, u);
  float v[32];
  dequant_unit<T>(x, u, v);
  store32(out + rr * W.cols + u * 32, v);
}

template <DType T, class Out>
__global__ void dequant_float_kernel(DevMatrix W, int64_t row0, int64_t n_rows,
                                     Out* __restrict__ out) {
  pdl_wait();
  pdl_trigger();
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= n_rows * W.cols) return;
  const int64_t rr = idx / W.cols, e = idx % W.cols;
  const uint8_t* row = W.qs + (row0 + rr) * W.qs_stride;
  float v;
  if constexpr (T == DType::F32)
    v = reinterpret_cast<const float*>(row)[e];
  else if constexpr (T == DType::F16)
    v = half_bits_to_float(reinterpret_cast<const uint16_t*>(row)[e]);
  else
    v = bf16_bits_to_float(reinterpret_cast<const uint16_t*>(row)[e]);
  if constexpr (sizeof(Out) == 2)
    out[idx] = __float2half_rn(v);
  else
    out[idx] = v;
}

template <class Out>
void dequantize_impl(const DevMatrix& W, int64_t row0, int64_t n_rows, Out* out,
                     cudaStream_t stream) {
  if (n_rows <= 0) return;
  const int threads = 256;
  if (is_float_type(W.type)) {
    const unsigned blocks = static_cast<unsigned>(ceil_div(n_rows * W.cols, threads));
    switch (W.type) {
      case DType::F32:
        launch(dequant_float_kernel<DType::F32, Out>, blocks, threads, 0, stream, W, row0, n_rows,
               out);
        break;
      case DType::F16:
        launch(dequant_float_kernel<DType::F16, Out>, blocks, threads, 0, stream, W, row0, n_rows,
               out);
        break;
      default:
        launch(dequant_float_kernel<DType::BF16, Out>, blocks, threads, 0, stream, W, row0, n_rows,
               out);
        break;
    }
  } else {
    const unsigned blocks = static_cast<unsigned>(ceil_div(n_rows * (W.cols / 32), threads));
    switch (W.type) {
#define LLM_CASE(T)                                                                         \
  case T:                                                                                   \
    launch(dequant_quant_kernel<T, Out>, blocks, threads, 0, stream, W, row0, n_rows, out); \
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
        throw Error(std::string("dequantize: unsupported type ") + dtype_name(W.type));
    }
  }
  CUDA_CHECK_LAUNCH();
}

}  // namespace

void dequantize(const DevMatrix& W, int64_t row0, int64_t n_rows, __half* out,
                cudaStream_t stream) {
  dequantize_impl(W, row0, n_rows, out, stream);
}
void dequantize(const DevMatrix& W, int64_t row0, int64_t n_rows, float* out, cudaStream_t stream) {
  dequantize_impl(W, row0, n_rows, out, stream);
}

void matmul(cublasHandle_t handle, const MatmulArgs& a, cudaStream_t stream) {
  if (a.n <= 0) return;
  const DevMatrix& W = *a.W;
  cublas_check(cublasSetStream(handle, stream), "cublasSetStream");
  const float alpha = 1.0f, beta = a.accumulate ? 1.0f : 0.0f;
  const int k = static_cast<int>(W.cols);
  // Column-major view: C (rows, n) = op(A) B with A = W stored as (cols, rows), op = T.
  auto gemm = [&](const void* A, cudaDataType at, const void* B, cudaDataType bt, int64_t r0,
                  int64_t nr) {
    cublas_check(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(nr), a.n, k,
                              &alpha, A, at, k, B, bt, k, &beta, a.y + r0, CUDA_R_32F,
                              static_cast<int>(a.ldy), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                 "cublasGemmEx");
  };
  if (W.type == DType::F32) {
    gemm(W.qs, CUDA_R_32F, a.x_f32, CUDA_R_32F, 0, W.rows);
    return;
  }
  if (W.type == DType::F16 || W.f16) {
    gemm(W.f16 ? static_cast<const void*>(W.f16) : W.qs, CUDA_R_16F, a.x_f16, CUDA_R_16F, 0,
         W.rows);
    return;
  }
  const int64_t chunk = static_cast<int64_t>(a.scratch_elems) / W.cols;
  if (chunk <= 0) throw Error("matmul: dequantization scratch is too small");
  for (int64_t r0 = 0; r0 < W.rows; r0 += chunk) {
    const int64_t nr = W.rows - r0 < chunk ? W.rows - r0 : chunk;
    dequantize(W, r0, nr, a.scratch, stream);
    gemm(a.scratch, CUDA_R_16F, a.x_f16, CUDA_R_16F, r0, nr);
  }
}

}  // namespace llm::cuda
