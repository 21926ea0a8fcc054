// The tensor-parallel residual sum inside the next RMSNorm (cuda/tp_sum.h).
#include "cuda/tp_sum.h"
#include "engine/error.h"

#if LLM_HAVE_NCCL_DEVICE
#include <nccl.h>
#include <nccl_device.h>

#include <cstring>
#include <string>

#include "cuda/act.cuh"
#include "cuda/rmsnorm.h"
#endif

namespace llm::cuda {

#if LLM_HAVE_NCCL_DEVICE
namespace {

constexpr int kMaxChunks = 4;  // float4s a thread, as cuda/rmsnorm's vector kernel

// One block per row, rmsnorm_vec_threads(E) threads: the sums of squares and the norm
// are rmsnorm_vec_kernel's, element for element, so its bits follow.
__global__ void __launch_bounds__(1024)
    tp_sum_norm_kernel(ncclDevComm dc, ncclWindow_t win, int rank, size_t slot_bytes,
                       size_t row_bytes, float* __restrict__ h, const float* __restrict__ w, int n,
                       float eps, ActOut out) {
  __shared__ float red[32];
  float4 wv[kMaxChunks];
  const int n4 = n / 4;
  const int tid = static_cast<int>(threadIdx.x), nt = static_cast<int>(blockDim.x);
  if (w) {
#pragma unroll
    for (int c = 0; c < kMaxChunks; ++c) {  // weights are constant: load before the wait
      const int i = c * nt + tid;
      if (i < n4) wv[c] = __ldg(reinterpret_cast<const float4*>(w) + i);
    }
  }
  pdl_wait();  // this rank's product has written its partial
  const int row = static_cast<int>(blockIdx.x);
  // Slot r of the window holds rank r's partial: this rank's product wrote its own slot
  // here; it copies it into the same slot of the peer's window, and the peer copies its
  // own into ours, so that after the barrier both are read from local memory.
  const size_t mine = static_cast<size_t>(rank) * slot_bytes + static_cast<size_t>(row) * row_bytes;
  const float4* own = static_cast<const float4*>(ncclGetLocalPointer(win, mine));
  float4* to_peer = static_cast<float4*>(ncclGetLsaPointer(win, mine, 1 - rank));
  float4* hr = reinterpret_cast<float4*>(h + static_cast<int64_t>(row) * n);
  float4 xv[kMaxChunks], pv[kMaxChunks];
#pragma unroll
  for (int c = 0; c < kMaxChunks; ++c) {
    const int i = c * nt + tid;
    xv[c] = pv[c] = make_float4(0, 0, 0, 0);
    if (i >= n4) continue;
    xv[c] = hr[i];
    pv[c] = own[i];
    to_peer[i] = pv[c];
  }
  {
    // Both ranks' partials are in both windows once both have arrived (a barrier per row).
    ncclLsaBarrierSession<ncclCoopCta> bar(ncclCoopCta(), dc, ncclTeamTagLsa(),
                                           static_cast<uint32_t>(row));
    bar.sync(ncclCoopCta(), ::cuda::memory_order_acq_rel);
  }
  pdl_trigger();
  const size_t theirs =
      static_cast<size_t>(1 - rank) * slot_bytes + static_cast<size_t>(row) * row_bytes;
  const float4* other = static_cast<const float4*>(ncclGetLocalPointer(win, theirs));
#pragma unroll
  for (int c = 0; c < kMaxChunks; ++c) {
    const int i = c * nt + tid;
    if (i >= n4) {
      xv[c] = make_float4(0, 0, 0, 0);
      continue;
    }
    const float4 o = other[i];
    const float4 s0 = rank == 0 ? pv[c] : o, s1 = rank == 0 ? o : pv[c];
    // (h + S0) + S1: what one GPU computes with its K halves apart.
    xv[c] = make_float4((xv[c].x + s0.x) + s1.x, (xv[c].y + s0.y) + s1.y, (xv[c].z + s0.z) + s1.z,
                        (xv[c].w + s0.w) + s1.w);
    hr[i] = xv[c];
  }
  if (!w) return;
  norm_chunks_store(xv, wv, n, eps, row, out, red);
}

class NcclTpSum final : public TpSum {
 public:
  NcclTpSum(int rank, int rows, int width)
      : rank_(rank),
        rows_(rows),
        width_(width),
        slot_bytes_(static_cast<size_t>(rows) * static_cast<size_t>(width) * sizeof(float)) {}
  ~NcclTpSum() override {
    // The windows and the device communicator go with the NCCL communicator, which the
    // collective destroys after this (cuda/nccl.cpp); the memory goes here.
    for (void* p : mem_)
      if (p && mem_free_) mem_free_(p);
  }
  float* partial(int i) const override {
    return reinterpret_cast<float*>(static_cast<char*>(mem_[i]) + rank_ * slot_bytes_);
  }
  int rows() const override { return rows_; }

  int rank_, rows_, width_;
  size_t slot_bytes_;  // one rank's partials: (rows, width) f32; a window holds 2 slots
  ncclDevComm dc_{};
  ncclWindow_t win_[2] = {};
  void* mem_[2] = {};
  ncclResult_t (*mem_free_)(void*) = nullptr;
};

void check(ncclResult_t r, const char* what) {
  if (r != ncclSuccess)
    throw Error(std::string(what) + " failed (NCCL error " + std::to_string(static_cast<int>(r)) +
                ")");
}

}  // namespace

bool tp_sum_built() {
  return true;
}

int tp_sum_nccl_version() {
  return NCCL_VERSION_CODE;
}

std::unique_ptr<TpSum> make_tp_sum(void* nccl_comm, const TpSumApi& api, int rank, int world,
                                   int rows, int width) {
  if (world != 2 || rows <= 0 || width % 4 != 0 || width / 4 > kMaxChunks * 1024) return nullptr;
  if (!api.mem_alloc || !api.mem_free || !api.window_register || !api.dev_comm_create)
    return nullptr;
  auto comm = static_cast<ncclComm_t>(nccl_comm);
  auto mem_alloc = reinterpret_cast<ncclResult_t (*)(void**, size_t)>(api.mem_alloc);
  auto win_reg = reinterpret_cast<ncclResult_t (*)(ncclComm_t, void*, size_t, ncclWindow_t*, int)>(
      api.window_register);
  auto create =
      reinterpret_cast<ncclResult_t (*)(ncclComm_t, const ncclDevCommRequirements*, ncclDevComm*)>(
          api.dev_comm_create);
  auto t = std::make_unique<NcclTpSum>(rank, rows, width);
  t->mem_free_ = reinterpret_cast<ncclResult_t (*)(void*)>(api.mem_free);
  ncclDevCommRequirements req;
  std::memset(&req, 0, sizeof req);
  req.lsaBarrierCount = rows;
  check(create(comm, &req, &t->dc_), "ncclDevCommCreate");
  // Both ranks see the same sizes, so they agree on giving up here.
  if (t->dc_.lsaSize != world || t->dc_.nRanks != world || t->dc_.lsaRank != rank) return nullptr;
  const size_t need = 2 * t->slot_bytes_;
  const size_t bytes = (need + NCCL_WIN_REQUIRED_ALIGNMENT - 1) / NCCL_WIN_REQUIRED_ALIGNMENT *
                       NCCL_WIN_REQUIRED_ALIGNMENT;
  for (int i = 0; i < 2; ++i) {
    check(mem_alloc(&t->mem_[i], bytes), "ncclMemAlloc");
    check(win_reg(comm, t->mem_[i], bytes, &t->win_[i], NCCL_WIN_COLL_SYMMETRIC),
          "ncclCommWindowRegister");
    if (cudaMemset(t->mem_[i], 0, bytes) != cudaSuccess) throw Error("cudaMemset failed");
  }
  return t;
}

void tp_sum_norm(const TpSum& t, int which, float* h, const float* w, int n, int E, float eps,
                 const ActOut& out, cudaStream_t stream) {
  const auto& s = static_cast<const NcclTpSum&>(t);
  if (n <= 0) return;
  if (n > s.rows_ || E != s.width_) throw Error("tp_sum_norm: step larger than its windows");
  const int threads = rmsnorm_vec_threads(E);
  launch(tp_sum_norm_kernel, n, threads, 0, stream, s.dc_, s.win_[which], s.rank_, s.slot_bytes_,
         static_cast<size_t>(E) * sizeof(float), h, w, E, eps, out);
  CUDA_CHECK_LAUNCH();
}

#else  // built without NCCL's device headers

bool tp_sum_built() {
  return false;
}

int tp_sum_nccl_version() {
  return 0;
}

std::unique_ptr<TpSum> make_tp_sum(void*, const TpSumApi&, int, int, int, int) {
  return nullptr;
}

void tp_sum_norm(const TpSum&, int, float*, const float*, int, int, float, const ActOut&,
                 cudaStream_t) {
  throw Error("tp_sum_norm: built without NCCL's device API");
}

#endif

}  // namespace llm::cuda
