#include "cuda/act.cuh"
#include "cuda/quantize.h"

namespace llm::cuda {
namespace {

// grid (ceil(k / 256), n_rows); each warp covers 32 consecutive elements.
__global__ void convert_kernel(const float* __restrict__ x, int k, ActOut out) {
  pdl_wait();
  pdl_trigger();
  const int row = blockIdx.y;
  const int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= k) return;  // k % 32 == 0 when q8 is wanted, so whole warps leave together
  act_store(out, row, k, e, x[row * static_cast<int64_t>(k) + e]);
}

}  // namespace

void convert_act(const float* x, int n_rows, int k, const ActOut& out, cudaStream_t stream) {
  if (n_rows <= 0) return;
  if (out.q8.qs && k % 32 != 0) throw Error("convert_act: q8 output needs a width divisible by 32");
  ActOut o = out;
  o.f32 = nullptr;  // already there
  if (!o.f16 && !o.q8.qs) return;
  const dim3 grid(static_cast<unsigned>(ceil_div(k, 256)), static_cast<unsigned>(n_rows));
  launch(convert_kernel, grid, 256, 0, stream, x, k, o);
  CUDA_CHECK_LAUNCH();
}

}  // namespace llm::cuda
