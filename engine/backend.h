// The backend interface: what the engine needs from a device. The CPU backend
// (engine/backend_cpu) is the reference; cuda/ implements the same contract.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "engine/batch.h"
#include "engine/collective.h"
#include "engine/model.h"
#include "engine/topk.h"

namespace llm {

enum class DeviceKind { Cpu, Cuda };

struct BackendOptions {
  DeviceKind device = DeviceKind::Cpu;
  int gpu = 0;                   // CUDA device ordinal
  int n_threads = 0;             // CPU threads; 0 = all hardware threads
  int block_size = 16;           // tokens per KV block
  int64_t kv_tokens = 0;         // KV pool capacity in tokens; 0 = backend default
  double kv_memory_fraction = 0.9;  // CUDA: share of free memory the KV pool may take when kv_tokens == 0
  bool verbose = true;           // progress output on stderr while loading
  // CUDA: keep an f16 copy of quantized/BF16 matrices for steps of many rows (batched
  // decode, prefill), which then skip dequantizing every weight each step, at 2 bytes per
  // weight of device memory. Auto: when the copy takes at most half the memory left free.
  enum class F16Copy { Auto, On, Off };
  F16Copy f16_copy = F16Copy::Auto;
  // Batch invariance: a row's logits (and so greedy text) bit for bit the same whatever
  // else is in the step — alone, beside other sequences, its prompt chunked any way. The
  // CPU backend always is; CUDA then computes every row with one arithmetic (GEMV
  // products, split-K decode attention with a fixed split count), at some cost in speed
  // for batches and prompts. README: "Deterministic mode".
  bool deterministic = false;
  // Tensor parallelism (engine/backend_tp): ranks that split every layer; CUDA: devices
  // gpu .. gpu + tp - 1 through NCCL. 1 = one device, no collectives.
  int tp = 1;
  // Set by the tensor-parallel backend on one rank's options: its link to the other
  // ranks. Such a backend runs a shard (engine/tp_split), all-reduces the residual
  // stream after wo and w_down, and computes logits only on rank 0 (other ranks leave
  // `logits` untouched; it may be null there).
  Collective* collective = nullptr;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;  // "cpu (16 threads)", "cuda:0 NVIDIA H100 80GB HBM3"
  virtual const ModelConfig& config() const = 0;

  // Runs one step over the batch: writes each row's K/V to its slot, then computes
  // logits for batch.logit_rows. logits: (batch.n_logits(), n_vocab) row-major f32.
  virtual void forward(const Batch& batch, float* logits) = 0;

  // forward(), returning each logit row's k best candidates (engine/topk.h) instead of
  // the full row: out is resized to (batch.n_logits(), k); 1 <= k <= min(kMaxCandidates,
  // n_vocab), else llm::Error. The default computes the full logits into out.full and
  // selects on the host (select_candidates, the reference); a device overrides it to
  // select where the logits are and copy back only the candidates.
  virtual void forward_candidates(const Batch& batch, int k, LogitCandidates& out);

  virtual int block_size() const = 0;
  virtual int kv_blocks() const = 0;  // number of blocks in the pool
  // Copies one block's K/V (all layers) to another: copy-on-write of shared blocks.
  virtual void copy_kv_block(int src, int dst) = 0;
};

std::unique_ptr<Backend> make_cpu_backend(const Model& model, const BackendOptions& opt);
// Defined in cuda/ when built with CUDA; throws llm::Error otherwise or without a device.
std::unique_ptr<Backend> make_cuda_backend(const Model& model, const BackendOptions& opt);
// opt.tp CUDA ranks on devices opt.gpu .. opt.gpu + opt.tp - 1, linked by NCCL (loaded at
// run time); opt.tp == 1 runs the NCCL path on one device. Defined in cuda/; throws
// llm::Error without CUDA, without enough devices, or without libnccl.
std::unique_ptr<Backend> make_cuda_tp_backend(const Model& model, const BackendOptions& opt);
// Number of CUDA devices usable now (0 in a CPU-only build or without a GPU).
int cuda_device_count();

// Throws llm::Error unless 1 <= k <= min(kMaxCandidates, n_vocab): the k that
// Backend::forward_candidates accepts.
void check_candidates_k(int k, int n_vocab);

// The CPU backend when device == Cpu, else CUDA; tensor-parallel ranks of either when
// opt.tp != 1 (engine/backend_tp.h).
std::unique_ptr<Backend> make_backend(const Model& model, const BackendOptions& opt);

}  // namespace llm
