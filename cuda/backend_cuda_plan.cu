// A step's plan (CudaBackend::plan_step): the launch decisions for its rows, and its inputs
// — tokens, positions, slots, the attention's row lists, tiles and groups, the block
// tables — packed into pinned memory and copied to the device in one transfer.
#include <algorithm>
#include <climits>
#include <cstring>

#include "cuda/attention.h"
#include "cuda/backend_cuda.h"
#include "cuda/backend_cuda_util.h"
#include "cuda/common.cuh"

namespace llm::cuda {
namespace {

// Offsets of the step inputs in the packed transfer buffer. The block tables come last,
// so for a given bucket every other offset is fixed (what a replayed graph reads).
struct InLayout {
  size_t tokens, positions, slots, row_seq, logit_rows, decode_rows, table_start, tiles, groups,
      tables, total;
};
InLayout in_layout(int n, int n_seqs, int n_logits, int n_decode, int n_tiles, int n_groups,
                   int n_table) {
  size_t o = 0;
  auto take = [&](size_t bytes) {
    const size_t r = o;
    o = (o + bytes + 15) / 16 * 16;
    return r;
  };
  InLayout L;
  L.tokens = take(4 * static_cast<size_t>(n));
  L.positions = take(4 * static_cast<size_t>(n));
  L.slots = take(4 * static_cast<size_t>(n));
  L.row_seq = take(4 * static_cast<size_t>(n));
  L.logit_rows = take(4 * static_cast<size_t>(n_logits));
  L.decode_rows = take(4 * static_cast<size_t>(n_decode));
  L.table_start = take(4 * static_cast<size_t>(n_seqs));
  L.tiles = take(16 * static_cast<size_t>(n_tiles));
  L.groups = take(16 * static_cast<size_t>(n_groups));
  L.tables = take(4 * static_cast<size_t>(n_table));
  L.total = o;
  return L;
}

}  // namespace

CudaBackend::Plan CudaBackend::plan_step(const Batch& b, bool graph_mode, int n_seqs_padded,
                                         int rows_per_seq) {
  const int n_real = b.n_tokens();
  const int m = rows_per_seq;
  Plan p;
  p.n = graph_mode ? n_seqs_padded * m : n_real;
  p.n_seqs = graph_mode ? n_seqs_padded : b.n_seqs();
  p.n_logits = graph_mode ? p.n : b.n_logits();
  p.matvec = p.n <= matvec_cutoff_;
  p.tc = !p.matvec && p.n <= tc_rows_;
  p.sk = p.n >= sk_min_rows_ && p.n <= sk_rows_;
  force_gemv(p);

  // Host side of the inputs.
  std::vector<int32_t> row_seq(static_cast<size_t>(p.n)),
      table_start(static_cast<size_t>(p.n_seqs)), tables;
  std::vector<int32_t> decode_rows;
  std::vector<int4> tiles, groups;
  int64_t max_keys = 0, max_tile_keys = 0, max_group_keys = 0;
  int group_rows = 0;
  // A few rows of one sequence (a speculative step's k + 1): groups that share K/V. Not
  // 9+ rows of a lone sequence, which the persistent kernel's fill rule takes faster
  // (H100, 7B F16, 512 positions: r(8) 1.13 against 1.15; PERF.md, run 60).
  auto grouped = [&](int rows) {
    return attn_rows_from_ > 0 && rows >= attn_rows_from_ && (b.n_seqs() > 1 || rows <= 8);
  };
  auto add_groups = [&](int r0, int r1, int s) {
    for (int q = r0; q < r1; q += kAttnGroupRows) {
      const int len = std::min(kAttnGroupRows, r1 - q);
      groups.push_back(make_int4(q, len, s, group_rows));
      group_rows += len;
    }
  };
  for (int s = 0; s < b.n_seqs(); ++s) {
    const int r0 = b.seq_start[static_cast<size_t>(s)],
              r1 = b.seq_start[static_cast<size_t>(s) + 1];
    const int last = b.positions[static_cast<size_t>(r1) - 1];
    table_start[static_cast<size_t>(s)] = static_cast<int32_t>(tables.size());
    const int32_t* t = b.block_table(s);
    tables.insert(tables.end(), t, t + last / block_size_ + 1);
    for (int r = r0; r < r1; ++r) row_seq[static_cast<size_t>(r)] = s;
    if (!graph_mode && r1 - r0 >= prefill_min_rows_) {
      for (int q = r0; q < r1; q += kPrefillTileRows)
        tiles.push_back(make_int4(q, std::min(kPrefillTileRows, r1 - q), s, 0));
      max_tile_keys = std::max<int64_t>(max_tile_keys, last + 1);
    } else if (grouped(r1 - r0)) {
      add_groups(r0, r1, s);
      max_group_keys = std::max<int64_t>(max_group_keys, last + 1);
    } else {
      for (int r = r0; r < r1; ++r) decode_rows.push_back(r);
      max_keys = std::max<int64_t>(max_keys, last + 1);
    }
  }
  for (int s = b.n_seqs(); s < p.n_seqs; ++s) {  // padding sequences: m rows at the sink block
    table_start[static_cast<size_t>(s)] = static_cast<int32_t>(tables.size());
    tables.push_back(kv_blocks_);
    for (int r = s * m; r < (s + 1) * m; ++r) row_seq[static_cast<size_t>(r)] = s;
    if (grouped(m)) {
      add_groups(s * m, (s + 1) * m, s);
    } else {
      for (int r = s * m; r < (s + 1) * m; ++r) decode_rows.push_back(r);
    }
  }
  if (graph_mode) {  // a graph serves every context length
    max_keys = INT_MAX;
    max_group_keys = INT_MAX;
  }
  p.n_decode = static_cast<int>(decode_rows.size());
  p.n_tiles = static_cast<int>(tiles.size());
  p.n_groups = static_cast<int>(groups.size());
  if (p.n_groups > 0) {
    // A split of 64 keys (a 16-key tile a warp) up to 32 of them, within the partials
    // buffer: a row's key ranges then depend on its own position only (attention_rows.cu).
    const int64_t s = std::min<int64_t>(
        {kAttnRowsMaxSplit, ceil_div(max_group_keys, 64), split_ws_rows_ / group_rows});
    p.n_group_split = static_cast<int>(std::max<int64_t>(s, 1));
  }
  if (p.n_decode > 0) {
    // Heads of the whole model (a tensor-parallel rank holds 1/world of them): the same
    // splits, so the same sums, on one GPU as on each rank.
    const int64_t heads = static_cast<int64_t>(cfg_.n_head) * (comm_ ? comm_->world() : 1);
    // Splits for 2 blocks per SM, 4 where the (row, head) pairs are fewer than the SMs
    // (H100, one row at 2,048 positions: 7B F16 5.64 -> 5.56 ms, the llama-1b draft 0.85 ->
    // 0.80-0.84; at 8 rows 4 lost: 2,384-2,394 -> 2,265-2,280 tok/s; PERF.md, runs 77-78).
    const int64_t pairs = static_cast<int64_t>(p.n_decode) * heads;
    int64_t s = ceil_div((pairs < n_sm_ ? 4 : 2) * static_cast<int64_t>(n_sm_), pairs);
    s = std::min<int64_t>(
        {s, kMaxSplit, ceil_div(max_keys, kAttnSplitKeys), split_ws_rows_ / p.n_decode});
    p.n_split = static_cast<int>(std::max<int64_t>(s, 1));
  }
  if (p.n_tiles > 0 && prefill_split_) {
    // Few tiles (a short chunk after a long cached prefix): cut their keys too, aiming at
    // four blocks per SM, each split at least two 32-key tiles, within the partials
    // buffer. Whole-model heads, as above.
    const int64_t heads = static_cast<int64_t>(cfg_.n_head) * (comm_ ? comm_->world() : 1);
    int64_t s = ceil_div(4 * n_sm_, static_cast<int64_t>(p.n_tiles) * heads);
    s = std::min<int64_t>({s, kMaxPrefillSplit, ceil_div(max_tile_keys, 64),
                           split_ws_rows_ / (static_cast<int64_t>(p.n_tiles) * kPrefillTileRows)});
    p.n_tile_split = static_cast<int>(std::max<int64_t>(s, 1));
  }
  // Deterministic mode: one split count for every step, so that the keys a row's splits
  // take depend on its own length only (attention_decode.cu); record() launches the rows
  // in groups that the partials buffer holds.
  if (deterministic_) p.n_split = kMaxSplit;

  const InLayout L = in_layout(p.n, p.n_seqs, p.n_logits, p.n_decode, p.n_tiles, p.n_groups,
                               static_cast<int>(tables.size()));
  ensure_input_capacity(L.total);
  uint8_t* h = in_host_.as<uint8_t>();
  auto put = [&](size_t off, const void* src, size_t bytes) {
    if (bytes) std::memcpy(h + off, src, bytes);
  };
  put(L.tokens, b.tokens.data(), 4 * static_cast<size_t>(n_real));
  put(L.positions, b.positions.data(), 4 * static_cast<size_t>(n_real));
  put(L.slots, b.slots.data(), 4 * static_cast<size_t>(n_real));
  for (int r = n_real; r < p.n; ++r) {  // padding rows: token 0 at position 0 of the sink block
    reinterpret_cast<int32_t*>(h + L.tokens)[r] = 0;
    reinterpret_cast<int32_t*>(h + L.positions)[r] = 0;
    reinterpret_cast<int32_t*>(h + L.slots)[r] = kv_blocks_ * block_size_;
  }
  put(L.row_seq, row_seq.data(), 4 * row_seq.size());
  if (graph_mode) {  // the wanted rows first, then every other row (the graph's fixed count)
    int32_t* lr = reinterpret_cast<int32_t*>(h + L.logit_rows);
    std::vector<char> wanted(static_cast<size_t>(p.n), 0);
    int k = 0;
    for (int32_t r : b.logit_rows) {
      lr[k++] = r;
      wanted[static_cast<size_t>(r)] = 1;
    }
    for (int r = 0; r < p.n; ++r)
      if (!wanted[static_cast<size_t>(r)]) lr[k++] = r;
  } else {
    put(L.logit_rows, b.logit_rows.data(), 4 * b.logit_rows.size());
  }
  put(L.decode_rows, decode_rows.data(), 4 * decode_rows.size());
  put(L.table_start, table_start.data(), 4 * table_start.size());
  put(L.tiles, tiles.data(), 16 * tiles.size());
  put(L.groups, groups.data(), 16 * groups.size());
  put(L.tables, tables.data(), 4 * tables.size());
  CUDA_CHECK(
      cudaMemcpyAsync(in_dev_.get(), in_host_.get(), L.total, cudaMemcpyHostToDevice, stream_));

  const uint8_t* d = in_dev_.as<uint8_t>();
  p.tokens = reinterpret_cast<const int32_t*>(d + L.tokens);
  p.positions = reinterpret_cast<const int32_t*>(d + L.positions);
  p.slots = reinterpret_cast<const int32_t*>(d + L.slots);
  p.row_seq = reinterpret_cast<const int32_t*>(d + L.row_seq);
  p.logit_rows = reinterpret_cast<const int32_t*>(d + L.logit_rows);
  p.decode_rows = reinterpret_cast<const int32_t*>(d + L.decode_rows);
  p.table_start = reinterpret_cast<const int32_t*>(d + L.table_start);
  p.tiles = reinterpret_cast<const int4*>(d + L.tiles);
  p.groups = reinterpret_cast<const int4*>(d + L.groups);
  p.tables = reinterpret_cast<const int32_t*>(d + L.tables);
  return p;
}

}  // namespace llm::cuda
