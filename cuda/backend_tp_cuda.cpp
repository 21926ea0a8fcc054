// Tensor-parallel CUDA ranks: one CudaBackend per device, each on its own thread
// (engine/backend_tp), all-reducing through NCCL on its stream — inside its decode
// graphs too.
#include <cuda_runtime_api.h>

#include "cuda/backend_cuda.h"
#include "cuda/nccl.h"
#include "engine/backend_tp.h"
#include "engine/error.h"

namespace llm {
namespace {

// One all-reduce on every rank at start-up, outside any graph capture: the group is
// checked before the first step, and NCCL has set up its connections before a decode
// graph captures a collective.
void warm_up(Collective& comm) {
  cuda::DeviceBuffer buf(4096 * sizeof(float));
  cudaStream_t s = nullptr;
  cuda::check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate");
  try {
    cuda::check(cudaMemsetAsync(buf.get(), 0, buf.size(), s), "cudaMemsetAsync");
    comm.all_reduce_sum(buf.as<float>(), 4096, s);
    cuda::check(cudaStreamSynchronize(s), "tensor-parallel warm-up all-reduce");
  } catch (...) {
    cudaStreamDestroy(s);
    throw;
  }
  cudaStreamDestroy(s);
}

}  // namespace

std::unique_ptr<Backend> make_cuda_tp_backend(const Model& model, const BackendOptions& opt) {
  const int world = opt.tp;
  if (world < 1) throw Error("--tp must be at least 1, got " + std::to_string(world));
  check_tp_split(model, world);  // before touching any device
  const int count = cuda_device_count();
  if (opt.gpu < 0 || opt.gpu + world > count)
    throw Error("--tp " + std::to_string(world) + " needs " + std::to_string(world) +
                " CUDA devices" + (opt.gpu > 0 ? " from --gpu " + std::to_string(opt.gpu) : "") +
                ", found " + std::to_string(count));
  std::vector<int> devices;
  for (int r = 0; r < world; ++r) devices.push_back(opt.gpu + r);
  return std::make_unique<TpBackend>(
      model, opt, cuda::make_nccl_collectives(devices),
      [](const TpShard& shard, const BackendOptions& o) -> std::unique_ptr<Backend> {
        // The rank's thread works on its device from now on (CudaBackend sets it too,
        // but copy_kv_block and the destructor rely on the thread's current device).
        if (cudaSetDevice(o.gpu) != cudaSuccess)
          throw Error("cannot select CUDA device " + std::to_string(o.gpu));
        auto be = std::make_unique<cuda::CudaBackend>(shard.model, o);
        warm_up(*o.collective);
        return be;
      });
}

}  // namespace llm
