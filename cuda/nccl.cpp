#include "cuda/nccl.h"

#include <dlfcn.h>
#include <glob.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "cuda/tp_sum.h"
#include "engine/error.h"

namespace llm::cuda {
namespace {

// Candidate files, best first.
std::vector<std::string> candidates() {
  std::vector<std::string> out;
  if (const char* env = std::getenv("LLM_NCCL_LIB"); env && *env) {
    std::error_code ec;
    if (std::filesystem::is_directory(env, ec)) {
      out.push_back(std::string(env) + "/libnccl.so.2");
      out.push_back(std::string(env) + "/libnccl.so");
    } else {
      out.push_back(env);
    }
    return out;  // an explicit choice is not second-guessed
  }
  out.push_back("libnccl.so.2");  // LD_LIBRARY_PATH, ldconfig's cache
  out.push_back("libnccl.so");
  for (const char* dir :
       {"/usr/local/cuda/lib64", "/usr/local/cuda/lib", "/usr/local/cuda/targets/x86_64-linux/lib",
        "/usr/lib/x86_64-linux-gnu", "/usr/local/lib"})
    out.push_back(std::string(dir) + "/libnccl.so.2");
  // NVIDIA's wheel (nvidia-nccl-cu12, what PyTorch installs).
  for (const char* pattern : {"/usr/local/lib/python3*/dist-packages/nvidia/nccl/lib/libnccl.so.2",
                              "/usr/local/lib/python3*/site-packages/nvidia/nccl/lib/libnccl.so.2",
                              "/usr/lib/python3*/dist-packages/nvidia/nccl/lib/libnccl.so.2",
                              "/opt/conda/lib/python3*/site-packages/nvidia/nccl/lib/libnccl.so.2",
                              "/opt/conda/lib/libnccl.so.2"}) {
    glob_t g{};
    if (glob(pattern, 0, nullptr, &g) == 0)
      for (size_t i = 0; i < g.gl_pathc; ++i) out.push_back(g.gl_pathv[i]);
    globfree(&g);
  }
  return out;
}

template <class F>
void resolve(void* lib, const char* name, F& fn, const std::string& path) {
  fn = reinterpret_cast<F>(dlsym(lib, name));
  if (!fn) throw Error(path + " has no symbol " + name + " (is it NCCL 2.x?)");
}

// An entry point of newer NCCL versions: nullptr where the library lacks it.
template <class F>
void resolve_optional(void* lib, const char* name, F& fn) {
  fn = reinterpret_cast<F>(dlsym(lib, name));
}

void cuda_check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw Error(std::string(what) + " failed: " + cudaGetErrorString(e));
}

class NcclCollective final : public Collective {
 public:
  NcclCollective(std::shared_ptr<const Nccl> api, Nccl::Comm comm, int rank, int world)
      : api_(std::move(api)), comm_(comm), rank_(rank), world_(world) {}
  ~NcclCollective() override {
    // Destroying the communicator releases its windows; the memory goes after it.
    if (Nccl::Comm c = comm_.load()) api_->comm_destroy(c);
    for (void* p : buffers_) api_->mem_free(p);
    tp_sum_.reset();
  }
  NcclCollective(const NcclCollective&) = delete;
  NcclCollective& operator=(const NcclCollective&) = delete;

  int rank() const override { return rank_; }
  int world() const override { return world_; }
  void all_reduce_sum(float* data, size_t n, void* stream) override {
    Nccl::Comm c = comm_.load();
    if (!c) throw Error("tensor parallelism: NCCL was aborted after a rank failed");
    // In place; legal inside CUDA graph capture (NCCL >= 2.9).
    api_->check(api_->all_reduce(data, data, n, Nccl::kFloat32, Nccl::kSum, c,
                                 static_cast<cudaStream_t>(stream)),
                "ncclAllReduce");
  }
  float* fast_buffer(size_t bytes) override {
    const char* env = std::getenv("LLM_NCCL_SYMMETRIC");
    if (env && std::string(env) == "0") return nullptr;
    if (!api_->mem_alloc || !api_->mem_free || !api_->window_register || api_->version < 22700)
      return nullptr;
    Nccl::Comm c = comm_.load();
    if (!c || world_ < 2) return nullptr;
    void* p = nullptr;
    const bool ok = api_->mem_alloc(&p, bytes) == 0 && p;
    // Registration is collective: every rank registers or none does, so the ranks first
    // agree (a sum of "allocated" flags) through an ordinary all-reduce.
    if (agreed(c, ok ? 1.0f : 0.0f) != static_cast<float>(world_)) {
      if (ok) api_->mem_free(p);
      return nullptr;
    }
    void* win = nullptr;
    const Nccl::Result r = api_->window_register(c, p, bytes, &win, Nccl::kWinCollSymmetric);
    if (r != 0) {
      api_->mem_free(p);
      api_->check(r, "ncclCommWindowRegister");
    }
    buffers_.push_back(p);
    // NCCL picks its symmetric kernels for buffers in the window; their sums are checked
    // here once, on every rank, before the model relies on them.
    const size_t n = bytes / sizeof(float);
    bool good = true;
    for (size_t count : {std::min<size_t>(n, 4096), n}) good = good && sums_right(c, p, count);
    if (agreed(c, good ? 1.0f : 0.0f) != static_cast<float>(world_)) {
      if (rank_ == 0)
        std::fprintf(stderr,
                     "warning: NCCL %d's all-reduce in a symmetric window gave wrong sums; "
                     "tensor parallelism uses ordinary memory\n",
                     api_->version);
      return nullptr;  // the window stays registered until the communicator goes
    }
    return static_cast<float*>(p);
  }
  TpSum* tp_sum(int rows, int width) {
    if (tp_sum_tried_) return tp_sum_.get();
    tp_sum_tried_ = true;
    const char* env = std::getenv("LLM_TP_FUSED");
    if (env && std::string(env) == "0") return nullptr;
    Nccl::Comm c = comm_.load();
    if (!c || !tp_sum_built() || api_->version != tp_sum_nccl_version()) return nullptr;
    TpSumApi a;
    a.mem_alloc = reinterpret_cast<void*>(api_->mem_alloc);
    a.mem_free = reinterpret_cast<void*>(api_->mem_free);
    a.window_register = reinterpret_cast<void*>(api_->window_register);
    a.dev_comm_create = api_->dev_comm_create;
    tp_sum_ = make_tp_sum(c, a, rank_, world_, rows, width);
    return tp_sum_.get();
  }
  // Another rank failed mid-step: this rank's pending all-reduces would wait for it
  // forever. The communicator is gone afterwards; later calls fail with an error.
  // (Called from the failed rank's thread; a rank enqueueing at that very moment may
  // still use the communicator — a failure path, not a protocol.)
  void abort() override {
    if (Nccl::Comm c = comm_.exchange(nullptr)) api_->comm_abort(c);
  }

 private:
  // Whether an in-place all-reduce of `count` floats at `buf` gives the exact sums of a
  // pattern of small integers (every rank fills its own).
  bool sums_right(Nccl::Comm c, void* buf, size_t count) {
    std::vector<float> v(count);
    auto value = [](size_t i, int r) {
      return static_cast<float>((r + 1) * 1000 + (i * 7 + r) % 977);
    };
    for (size_t i = 0; i < count; ++i) v[i] = value(i, rank_);
    reduce_through(c, buf, v.data(), count);
    size_t bad = 0;
    for (size_t i = 0; i < count; ++i) {
      float want = 0;
      for (int r = 0; r < world_; ++r) want += value(i, r);
      bad += v[i] != want;
    }
    if (bad)
      std::fprintf(stderr,
                   "rank %d: NCCL's all-reduce of %zu floats in a symmetric window: %zu wrong\n",
                   rank_, count, bad);
    return bad == 0;
  }

  // The sum over ranks of `mine`.
  float agreed(Nccl::Comm c, float mine) {
    float* d = nullptr;
    cuda_check(cudaMalloc(reinterpret_cast<void**>(&d), sizeof(float)), "cudaMalloc");
    try {
      reduce_through(c, d, &mine, 1);
    } catch (...) {
      cudaFree(d);
      throw;
    }
    cudaFree(d);
    return mine;
  }

  // host[0, count) = the sum over ranks of every rank's host[0, count), all-reduced in
  // place in the device buffer `dev`; outside any graph capture, on a stream of its own.
  void reduce_through(Nccl::Comm c, void* dev, float* host, size_t count) {
    cudaStream_t s = nullptr;
    cuda_check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate");
    try {
      const size_t bytes = count * sizeof(float);
      cuda_check(cudaMemcpyAsync(dev, host, bytes, cudaMemcpyHostToDevice, s), "cudaMemcpy");
      api_->check(api_->all_reduce(dev, dev, count, Nccl::kFloat32, Nccl::kSum, c, s),
                  "ncclAllReduce");
      cuda_check(cudaMemcpyAsync(host, dev, bytes, cudaMemcpyDeviceToHost, s), "cudaMemcpy");
      cuda_check(cudaStreamSynchronize(s), "cudaStreamSynchronize");
    } catch (...) {
      cudaStreamDestroy(s);
      throw;
    }
    cudaStreamDestroy(s);
  }

  std::shared_ptr<const Nccl> api_;
  std::atomic<Nccl::Comm> comm_;
  int rank_, world_;
  std::vector<void*> buffers_;     // fast_buffer()'s windows, freed after the communicator
  std::unique_ptr<TpSum> tp_sum_;  // its windows go with the communicator, its memory after
  bool tp_sum_tried_ = false;
};

}  // namespace

void Nccl::check(Result r, const char* what) const {
  if (r == 0) return;
  throw Error(std::string(what) + " failed: " + (get_error_string ? get_error_string(r) : "error") +
              " (NCCL error " + std::to_string(r) + ")");
}

std::shared_ptr<const Nccl> load_nccl() {
  std::string tried;
  for (const std::string& path : candidates()) {
    void* lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
      tried += "\n  " + path + ": " + dlerror();
      continue;
    }
    auto api = std::make_shared<Nccl>();
    api->path = path;
    resolve(lib, "ncclGetVersion", api->get_version, path);
    resolve(lib, "ncclGetErrorString", api->get_error_string, path);
    resolve(lib, "ncclCommInitAll", api->comm_init_all, path);
    resolve(lib, "ncclCommDestroy", api->comm_destroy, path);
    resolve(lib, "ncclCommAbort", api->comm_abort, path);
    resolve(lib, "ncclAllReduce", api->all_reduce, path);
    resolve_optional(lib, "ncclMemAlloc", api->mem_alloc);
    resolve_optional(lib, "ncclMemFree", api->mem_free);
    resolve_optional(lib, "ncclCommWindowRegister", api->window_register);
    api->dev_comm_create = dlsym(lib, "ncclDevCommCreate");
    api->check(api->get_version(&api->version), "ncclGetVersion");
    if (api->version < 20900)
      throw Error(path + " is NCCL " + std::to_string(api->version) +
                  "; --tp needs NCCL 2.9 or newer (collectives inside CUDA graphs)");
    return api;
  }
  throw Error(
      "--tp on CUDA needs NCCL (libnccl.so.2), which was not found; install NCCL or point "
      "LLM_NCCL_LIB at the library or its directory. Tried:" +
      tried);
}

TpSum* nccl_tp_sum(Collective* c, int rows, int width) {
  auto* n = dynamic_cast<NcclCollective*>(c);
  return n ? n->tp_sum(rows, width) : nullptr;
}

std::vector<std::unique_ptr<Collective>> make_nccl_collectives(const std::vector<int>& devices) {
  // NVLink multicast (NVLS) stays off, as the GPU machines require; NCCL's NVLink/P2P
  // rings and trees serve the small all-reduces of TP decode.
  setenv("NCCL_NVLS_ENABLE", "0", 0);
  // Connections at init (NCCL >= 2.22 makes them lazily at a collective's first use,
  // which could fall inside a decode graph's capture).
  setenv("NCCL_RUNTIME_CONNECT", "0", 0);
  std::shared_ptr<const Nccl> api = load_nccl();
  const int n = static_cast<int>(devices.size());
  std::vector<Nccl::Comm> comms(devices.size(), nullptr);
  api->check(api->comm_init_all(comms.data(), n, devices.data()), "ncclCommInitAll");
  std::vector<std::unique_ptr<Collective>> out;
  for (int r = 0; r < n; ++r)
    out.push_back(std::make_unique<NcclCollective>(api, comms[static_cast<size_t>(r)], r, n));
  return out;
}

}  // namespace llm::cuda
