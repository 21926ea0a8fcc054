// Tensor-parallel residual sum inside the next RMSNorm, through NCCL's device API
// (cuda/tp_sum.cu). It replaces the all-reduce after wo and after w_down on small steps.
//
// Each rank's row-parallel product writes its partial sum into its own slot of one of two
// NCCL symmetric windows (wo: window 0, w_down: window 1; slot r: rank r's partial). The
// next normalization kernel waits for the product (PDL), copies that slot into the same
// slot of the peer's window (stores through the peer's LSA pointer) and passes an LSA
// barrier with the other rank (one barrier per block, i.e. per row). Both partials are
// then in local memory, and both ranks form h = (h + P0) + P1, the order in which one GPU
// sums the halves of K, so that both hold the same h. With norm weights the kernel then
// writes rmsnorm(h) in the formats asked for, as cuda/rmsnorm does.
//
// Alternating the two windows makes the reuse safe: a rank writes into a window again only
// after the next barrier, which the peer reaches only after it has read that window.
//
// Built only where NCCL's device headers are found (nccl_device.h, NCCL >= 2.28; CMake
// defines LLM_HAVE_NCCL_DEVICE). Elsewhere make_tp_sum returns null and the backend keeps
// ncclAllReduce.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <memory>

#include "cuda/cuda_types.h"

namespace llm::cuda {

// NCCL entry points make_tp_sum needs (from the library llm loaded, cuda/nccl.h), as
// untyped pointers: this header does not need nccl.h.
struct TpSumApi {
  void* mem_alloc = nullptr;        // ncclMemAlloc
  void* mem_free = nullptr;         // ncclMemFree
  void* window_register = nullptr;  // ncclCommWindowRegister
  void* dev_comm_create = nullptr;  // ncclDevCommCreate (NCCL >= 2.28)
};

// One rank's device communicator and two partial-sum windows.
class TpSum {
 public:
  virtual ~TpSum() = default;
  // This rank's slot of window i (0: wo, 1: w_down): (rows(), width) f32, its partial.
  virtual float* partial(int i) const = 0;
  virtual int rows() const = 0;  // the most rows a step may have
};

// Whether this build has the kernels (NCCL's device headers were found), and the NCCL
// version those headers are (NCCL_VERSION_CODE; 0 without them): the device API's
// structures must match the loaded library's.
bool tp_sum_built();
int tp_sum_nccl_version();

// Collective: every rank calls it together, with its communicator (ncclComm_t), for
// `rows` rows of `width` floats. Returns null where unavailable: not built, an entry
// point missing, world != 2, the ranks not load/store peers. Throws on NCCL errors.
std::unique_ptr<TpSum> make_tp_sum(void* nccl_comm, const TpSumApi& api, int rank, int world,
                                   int rows, int width);

// h (n, E) = (h + P0_window) + P1_window, where P0 is rank 0's partial in window `which` and
// P1 is rank 1's. With w (E) it also writes rmsnorm(h) * w to `out` (f32 / f16 / q8),
// as cuda/rmsnorm does. Every rank must launch it in the same order.
void tp_sum_norm(const TpSum& t, int which, float* h, const float* w, int n, int E, float eps,
                 const ActOut& out, cudaStream_t stream);

}  // namespace llm::cuda
