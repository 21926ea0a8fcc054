#include "cuda/nccl.h"

#include <dlfcn.h>
#include <glob.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>

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

class NcclCollective final : public Collective {
 public:
  NcclCollective(std::shared_ptr<const Nccl> api, Nccl::Comm comm, int rank, int world)
      : api_(std::move(api)), comm_(comm), rank_(rank), world_(world) {}
  ~NcclCollective() override {
    if (Nccl::Comm c = comm_.load()) api_->comm_destroy(c);
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
  // Another rank failed mid-step: this rank's pending all-reduces would wait for it
  // forever. The communicator is gone afterwards; later calls fail with an error.
  // (Called from the failed rank's thread; a rank enqueueing at that very moment may
  // still use the communicator — a failure path, not a protocol.)
  void abort() override {
    if (Nccl::Comm c = comm_.exchange(nullptr)) api_->comm_abort(c);
  }

 private:
  std::shared_ptr<const Nccl> api_;
  std::atomic<Nccl::Comm> comm_;
  int rank_, world_;
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
