// Tensor-parallel shards: one rank's slice of every layer (Megatron-LM, Shoeybi et al.
// 2019, §3). Attention is split by heads — rank r owns query heads
// [r H/N, (r+1) H/N) and, because N divides n_head_kv too, exactly the KV heads those
// query heads read (GQA) — and the feed-forward by rows of w_gate / w_up:
//
//   tensor              rank r's slice                         where it lives
//   wq, bq              rows  [r q_dim/N, (r+1) q_dim/N)        the mapped file
//   wk, wv, bk, bv      rows  [r kv_dim/N, (r+1) kv_dim/N)      the mapped file
//   w_gate, w_up        rows  [r n_ff/N, (r+1) n_ff/N)          the mapped file
//   wo                  cols  [r q_dim/N, (r+1) q_dim/N)        copied (each row's blocks)
//   w_down              cols  [r n_ff/N, (r+1) n_ff/N)          copied
//   embeddings, norms, output                                  replicated (the file)
//
// wo and w_down then give partial sums of the residual update; the ranks all-reduce
// them (engine/collective.h) and continue with identical residual streams.
#pragma once
#include <deque>
#include <memory>
#include <vector>

#include "engine/model.h"

namespace llm {

struct TpShard {
  int rank = 0, world = 1;
  // config: n_head, n_head_kv and n_ff divided by world (head_dim, n_embd, n_vocab kept);
  // weights: this rank's views. model.file is empty: nothing here reads GGUF.
  Model model;
  std::deque<GgufTensor> tensors;  // descriptors of the slices (TensorRef::t points here)
  std::vector<std::unique_ptr<uint8_t[]>> copies;  // storage of the column slices

  size_t weight_bytes() const;  // bytes of this rank's weights (replicated ones included)
};

// Throws llm::Error, naming the flag and the fix, when `world` ranks cannot split the
// model: world < 1, world not dividing n_head / n_head_kv / n_ff, or a column slice of
// wo / w_down that is not a whole number of its type's quantization blocks.
void check_tp_split(const Model& model, int world);

// Rank `rank` of `world` (0 <= rank < world); the shard points into `model`, which must
// outlive it. world == 1 gives the whole model as a shard.
std::unique_ptr<TpShard> make_tp_shard(const Model& model, int rank, int world);

}  // namespace llm
