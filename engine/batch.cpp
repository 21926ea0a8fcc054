#include "engine/batch.h"

#include <string>

#include "engine/error.h"

#include <algorithm>
#include <cassert>

namespace llm {

void Batch::add_sequence(const int32_t* toks, int n, int first_pos, const std::vector<int32_t>& blocks,
                         int block_size, bool want_logits_last) {
  assert(n > 0 && block_size > 0);
  assert(static_cast<int64_t>(blocks.size()) * block_size >= first_pos + n && "not enough KV blocks");
  const int needed = static_cast<int>(blocks.size());
  if (needed > max_blocks) {
    // Widen the table: re-lay existing rows at the new stride.
    std::vector<int32_t> wide(static_cast<size_t>(n_seqs()) * needed, -1);
    for (int s = 0; s < n_seqs(); ++s)
      std::copy(block_table(s), block_table(s) + max_blocks, wide.begin() + static_cast<size_t>(s) * needed);
    block_tables.swap(wide);
    max_blocks = needed;
  }
  for (int i = 0; i < n; ++i) {
    const int pos = first_pos + i;
    tokens.push_back(toks[i]);
    positions.push_back(pos);
    slots.push_back(blocks[static_cast<size_t>(pos / block_size)] * block_size + pos % block_size);
  }
  seq_start.push_back(static_cast<int32_t>(tokens.size()));
  const size_t row0 = block_tables.size();
  block_tables.resize(row0 + static_cast<size_t>(max_blocks), -1);
  std::copy(blocks.begin(), blocks.end(), block_tables.begin() + static_cast<std::ptrdiff_t>(row0));
  if (want_logits_last) logit_rows.push_back(static_cast<int32_t>(tokens.size()) - 1);
}

void Batch::clear() {
  tokens.clear();
  positions.clear();
  slots.clear();
  seq_start.assign(1, 0);
  block_tables.clear();
  max_blocks = 0;
  logit_rows.clear();
}

void validate_batch(const Batch& b, int n_vocab, int kv_blocks, int block_size) {
  const int n = b.n_tokens();
  if (n <= 0) throw Error("forward: empty batch");
  if (b.positions.size() != b.tokens.size() || b.slots.size() != b.tokens.size())
    throw Error("forward: tokens, positions and slots differ in length");
  if (b.n_seqs() <= 0 || b.seq_start.front() != 0 || b.seq_start.back() != n)
    throw Error("forward: seq_start must run from 0 to n_tokens");
  if (b.max_blocks <= 0 || b.block_tables.size() != static_cast<size_t>(b.n_seqs()) * b.max_blocks)
    throw Error("forward: block_tables must hold n_seqs x max_blocks entries");
  const int64_t n_slots = static_cast<int64_t>(kv_blocks) * block_size;
  for (int s = 0; s < b.n_seqs(); ++s) {
    const int r0 = b.seq_start[static_cast<size_t>(s)],
              r1 = b.seq_start[static_cast<size_t>(s) + 1];
    if (r1 <= r0) throw Error("forward: sequence " + std::to_string(s) + " has no rows");
    int max_pos = -1, prev = -1;
    for (int r = r0; r < r1; ++r) {
      const int32_t tok = b.tokens[static_cast<size_t>(r)],
                    pos = b.positions[static_cast<size_t>(r)];
      const int32_t slot = b.slots[static_cast<size_t>(r)];
      if (tok < 0 || tok >= n_vocab)
        throw Error("forward: token id " + std::to_string(tok) + " is outside the vocabulary of " +
                    std::to_string(n_vocab));
      if (pos < 0) throw Error("forward: negative position");
      if (pos <= prev) throw Error("forward: positions of a sequence must increase");
      if (slot < 0 || slot >= n_slots)
        throw Error("forward: KV slot " + std::to_string(slot) + " is outside the pool of " +
                    std::to_string(n_slots));
      prev = pos;
      max_pos = std::max(max_pos, pos);
    }
    const int last_block = max_pos / block_size;
    if (last_block >= b.max_blocks)
      throw Error("forward: position " + std::to_string(max_pos) + " lies past sequence " +
                  std::to_string(s) + "'s block table");
    const int32_t* table = b.block_table(s);
    for (int i = 0; i <= last_block; ++i)
      if (table[i] < 0 || table[i] >= kv_blocks)
        throw Error("forward: block " + std::to_string(table[i]) + " in sequence " +
                    std::to_string(s) + "'s table is outside the pool of " +
                    std::to_string(kv_blocks) + " blocks");
  }
  for (int32_t r : b.logit_rows)
    if (r < 0 || r >= n)
      throw Error("forward: logit row " + std::to_string(r) + " is not a row of the batch");
}

}  // namespace llm
