#include "cuda/common.cuh"
#include "cuda/logits.h"

namespace llm::cuda {
namespace {

__device__ __forceinline__ void better(float& v, int& i, float v2, int i2) {
  if (v2 > v || (v2 == v && i2 < i)) {
    v = v2;
    i = i2;
  }
}

__global__ void argmax_kernel(const float* __restrict__ logits, int n_vocab,
                              int32_t* __restrict__ out) {
  pdl_wait();
  pdl_trigger();
  __shared__ float sv[32];
  __shared__ int si[32];
  const float* x = logits + static_cast<int64_t>(blockIdx.x) * n_vocab;
  float v = -INFINITY;
  int i = n_vocab;  // sentinel: larger than every index
  for (int e = threadIdx.x; e < n_vocab; e += blockDim.x) better(v, i, x[e], e);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float v2 = __shfl_xor_sync(0xffffffffu, v, o);
    const int i2 = __shfl_xor_sync(0xffffffffu, i, o);
    better(v, i, v2, i2);
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) {
    sv[warp] = v;
    si[warp] = i;
  }
  __syncthreads();
  if (warp == 0) {
    const int nw = blockDim.x >> 5;
    v = lane < nw ? sv[lane] : -INFINITY;
    i = lane < nw ? si[lane] : n_vocab;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const float v2 = __shfl_xor_sync(0xffffffffu, v, o);
      const int i2 = __shfl_xor_sync(0xffffffffu, i, o);
      better(v, i, v2, i2);
    }
    if (lane == 0) out[blockIdx.x] = i < n_vocab ? i : 0;  // all NaN: 0
  }
}

}  // namespace

void argmax_rows(const float* logits, int n_rows, int n_vocab, int32_t* out, cudaStream_t stream) {
  if (n_rows <= 0) return;
  launch(argmax_kernel, n_rows, 1024, 0, stream, logits, n_vocab, out);
  CUDA_CHECK_LAUNCH();
}

}  // namespace llm::cuda
