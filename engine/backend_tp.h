// Tensor parallelism behind the Backend interface: N rank backends, each running one
// shard of every layer (engine/tp_split) on its own thread, in lock-step; the ranks
// all-reduce the residual stream twice per layer (engine/collective.h). The engine
// above sees one backend: one block size, one pool of kv_blocks() blocks — every rank
// holds its n_head_kv / N heads of each block, so the engine's block tables serve all
// ranks — and rank 0's logits.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/backend.h"
#include "engine/tp_split.h"

namespace llm {

class TpBackend final : public Backend {
 public:
  // Makes rank r's backend from its shard, on rank r's thread. rank_opt is opt with
  // tp = 1, collective = the rank's link, gpu = opt.gpu + r, verbose only on rank 0.
  using RankFactory =
      std::function<std::unique_ptr<Backend>(const TpShard& shard, const BackendOptions& rank_opt)>;

  // One rank per entry of `comms` (comms[r]->rank() == r). Throws llm::Error when the
  // model does not split (check_tp_split) or a rank cannot be built.
  TpBackend(const Model& model, const BackendOptions& opt,
            std::vector<std::unique_ptr<Collective>> comms, const RankFactory& make_rank);
  ~TpBackend() override;
  TpBackend(const TpBackend&) = delete;
  TpBackend& operator=(const TpBackend&) = delete;

  std::string name() const override { return name_; }
  const ModelConfig& config() const override { return model_.config; }
  void forward(const Batch& batch, float* logits) override;
  // Rank 0 selects (on its device, for CUDA ranks); the others run their shard.
  void forward_candidates(const Batch& batch, int k, LogitCandidates& out) override;
  int block_size() const override { return block_size_; }
  int kv_blocks() const override { return kv_blocks_; }  // the smallest rank's pool
  void copy_kv_block(int src, int dst) override;

  int world() const { return static_cast<int>(ranks_.size()); }
  Backend& rank(int r) { return *ranks_[static_cast<size_t>(r)]; }
  const TpShard& shard(int r) const { return *shards_[static_cast<size_t>(r)]; }

 private:
  class Threads;  // one worker thread per rank
  // Runs job(r) for every rank r on rank r's thread; returns when all are done and
  // rethrows the first rank's error, if any.
  void run_all(const std::function<void(int)>& job);
  void release();  // destroys the ranks on their threads, then stops the threads

  const Model& model_;
  std::string name_;
  int block_size_ = 16;
  int kv_blocks_ = 0;
  std::vector<std::unique_ptr<TpShard>> shards_;    // (world)
  std::vector<std::unique_ptr<Collective>> comms_;  // (world)
  std::unique_ptr<Threads> threads_;
  std::vector<std::unique_ptr<Backend>> ranks_;  // (world)
};

// An in-process collective for `world` ranks on CPU threads: a shared sum buffer and
// barriers. all_reduce_sum adds the ranks' buffers in rank order, so every rank gets the
// same bits. abort-safe: after a rank fails, the others' calls throw instead of waiting.
std::vector<std::unique_ptr<Collective>> make_cpu_collectives(int world);

// opt.tp ranks: CPU ranks (opt.n_threads shared among them) or CUDA ranks through NCCL
// (make_cuda_tp_backend).
std::unique_ptr<Backend> make_tp_backend(const Model& model, const BackendOptions& opt);

}  // namespace llm
