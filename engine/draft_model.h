// Proposers that run a model: a smaller model of the target's vocabulary (--draft-model
// FILE), or a lower-bit copy of the target's own weights (self-speculation,
// --draft-quant TYPE) for when no draft model exists.
//
// The draft has its own backend and its own paged KV cache (a BlockPool without prefix
// caching) with one block table per sequence, and remembers which tokens it holds K/V
// for. Each propose() first rolls every sequence back to the longest common prefix of what
// it holds and the sequence's tokens now (so rejected guesses, preemption and anything
// else the engine did are handled alike), catches up the rest (the prompt, at first, in
// chunks), then decodes k guesses one position per forward, all sequences in one batch.
// When its pool runs out, the least recently used sequences not in the current call lose
// their draft cache (they catch up again later); a sequence that still does not fit gets
// fewer guesses or none.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/backend.h"
#include "engine/block_pool.h"
#include "engine/model.h"
#include "engine/spec_decode.h"
#include "engine/topk.h"

namespace llm {

class DraftModelProposer : public Proposer {
 public:
  // The backend runs `model`; both are owned (the model must outlive the backend, so it is
  // destroyed last). max_batch_tokens bounds the rows of one draft forward.
  DraftModelProposer(std::unique_ptr<Model> model, std::unique_ptr<Backend> backend,
                     std::string name, int max_batch_tokens = 2048);
  ~DraftModelProposer() override;

  std::string name() const override { return name_; }
  void propose(std::vector<DraftRequest>& reqs) override;
  void release(RequestId id) override;

  // Runs the draft exactly as propose() does, but feeds and proposes forced[r] (at most
  // reqs[r].k tokens) instead of its own guesses: a benchmark harness decides the guesses
  // while the draft model costs what it really costs. forced: (reqs.size()).
  void propose_forced(std::vector<DraftRequest>& reqs,
                      const std::vector<std::vector<int32_t>>& forced);

  // Finished requests' draft K/V kept for later requests that start with the same tokens
  // (a chat's next turn, a prompt sent again), as the target's prefix cache does: at most
  // n states, the least recently finished evicted first, and any of them when the pool
  // runs short (default 64; 0: freed when the request finishes).
  void set_keep_finished(int n);
  int kept_blocks() const;                // blocks the kept states hold
  int64_t rows() const { return rows_; }  // draft rows computed so far (catch-up + guesses)

  const Model& model() const { return *model_; }
  Backend& backend() { return *backend_; }
  int64_t forwards() const { return forwards_; }   // draft forward steps so far
  const BlockPool& pool() const { return pool_; }  // the draft's KV bookkeeping

 private:
  struct SeqState {
    BlockTable table;
    std::vector<int32_t> cached;  // tokens whose K/V the table holds, positions 0..
    Xoshiro256 rng{0};            // draws of sampled guesses
    uint64_t last_used = 0;
  };
  void run(std::vector<DraftRequest>& reqs, const std::vector<std::vector<int32_t>>* forced);
  void truncate(SeqState& st, int n_tokens);  // keeps the K/V of positions [0, n_tokens)
  bool evict_one();         // frees the oldest kept state, else the LRU state not used by this call
  void forward(bool top1);  // top1: one candidate a row into cand_, else logits_
  // A fresh request's state: the kept one sharing the longest prefix with tokens, if any.
  void adopt(SeqState& st, const std::vector<int32_t>& tokens);
  void drop_kept(size_t i);

  std::unique_ptr<Model> model_;
  std::unique_ptr<Backend> backend_;
  std::string name_;
  int max_batch_tokens_;
  BlockPool pool_;
  std::unordered_map<RequestId, SeqState> seqs_;
  std::vector<SeqState> kept_;  // finished requests' states, oldest first
  size_t keep_finished_ = 64;
  int64_t rows_ = 0;
  uint64_t clock_ = 0;  // propose() calls so far
  int64_t forwards_ = 0;
  Batch batch_;
  std::vector<float> logits_;  // (batch_.n_logits(), n_vocab)
  LogitCandidates cand_;       // (batch_.n_logits(), 1) where every choice is an argmax
};

// Throws llm::Error unless `draft` can propose tokens for `target`: the same vocabulary
// size, the same token texts (tokenizer.ggml.tokens) and the same BOS/EOS ids.
void check_draft_vocab(const Model& target, const Model& draft);

// A copy of `target` whose weight matrices are stored as `type` where their rows divide
// into its blocks (the others, and 1-D tensors, keep their type), written to a temporary
// file (in $TMPDIR) that is removed once mapped. Throws llm::Error when `type` cannot be
// written or the file cannot be.
std::unique_ptr<Model> make_quantized_copy(const Model& target, DType type, int n_threads);

}  // namespace llm
