#include "engine/block_pool.h"

#include <algorithm>
#include <cassert>
#include <cstring>

namespace llm {

namespace {

// splitmix64's finalizer (Steele, Lea, Flood 2014): a bijective 64-bit mix whose every
// output bit depends on every input bit.
uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

int ceil_div(int a, int b) {
  return (a + b - 1) / b;
}

}  // namespace

BlockPool::BlockPool(int num_blocks, int block_size, bool enable_prefix_caching)
    : block_size_(block_size), caching_(enable_prefix_caching) {
  assert(num_blocks > 0 && block_size > 0);
  meta_.resize(static_cast<size_t>(num_blocks));
  block_tokens_.assign(static_cast<size_t>(num_blocks) * block_size, -1);
  // A stack popped from the back: lay it out so that block 0 is handed out first.
  free_.reserve(static_cast<size_t>(num_blocks));
  for (int b = num_blocks - 1; b >= 0; --b) free_.push_back(b);
}

KvUsage BlockPool::usage() const {
  KvUsage u;
  u.total = num_blocks();
  u.used = used_;
  u.cached = lru_size_;
  u.free = static_cast<int>(free_.size());
  return u;
}

BlockHash BlockPool::hash_block(BlockHash parent, const int32_t* tokens, int block_size) {
  uint64_t h = mix64(parent ^ 0x9e3779b97f4a7c15ull);
  for (int i = 0; i < block_size; ++i)
    h = mix64(h + static_cast<uint32_t>(tokens[i]) + 0x9e3779b97f4a7c15ull);
  return h;
}

PrefixHit BlockPool::match_prefix(const int32_t* tokens, int n) const {
  PrefixHit hit;
  if (!caching_) return hit;
  BlockHash parent = kRootHash;
  for (int i = 0; (i + 1) * block_size_ <= n; ++i) {
    const int32_t* toks = tokens + static_cast<size_t>(i) * block_size_;
    const BlockHash h = hash_block(parent, toks, block_size_);
    auto it = map_.find(h);
    if (it == map_.end()) break;
    const int32_t b = it->second;
    // Verify what the hash stands for: a collision must not hand out someone else's K/V.
    if (meta_[b].parent != parent ||
        std::memcmp(tokens_of(b), toks, sizeof(int32_t) * block_size_) != 0)
      break;
    hit.blocks.push_back(b);
    hit.hashes.push_back(h);
    parent = h;
  }
  return hit;
}

int BlockPool::blocks_needed(const BlockTable& t, const PrefixHit* hit, int write_from,
                             int n_total) const {
  assert(write_from >= 0 && write_from < n_total);
  const std::vector<int32_t>& blocks = hit ? hit->blocks : t.blocks;
  const int extra_ref = hit ? 1 : 0;  // the reference adoption would add
  int need = 0;
  if (hit)
    for (int32_t b : hit->blocks)
      if (meta_[b].ref == 0) ++need;  // leaves the evictable LRU list
  const int have = static_cast<int>(blocks.size());
  const int want = ceil_div(n_total, block_size_);
  need += std::max(0, want - have);
  for (int i = write_from / block_size_; i < std::min(have, want); ++i)
    if (meta_[blocks[i]].ref + extra_ref > 1) ++need;  // copy-on-write
  return need;
}

bool BlockPool::can_allocate(const PrefixHit& hit, int write_from, int n_total) const {
  assert(write_from <= hit.n_blocks() * block_size_);
  return blocks_needed(BlockTable{}, &hit, write_from, n_total) <= num_available();
}

void BlockPool::allocate(BlockTable& t, const PrefixHit& hit, int write_from, int n_total,
                         std::vector<BlockCopy>& copies) {
  assert(t.empty() && can_allocate(hit, write_from, n_total));
  for (int32_t b : hit.blocks) incref(b);
  t.blocks = hit.blocks;
  t.hashes = hit.hashes;
  grow(t, write_from, n_total, copies);
}

bool BlockPool::can_append(const BlockTable& t, int write_from, int n_total) const {
  return blocks_needed(t, nullptr, write_from, n_total) <= num_available();
}

void BlockPool::append(BlockTable& t, int write_from, int n_total, std::vector<BlockCopy>& copies) {
  assert(can_append(t, write_from, n_total));
  grow(t, write_from, n_total, copies);
}

void BlockPool::grow(BlockTable& t, int write_from, int n_total, std::vector<BlockCopy>& copies) {
  const int first = write_from / block_size_;
  const int want = ceil_div(n_total, block_size_);
  const int have = static_cast<int>(t.blocks.size());
  for (int i = first; i < std::min(have, want); ++i) {
    const int32_t b = t.blocks[i];
    if (meta_[b].ref > 1) {
      const int32_t nb = take_block();
      incref(nb);
      copies.push_back({b, nb});
      decref(b);  // stays >= 1: the other holders keep it
      t.blocks[i] = nb;
    } else if (meta_[b].registered) {
      unregister(b);  // ours alone: recompute in place
    }
  }
  // Blocks from `first` on are rewritten, so their hashes no longer describe computed K/V.
  if (t.hashes.size() > static_cast<size_t>(first)) t.hashes.resize(static_cast<size_t>(first));
  for (int i = have; i < want; ++i) {
    const int32_t nb = take_block();
    incref(nb);
    t.blocks.push_back(nb);
  }
}

void BlockPool::cache_full_blocks(BlockTable& t, const int32_t* tokens, int n_computed) {
  if (!caching_) return;
  const int n_full = std::min(n_computed / block_size_, static_cast<int>(t.blocks.size()));
  for (int i = static_cast<int>(t.hashes.size()); i < n_full; ++i) {
    const BlockHash parent = i > 0 ? t.hashes[static_cast<size_t>(i) - 1] : kRootHash;
    const int32_t* toks = tokens + static_cast<size_t>(i) * block_size_;
    const BlockHash h = hash_block(parent, toks, block_size_);
    t.hashes.push_back(h);
    const int32_t b = t.blocks[static_cast<size_t>(i)];
    Meta& m = meta_[b];
    if (m.registered || map_.count(h)) continue;
    m.registered = true;
    m.hash = h;
    m.parent = parent;
    std::memcpy(block_tokens_.data() + static_cast<size_t>(b) * block_size_, toks,
                sizeof(int32_t) * block_size_);
    map_.emplace(h, b);
  }
}

BlockTable BlockPool::fork(const BlockTable& t) {
  for (int32_t b : t.blocks) incref(b);
  return t;
}

void BlockPool::free(BlockTable& t) {
  for (auto it = t.blocks.rbegin(); it != t.blocks.rend(); ++it) decref(*it);
  t.blocks.clear();
  t.hashes.clear();
}

void BlockPool::truncate(BlockTable& t, int n_tokens) {
  const size_t keep = static_cast<size_t>(ceil_div(n_tokens, block_size_));
  while (t.blocks.size() > keep) {
    decref(t.blocks.back());
    t.blocks.pop_back();
  }
  if (t.hashes.size() > keep) t.hashes.resize(keep);
}

int32_t BlockPool::take_block() {
  assert(num_available() > 0 && "take_block without a passing check");
  if (!free_.empty()) {
    const int32_t b = free_.back();
    free_.pop_back();
    return b;
  }
  const int32_t b = lru_head_;
  lru_remove(b);
  unregister(b);
  return b;
}

void BlockPool::incref(int32_t b) {
  Meta& m = meta_[b];
  if (m.ref == 0) {
    // Blocks on the free stack are only handed out by take_block (which pops them first);
    // the only unreferenced blocks adopted directly are cached ones.
    if (m.registered) lru_remove(b);
    ++used_;
  }
  ++m.ref;
}

void BlockPool::decref(int32_t b) {
  Meta& m = meta_[b];
  assert(m.ref > 0);
  if (--m.ref > 0) return;
  --used_;
  if (m.registered)
    lru_push_back(b);
  else
    free_.push_back(b);
}

void BlockPool::unregister(int32_t b) {
  Meta& m = meta_[b];
  assert(m.registered);
  auto it = map_.find(m.hash);
  assert(it != map_.end() && it->second == b);
  map_.erase(it);
  m.registered = false;
}

void BlockPool::lru_push_back(int32_t b) {
  Meta& m = meta_[b];
  m.lru_prev = lru_tail_;
  m.lru_next = -1;
  if (lru_tail_ >= 0)
    meta_[lru_tail_].lru_next = b;
  else
    lru_head_ = b;
  lru_tail_ = b;
  ++lru_size_;
}

void BlockPool::lru_remove(int32_t b) {
  Meta& m = meta_[b];
  if (m.lru_prev >= 0)
    meta_[m.lru_prev].lru_next = m.lru_next;
  else
    lru_head_ = m.lru_next;
  if (m.lru_next >= 0)
    meta_[m.lru_next].lru_prev = m.lru_prev;
  else
    lru_tail_ = m.lru_prev;
  m.lru_prev = m.lru_next = -1;
  --lru_size_;
}

bool BlockPool::check_consistency() const {
  const int n = num_blocks();
  std::vector<int> where(static_cast<size_t>(n), 0);  // 1 = on free stack, 2 = in LRU
  int used = 0, registered = 0;
  for (int b = 0; b < n; ++b) {
    if (meta_[b].ref < 0) return false;
    if (meta_[b].ref > 0) ++used;
    if (meta_[b].registered) {
      ++registered;
      auto it = map_.find(meta_[b].hash);
      if (it == map_.end() || it->second != b) return false;
    }
  }
  if (used != used_ || registered != static_cast<int>(map_.size())) return false;
  for (int32_t b : free_) {
    if (b < 0 || b >= n || where[b] || meta_[b].ref != 0 || meta_[b].registered) return false;
    where[b] = 1;
  }
  int count = 0;
  int32_t prev = -1;
  for (int32_t b = lru_head_; b >= 0; prev = b, b = meta_[b].lru_next) {
    if (b >= n || where[b] || meta_[b].ref != 0 || !meta_[b].registered) return false;
    if (meta_[b].lru_prev != prev || ++count > n) return false;
    where[b] = 2;
  }
  if (prev != lru_tail_ || count != lru_size_) return false;
  // Every unreferenced block is either free or cached, never lost.
  return used_ + lru_size_ + static_cast<int>(free_.size()) == n;
}

}  // namespace llm
