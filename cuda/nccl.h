// NCCL, loaded at run time with dlopen so that building llm never needs nccl.h or
// libnccl (CI has neither); only `--tp` on CUDA does. The few declarations below are
// NCCL's C ABI (nccl.h, stable since NCCL 2.0): enum values and signatures as there.
#pragma once
#include <cuda_runtime_api.h>

#include <memory>
#include <string>
#include <vector>

#include "engine/collective.h"

namespace llm::cuda {

struct NcclCommunicator;  // NCCL's opaque struct ncclComm

// The NCCL entry points llm uses.
struct Nccl {
  using Comm = NcclCommunicator*;     // ncclComm_t
  using Result = int;                 // ncclResult_t; 0 = ncclSuccess
  static constexpr int kFloat32 = 7;  // ncclDataType_t ncclFloat32
  static constexpr int kSum = 0;      // ncclRedOp_t ncclSum

  Result (*get_version)(int* version) = nullptr;
  const char* (*get_error_string)(Result r) = nullptr;
  Result (*comm_init_all)(Comm* comms, int n_dev, const int* devices) = nullptr;
  Result (*comm_destroy)(Comm comm) = nullptr;
  Result (*comm_abort)(Comm comm) = nullptr;  // stops pending collectives, frees the comm
  Result (*all_reduce)(const void* send, void* recv, size_t count, int datatype, int op, Comm comm,
                       cudaStream_t stream) = nullptr;
  // Symmetric windows (NCCL >= 2.27; nullptr where the library lacks them): memory from
  // ncclMemAlloc registered on every rank with NCCL_WIN_COLL_SYMMETRIC lets NCCL run its
  // low-latency all-reduce kernels (about 5 us for 16 KiB on two Hopper GPUs, by NCCL's
  // own tuning table) instead of the ring/tree ones.
  static constexpr int kWinCollSymmetric = 1;              // NCCL_WIN_COLL_SYMMETRIC
  Result (*mem_alloc)(void** ptr, size_t size) = nullptr;  // ncclMemAlloc
  Result (*mem_free)(void* ptr) = nullptr;                 // ncclMemFree
  Result (*window_register)(Comm comm, void* buff, size_t size, void** win,
                            int flags) = nullptr;  // ncclCommWindowRegister
  // The device API's host side (NCCL >= 2.28): cuda/tp_sum (nullptr where absent). Its
  // device communicator and windows go with the communicator.
  void* dev_comm_create = nullptr;  // ncclDevCommCreate

  std::string path;  // the library that was loaded
  int version = 0;   // e.g. 22105 for 2.21.5

  // Throws llm::Error("<what> failed: <NCCL's message>") unless r is ncclSuccess.
  void check(Result r, const char* what) const;
};

// Loads libnccl.so.2: the file or directory $LLM_NCCL_LIB names, else the dynamic
// linker's search path, else the CUDA toolkit's and NVIDIA's pip wheels' usual places.
// Throws llm::Error listing where it looked. The library is never unloaded (its threads
// may outlive any owner we could give it).
std::shared_ptr<const Nccl> load_nccl();

// One communicator per device of `devices` (ncclCommInitAll: one process drives them
// all), as Collectives whose rank is the position in `devices`. Sets
// NCCL_NVLS_ENABLE=0 unless the environment says otherwise: NVLink multicast is off.
// Their fast_buffer() is a symmetric window where the library has them, unless
// LLM_NCCL_SYMMETRIC=0.
std::vector<std::unique_ptr<Collective>> make_nccl_collectives(const std::vector<int>& devices);

class TpSum;
// Collective: the residual sum through NCCL's device API (cuda/tp_sum.h) for steps of up
// to `rows` rows of `width` floats, owned by the collective `c`; nullptr where `c` is not
// an NCCL collective or the sum is unavailable: the build lacks NCCL's device headers,
// the loaded library is not the version they came with, or LLM_TP_FUSED=0.
TpSum* nccl_tp_sum(Collective* c, int rows, int width);

}  // namespace llm::cuda
