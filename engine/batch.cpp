#include "engine/batch.h"

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

}  // namespace llm
