#include "cuda/act.cuh"
#include "cuda/activation.h"

namespace llm::cuda {
namespace {

__global__ void swiglu_kernel(const float* __restrict__ gate, const float* __restrict__ up,
                              int64_t ld, int n, ActOut out) {
  pdl_wait();
  pdl_trigger();
  const int row = blockIdx.y;
  const int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= n) return;  // n % 32 == 0 when q8 is wanted
  const float g = gate[row * ld + e];
  // expf, not __expf: the CPU reference uses std::exp, and this is not a hot loop.
  act_store(out, row, n, e, g / (1.0f + expf(-g)) * up[row * ld + e]);
}

}  // namespace

void swiglu(const float* gate, const float* up, int64_t ld, int n_rows, int n, const ActOut& out,
            cudaStream_t stream) {
  if (n_rows <= 0) return;
  if (out.q8.qs && n % 32 != 0) throw Error("swiglu: q8 output needs a width divisible by 32");
  const dim3 grid(static_cast<unsigned>(ceil_div(n, 256)), static_cast<unsigned>(n_rows));
  launch(swiglu_kernel, grid, 256, 0, stream, gate, up, ld, n, out);
  CUDA_CHECK_LAUNCH();
}

}  // namespace llm::cuda
