// The paged KV cache's bookkeeping (host side): fixed-size blocks of `block_size` token
// slots, reference counts, automatic prefix caching and copy-on-write. The backend owns the
// K/V memory; this pool only decides which physical block holds which tokens.
//
// Prefix caching (as in vLLM's automatic prefix caching): every *full, computed* block of a
// sequence gets a chained hash  h_i = H(h_{i-1}, tokens of block i),  so equal hashes mean
// equal whole prefixes. Registered blocks are immutable and findable by hash. A registered
// block whose ref count drops to 0 keeps its K/V and waits in an LRU list; it is reused by a
// later request with the same prefix, or evicted (oldest first) when free blocks run out.
// The pool stores each registered block's tokens and parent hash and compares them on a hit,
// so a 64-bit hash collision costs a cache miss, never wrong K/V.
//
// Writes: positions [write_from, n_total) of a table are about to be written by the backend.
// Every block they touch must belong to that table alone and not be registered:
//   - a block shared with another table (ref > 1) is copied first (copy-on-write): the
//     caller must run Backend::copy_kv_block(src, dst) for each returned copy, in order,
//     before the forward step that writes;
//   - a registered block held only by this table is unregistered and written in place
//     (its K/V is recomputed; it is registered again once full).
// Within one table only the block holding the first written position can be shared: later
// blocks are fresh. Shared partial blocks arise from fork(); a shared full block arises when
// a whole prompt hits the cache and its last token must be recomputed to get logits.
//
// Every mutating operation has a check that predicts it exactly (can_allocate/allocate,
// can_append/append): a commit whose check passed never fails, and nothing half-applies.
#pragma once
#include <cstddef>
#include <cstdint>
#include <unordered_map>
#include <vector>

namespace llm {

using BlockHash = uint64_t;

// One sequence's view of the KV cache.
//   blocks  (n_blocks)  physical block of each logical block
//   hashes  (n_hashed)  chained hash of each leading full, computed block (n_hashed <= n_blocks)
struct BlockTable {
  std::vector<int32_t> blocks;
  std::vector<BlockHash> hashes;
  bool empty() const { return blocks.empty(); }
};

// Cached leading full blocks of some tokens, found by BlockPool::match_prefix.
//   blocks  (n_hit)  physical blocks holding tokens [0, n_hit * block_size)
//   hashes  (n_hit)  their chained hashes
struct PrefixHit {
  std::vector<int32_t> blocks;
  std::vector<BlockHash> hashes;
  int n_blocks() const { return static_cast<int>(blocks.size()); }
};

// A copy the backend must do before the next forward: all layers' K/V of src into dst.
struct BlockCopy {
  int32_t src;
  int32_t dst;
  bool operator==(const BlockCopy&) const = default;
};

// total == used + cached + free.
struct KvUsage {
  int total = 0;   // blocks in the pool
  int used = 0;    // referenced by at least one table
  int cached = 0;  // unreferenced, holding a reusable prefix (evictable, LRU)
  int free = 0;    // unreferenced, holding nothing
};

class BlockPool {
 public:
  // enable_prefix_caching = false: full blocks are never registered, match_prefix finds
  // nothing, and freed blocks go straight to the free list.
  BlockPool(int num_blocks, int block_size, bool enable_prefix_caching = true);

  int block_size() const { return block_size_; }
  int num_blocks() const { return static_cast<int>(meta_.size()); }
  bool prefix_caching() const { return caching_; }
  // Blocks obtainable now: free ones plus evictable cached ones.
  int num_available() const { return static_cast<int>(free_.size()) + lru_size_; }
  KvUsage usage() const;

  // Hash of one full block chained to its parent's (kRootHash for the first block).
  static constexpr BlockHash kRootHash = 0x6c6c6d2d6b76ull;
  static BlockHash hash_block(BlockHash parent, const int32_t* tokens, int block_size);

  // The longest run of cached leading full blocks of tokens[0, n). Changes nothing.
  PrefixHit match_prefix(const int32_t* tokens, int n) const;

  // Check/commit for an empty table: adopt `hit` (a match_prefix result made since the
  // last mutation) as its first blocks, then grow it to n_total tokens with
  // [write_from, n_total) writable. write_from <= hit tokens and write_from < n_total.
  bool can_allocate(const PrefixHit& hit, int write_from, int n_total) const;
  void allocate(BlockTable& t, const PrefixHit& hit, int write_from, int n_total,
                std::vector<BlockCopy>& copies);

  // Check/commit for a table that holds blocks: grow it to cover n_total tokens with
  // positions [write_from, n_total) writable (copy-on-write of a shared block).
  bool can_append(const BlockTable& t, int write_from, int n_total) const;
  void append(BlockTable& t, int write_from, int n_total, std::vector<BlockCopy>& copies);

  // After a forward step: tokens[0, n_computed) have K/V in t. Hashes the newly full
  // blocks and registers them for prefix caching. A hash already registered to another
  // block (two sequences computed the same prefix at once) leaves this block unregistered.
  void cache_full_blocks(BlockTable& t, const int32_t* tokens, int n_computed);

  // A second table sharing every block of t (parallel sampling, beam search). Either
  // table's next write into a shared block copies it first. Never fails.
  BlockTable fork(const BlockTable& t);

  // Drops the table's references, last block first, so that a prefix's tail is evicted
  // before its head. Leaves t empty.
  void free(BlockTable& t);
  // Keeps only the blocks holding positions [0, n_tokens) (speculative decoding's rollback
  // of rejected draft positions): the later ones are dropped as free() drops them.
  void truncate(BlockTable& t, int n_tokens);

  // Introspection for tests and metrics.
  int ref_count(int32_t block) const { return meta_[static_cast<size_t>(block)].ref; }
  bool is_registered(int32_t block) const { return meta_[static_cast<size_t>(block)].registered; }
  // Recounts everything from scratch; returns false on any inconsistency.
  bool check_consistency() const;

 private:
  struct Meta {
    int ref = 0;
    bool registered = false;  // in map_, immutable
    BlockHash hash = 0;
    BlockHash parent = 0;
    int32_t lru_prev = -1;  // links of the LRU list of unreferenced registered blocks
    int32_t lru_next = -1;
  };

  // Blocks that growing t (after adopting `hit`, when given) would take from the available
  // ones: new blocks, copies of shared blocks, and hit blocks that are now unreferenced.
  int blocks_needed(const BlockTable& t, const PrefixHit* hit, int write_from, int n_total) const;
  void grow(BlockTable& t, int write_from, int n_total, std::vector<BlockCopy>& copies);
  int32_t take_block();  // a free block, else the least recently used cached one
  void incref(int32_t b);
  void decref(int32_t b);
  void unregister(int32_t b);
  void lru_push_back(int32_t b);
  void lru_remove(int32_t b);
  const int32_t* tokens_of(int32_t b) const {
    return block_tokens_.data() + static_cast<size_t>(b) * block_size_;
  }

  int block_size_;
  bool caching_;
  std::vector<Meta> meta_;             // (num_blocks)
  std::vector<int32_t> block_tokens_;  // (num_blocks, block_size) tokens of registered blocks
  std::vector<int32_t> free_;          // stack of unreferenced, unregistered blocks
  int32_t lru_head_ = -1;              // oldest unreferenced registered block
  int32_t lru_tail_ = -1;
  int lru_size_ = 0;
  int used_ = 0;                                // blocks with ref > 0
  std::unordered_map<BlockHash, int32_t> map_;  // hash -> registered block
};

}  // namespace llm
