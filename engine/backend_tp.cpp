#include "engine/backend_tp.h"

#include <algorithm>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>

#include "engine/error.h"

namespace llm {

// --- worker threads ------------------------------------------------------------------

class TpBackend::Threads {
 public:
  explicit Threads(int n) : errors_(static_cast<size_t>(n)) {
    for (int r = 0; r < n; ++r) threads_.emplace_back([this, r] { loop(r); });
  }
  ~Threads() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
    }
    start_.notify_all();
    for (std::thread& t : threads_) t.join();
  }

  // job(r) on thread r for every r; the first error (lowest rank) comes back.
  std::exception_ptr run(const std::function<void(int)>& job,
                         const std::function<void(int)>& on_error) {
    std::unique_lock<std::mutex> lk(mu_);
    job_ = &job;
    on_error_ = &on_error;
    pending_ = static_cast<int>(threads_.size());
    std::fill(errors_.begin(), errors_.end(), nullptr);
    ++generation_;
    start_.notify_all();
    done_.wait(lk, [&] { return pending_ == 0; });
    for (const std::exception_ptr& e : errors_)
      if (e) return e;
    return nullptr;
  }

 private:
  void loop(int r) {
    uint64_t seen = 0;
    for (;;) {
      std::unique_lock<std::mutex> lk(mu_);
      start_.wait(lk, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      const std::function<void(int)>& job = *job_;
      const std::function<void(int)>& on_error = *on_error_;
      lk.unlock();
      std::exception_ptr err;
      try {
        job(r);
      } catch (...) {
        err = std::current_exception();
        on_error(r);  // unblock the ranks that wait for this one
      }
      lk.lock();
      errors_[static_cast<size_t>(r)] = err;
      if (--pending_ == 0) done_.notify_all();
    }
  }

  std::mutex mu_;
  std::condition_variable start_, done_;
  uint64_t generation_ = 0;
  int pending_ = 0;
  bool stop_ = false;
  const std::function<void(int)>* job_ = nullptr;
  const std::function<void(int)>* on_error_ = nullptr;
  std::vector<std::exception_ptr> errors_;  // (world) of the current job
  std::vector<std::thread> threads_;        // (world)
};

// --- the backend ---------------------------------------------------------------------

TpBackend::TpBackend(const Model& model, const BackendOptions& opt,
                     std::vector<std::unique_ptr<Collective>> comms, const RankFactory& make_rank)
    : model_(model), block_size_(opt.block_size), comms_(std::move(comms)) {
  const int world = static_cast<int>(comms_.size());
  check_tp_split(model, world);
  for (int r = 0; r < world; ++r)
    if (comms_[static_cast<size_t>(r)]->rank() != r ||
        comms_[static_cast<size_t>(r)]->world() != world)
      throw Error("tensor parallelism: collective " + std::to_string(r) + " has the wrong rank");
  threads_ = std::make_unique<Threads>(world);
  shards_.resize(static_cast<size_t>(world));
  ranks_.resize(static_cast<size_t>(world));
  try {
    run_all([&](int r) {
      // On the rank's thread: the column slices' copies (22 GiB a rank for a 70B F16 at
      // --tp 2) are made in parallel.
      shards_[static_cast<size_t>(r)] = make_tp_shard(model, r, world);
      BackendOptions o = opt;
      o.tp = 1;
      o.collective = comms_[static_cast<size_t>(r)].get();
      o.gpu = opt.gpu + r;
      o.verbose = opt.verbose && r == 0;
      ranks_[static_cast<size_t>(r)] = make_rank(*shards_[static_cast<size_t>(r)], o);
    });
  } catch (...) {
    release();
    throw;
  }
  kv_blocks_ = ranks_[0]->kv_blocks();
  name_ = "tp " + std::to_string(world) + " [";
  for (int r = 0; r < world; ++r) {
    const Backend& b = *ranks_[static_cast<size_t>(r)];
    if (b.block_size() != block_size_)
      throw Error("tensor parallelism: ranks disagree on the KV block size");
    kv_blocks_ = std::min(kv_blocks_, b.kv_blocks());
    name_ += (r ? ", " : "") + b.name();
  }
  name_ += "]";
}

TpBackend::~TpBackend() {
  release();
}

void TpBackend::release() {
  if (threads_) {
    // A CUDA rank frees its memory and graphs on the thread whose device it set.
    try {
      run_all([&](int r) { ranks_[static_cast<size_t>(r)].reset(); });
    } catch (...) {
    }
  }
  ranks_.clear();
  threads_.reset();
  comms_.clear();
}

void TpBackend::run_all(const std::function<void(int)>& job) {
  const std::function<void(int)> on_error = [&](int r) {
    // Every rank's transport is told: whichever rank is blocked waits on the failed one.
    for (auto& c : comms_) c->abort();
    (void)r;
  };
  if (std::exception_ptr e = threads_->run(job, on_error)) std::rethrow_exception(e);
}

void TpBackend::forward(const Batch& batch, float* logits) {
  // Validated once here: a batch one rank rejects after another has entered a
  // collective would leave that one waiting.
  validate_batch(batch, model_.config.n_vocab, kv_blocks_, block_size_);
  run_all(
      [&](int r) { ranks_[static_cast<size_t>(r)]->forward(batch, r == 0 ? logits : nullptr); });
}

void TpBackend::forward_candidates(const Batch& batch, int k, LogitCandidates& out) {
  validate_batch(batch, model_.config.n_vocab, kv_blocks_, block_size_);
  check_candidates_k(k, model_.config.n_vocab);
  run_all([&](int r) {
    if (r == 0)
      ranks_[0]->forward_candidates(batch, k, out);
    else
      ranks_[static_cast<size_t>(r)]->forward(batch, nullptr);
  });
}

void TpBackend::copy_kv_block(int src, int dst) {
  if (src < 0 || src >= kv_blocks_ || dst < 0 || dst >= kv_blocks_)
    throw Error("copy_kv_block: block out of range (pool has " + std::to_string(kv_blocks_) +
                " blocks)");
  run_all([&](int r) { ranks_[static_cast<size_t>(r)]->copy_kv_block(src, dst); });
}

// --- the CPU collective --------------------------------------------------------------

namespace {

// State shared by the ranks of one CPU group.
struct CpuGroup {
  explicit CpuGroup(int w) : world(w), bufs(static_cast<size_t>(w)) {}

  // Waits until all ranks arrive; the last one runs `last` first (under the lock).
  template <class F>
  void barrier(F&& last) {
    std::unique_lock<std::mutex> lk(mu);
    if (aborted) throw Error("tensor parallelism: another rank failed");
    const uint64_t ph = phase;
    if (++arrived == world) {
      last();
      arrived = 0;
      ++phase;
      cv.notify_all();
      return;
    }
    cv.wait(lk, [&] { return phase != ph || aborted; });
    if (phase == ph) throw Error("tensor parallelism: another rank failed");
  }

  const int world;
  std::mutex mu;
  std::condition_variable cv;
  int arrived = 0;
  uint64_t phase = 0;
  bool aborted = false;
  std::vector<float*> bufs;  // (world) each rank's buffer of the current call
  std::vector<float> sum;    // (n) the reduced values of the current call
};

class CpuCollective final : public Collective {
 public:
  CpuCollective(std::shared_ptr<CpuGroup> g, int rank) : g_(std::move(g)), rank_(rank) {}
  int rank() const override { return rank_; }
  int world() const override { return g_->world; }

  void all_reduce_sum(float* data, size_t n, void*) override {
    CpuGroup& g = *g_;
    const size_t W = static_cast<size_t>(g.world);
    // Phase 1: publish the buffer (nobody reads the previous call's buffers any more),
    // and the last arrival sizes the result (everyone has copied the previous one out).
    {
      std::lock_guard<std::mutex> lk(g.mu);
      g.bufs[static_cast<size_t>(rank_)] = data;
    }
    g.barrier([&] { g.sum.resize(n); });
    // Phase 2: each rank reduces its share of the elements, in rank order.
    const size_t r = static_cast<size_t>(rank_), i0 = n * r / W, i1 = n * (r + 1) / W;
    for (size_t i = i0; i < i1; ++i) {
      float s = g.bufs[0][i];
      for (size_t k = 1; k < W; ++k) s += g.bufs[k][i];
      g.sum[i] = s;
    }
    g.barrier([] {});
    // Phase 3: everyone takes the whole result.
    std::copy_n(g.sum.data(), n, data);
  }

  void abort() override {
    std::lock_guard<std::mutex> lk(g_->mu);
    g_->aborted = true;
    g_->cv.notify_all();
  }

 private:
  std::shared_ptr<CpuGroup> g_;
  int rank_;
};

}  // namespace

std::vector<std::unique_ptr<Collective>> make_cpu_collectives(int world) {
  if (world < 1) throw Error("--tp must be at least 1, got " + std::to_string(world));
  auto g = std::make_shared<CpuGroup>(world);
  std::vector<std::unique_ptr<Collective>> out;
  for (int r = 0; r < world; ++r) out.push_back(std::make_unique<CpuCollective>(g, r));
  return out;
}

std::unique_ptr<Backend> make_tp_backend(const Model& model, const BackendOptions& opt) {
  if (opt.tp < 1) throw Error("--tp must be at least 1, got " + std::to_string(opt.tp));
  if (opt.device == DeviceKind::Cuda) return make_cuda_tp_backend(model, opt);
  check_tp_split(model, opt.tp);
  BackendOptions o = opt;
  // The CPU's threads are shared among the ranks, which run at the same time.
  const int hw = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  o.n_threads = std::max(1, (opt.n_threads > 0 ? opt.n_threads : hw) / opt.tp);
  return std::make_unique<TpBackend>(
      model, o, make_cpu_collectives(opt.tp),
      [](const TpShard& s, const BackendOptions& ro) { return make_cpu_backend(s.model, ro); });
}

}  // namespace llm
