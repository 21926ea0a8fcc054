// Communication between the ranks of a tensor-parallel model: the one operation the
// Megatron-style split needs (Shoeybi et al. 2019, "Megatron-LM", §3): an all-reduce
// (sum) of the residual stream after the row-parallel wo and w_down.
// engine/backend_tp implements it for CPU ranks (threads and a barrier); cuda/ with NCCL.
#pragma once
#include <cstddef>

namespace llm {

class Collective {
 public:
  virtual ~Collective() = default;
  virtual int rank() const = 0;   // 0 <= rank < world
  virtual int world() const = 0;  // number of ranks
  // data[i] = sum over ranks of data[i], in place; every rank gets the same bits.
  // data: (n) f32 — host memory for CPU ranks; device memory for CUDA ranks, where the
  // reduction is enqueued on `stream` (a cudaStream_t; it may be under graph capture).
  // Every rank must call it, in the same order, with the same n.
  virtual void all_reduce_sum(float* data, size_t n, void* stream) = 0;
  // A buffer of `bytes` in the rank's memory that all_reduce_sum reduces fastest (CUDA
  // ranks on NCCL >= 2.27: a symmetric window, which NCCL's low-latency kernels need),
  // owned by the collective until it is destroyed; nullptr where the transport has none
  // or could not make one on every rank (the caller then allocates its own). Collective:
  // every rank calls it, in the same order, with the same size.
  virtual float* fast_buffer(size_t bytes) {
    (void)bytes;
    return nullptr;
  }
  // Called when this rank failed mid-step: ranks waiting for it in all_reduce_sum should
  // throw rather than wait forever (where the transport can tell them).
  virtual void abort() {}
};

}  // namespace llm
