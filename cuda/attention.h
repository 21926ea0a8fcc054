// Causal attention over the paged f16 KV cache of one layer (launchers of
// attention_decode.cu and attention_prefill.cu).
//
// Each row attends to positions 0..positions[row] of its sequence s; position p lives in
// slot tables[table_start[s] + p / block_size] * block_size + p % block_size (the block
// tables of all sequences back to back, so a captured graph needs no fixed width). Query head h
// reads KV head h / (n_head / n_head_kv). Scale 1/sqrt(head_dim).
#pragma once
#include "cuda/cuda_types.h"

namespace llm::cuda {

struct AttnArgs {
  const float* q = nullptr;              // (n_tokens, n_head, head_dim) f32, RoPE applied
  const __half* k_cache = nullptr;       // (n_slots, n_head_kv, head_dim)
  const __half* v_cache = nullptr;       // (n_slots, n_head_kv, head_dim)
  const int32_t* positions = nullptr;    // (n_tokens)
  const int32_t* row_seq = nullptr;      // (n_tokens) sequence of each row
  const int32_t* table_start = nullptr;  // (n_seqs) first entry of each sequence's table
  const int32_t* tables = nullptr;       // block tables, back to back
  int n_head = 0, n_head_kv = 0, head_dim = 0, block_size = 0;
  float* out = nullptr;  // (n_tokens, n_head, head_dim) f32
  // Decode only: the output also in f16 and/or q8 (q8 needs head_dim % 32 == 0), for the
  // next matrix product, saving a conversion pass. Null: not wanted.
  __half* out_f16 = nullptr;
  ActQ8 out_q8;
  // Keys that earlier steps wrote are read before the PDL wait (the kernel before writes only
  // this step's rows): 0 never; otherwise attention_decode loads the first tile's keys into
  // registers and prefetches its values (1: to L2; 2: to L1; 3: keys only), attention_rows
  // and the persistent kernel copy their first tiles.
  int prefetch = 0;
};

// head_dim must be a multiple of 8 and at most 256.
bool attention_head_dim_supported(int head_dim);

// Flash-decoding: the key range of each (row, head) is cut into n_split parts computed by
// separate blocks; the last block to finish merges them. rows: (n_rows) device list of
// the rows to compute. workspace: attention_decode_workspace(n_rows, n_head, head_dim,
// n_split) bytes of partials; counters: (n_rows, n_head) ints, zero before the first use
// (the merging block resets its counter).
// A split takes at least kAttnSplitKeys keys (of a row's own count, so that its splits do
// not depend on the step): a context of 512 keys 8 splits (H100, 7B F16 and llama-1b
// one-row steps 2 and 3 % faster than with 128; PERF.md, run 74).
constexpr int kAttnSplitKeys = 64;
size_t attention_decode_workspace(int n_rows, int n_head, int head_dim, int n_split);
void attention_decode(const AttnArgs& a, const int32_t* rows, int n_rows, int n_split,
                      float* workspace, int* counters, cudaStream_t stream);

// A few consecutive rows of one sequence at once on the tensor cores (attention_rows.cu):
// groups (n_groups) device int4 {first row, rows (1..16), sequence, first partials row};
// the rows must be in position order. A group's keys are cut into parts of 64 (a 16-key
// tile a warp), or into n_split longer ones where 64-key parts would be more: a row's
// parts, and so its bits, do not depend on the other rows of its group. The last block to
// finish merges them: workspace attention_decode_workspace(partials rows, ...) bytes,
// counters (partials rows, n_head) ints, zero before the first use. head_dim 64 or 128.
constexpr int kAttnGroupRows = 16;
constexpr int kAttnRowsMaxSplit = 32;  // its merge keeps one split a lane
bool attention_rows_supported(int head_dim);
void attention_rows(const AttnArgs& a, const int4* groups, int n_groups, int n_split,
                    float* workspace, int* counters, cudaStream_t stream);

// The same for steps of many rows, as a persistent grid (attention_decode_persist.cu):
// blocks_per_sm (1 to 4) blocks per SM of n_sm, each streaming the key and value tiles of
// every G-th (row, head) item through a ring of shared-memory stages. Keys are not split
// (no partials, no counters). Fits: head_dim 64 or 128 and at most 64 items per block.
bool attention_decode_persist_fits(int n_rows, int n_head, int head_dim, int n_sm,
                                   int blocks_per_sm);
void attention_decode_persist(const AttnArgs& a, const int32_t* rows, int n_rows, int n_sm,
                              int blocks_per_sm, cudaStream_t stream);

// Prefill: tiles of up to kPrefillTileRows consecutive rows of one sequence share each
// K/V tile loaded into shared memory. tiles: (n_tiles) device int4 {row0, n_rows, seq, 0}.
// n_split > 1 also cuts each tile's keys into that many parts (whole 32-key tiles) computed
// by separate blocks and merged by the last to finish: workspace of
// attention_prefill_workspace(...) bytes, counters (n_tiles, n_head) ints, zero before the
// first use (the merging block resets its counter).
constexpr int kPrefillTileRows = 32;
constexpr int kMaxPrefillSplit = 32;  // the merge keeps one weight per split in a lane
size_t attention_prefill_workspace(int n_tiles, int n_head, int head_dim, int n_split);
void attention_prefill(const AttnArgs& a, const int4* tiles, int n_tiles, int n_split,
                       float* workspace, int* counters, cudaStream_t stream);

}  // namespace llm::cuda
