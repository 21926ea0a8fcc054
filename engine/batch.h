// The flat input of one forward step: the single contract between the scheduler and a
// backend. Rows (tokens) of one sequence are contiguous and in position order; each row
// attends causally to positions 0..positions[row] of its own sequence through the paged
// KV cache. The K/V of every row is written to its slot before attention reads it.
//
//   column        shape                 meaning
//   tokens        (n_tokens)            token id of each row
//   positions     (n_tokens)            position of the row in its sequence
//   slots         (n_tokens)            KV slot written: block * block_size + position % block_size
//   seq_start     (n_seqs + 1)          rows of sequence s are [seq_start[s], seq_start[s+1])
//   block_tables  (n_seqs, max_blocks)  physical block of each logical block, -1 past the end
//   logit_rows    (n_logits)            rows whose logits are returned, in this order
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace llm {

struct Batch {
  std::vector<int32_t> tokens;
  std::vector<int32_t> positions;
  std::vector<int32_t> slots;
  std::vector<int32_t> seq_start{0};
  std::vector<int32_t> block_tables;
  int max_blocks = 0;
  std::vector<int32_t> logit_rows;

  int n_tokens() const { return static_cast<int>(tokens.size()); }
  int n_seqs() const { return static_cast<int>(seq_start.size()) - 1; }
  int n_logits() const { return static_cast<int>(logit_rows.size()); }
  const int32_t* block_table(int s) const { return block_tables.data() + static_cast<size_t>(s) * max_blocks; }

  // Appends one sequence's rows: tokens at positions first_pos.., whose blocks are
  // `blocks` (logical order). Pass want_logits_last to get the last row's logits.
  // Callers build batches with this; backends only read.
  void add_sequence(const int32_t* toks, int n, int first_pos, const std::vector<int32_t>& blocks,
                    int block_size, bool want_logits_last);
  void clear();
};

// Checks a batch against the contract above for a model of n_vocab tokens and a pool of
// kv_blocks blocks of block_size slots; throws llm::Error naming the first violation.
// Every backend calls it before touching device memory.
void validate_batch(const Batch& b, int n_vocab, int kv_blocks, int block_size);

}  // namespace llm
