// BlockPool: paged KV bookkeeping. Besides a few hand-worked cases, a property test runs
// thousands of random operations against a simulated K/V store (one token id per slot)
// and recounts references from the live tables itself, so a wrong ref count, a block
// written while shared, a stale prefix hit or a leaked block all show up as a mismatch.
#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>

#include "engine/block_pool.h"

using namespace llm;

namespace {

std::vector<int32_t> iota_tokens(int n, int32_t first) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) t[i] = first + i;
  return t;
}

// Allocates a table for tokens with no prefix reuse and marks them all computed.
BlockTable computed_table(BlockPool& pool, const std::vector<int32_t>& toks) {
  BlockTable t;
  std::vector<BlockCopy> copies;
  const int n = static_cast<int>(toks.size());
  REQUIRE(pool.can_allocate(PrefixHit{}, 0, n));
  pool.allocate(t, PrefixHit{}, 0, n, copies);
  CHECK(copies.empty());
  pool.cache_full_blocks(t, toks.data(), n);
  return t;
}

}  // namespace

TEST_CASE("block_pool: allocate, append and free return every block") {
  BlockPool pool(8, 4);
  CHECK(pool.num_available() == 8);
  BlockTable t;
  std::vector<BlockCopy> copies;
  REQUIRE(pool.can_allocate(PrefixHit{}, 0, 5));  // 5 tokens -> 2 blocks
  pool.allocate(t, PrefixHit{}, 0, 5, copies);
  CHECK(t.blocks.size() == 2);
  CHECK(pool.usage().used == 2);
  // Growing within the last block takes nothing; crossing into a new one takes one.
  REQUIRE(pool.can_append(t, 5, 8));
  pool.append(t, 5, 8, copies);
  CHECK(t.blocks.size() == 2);
  pool.append(t, 8, 9, copies);
  CHECK(t.blocks.size() == 3);
  // 8 blocks hold 32 tokens: 33 do not fit.
  CHECK(pool.can_append(t, 9, 32));
  CHECK_FALSE(pool.can_append(t, 9, 33));
  CHECK(copies.empty());
  pool.free(t);
  CHECK(t.blocks.empty());
  const KvUsage u = pool.usage();
  CHECK(u.used == 0);
  CHECK(u.free == 8);  // nothing was registered: caching needs cache_full_blocks
  CHECK(pool.check_consistency());
}

TEST_CASE("block_pool: prefix cache hits the equal leading full blocks, chained") {
  const int bs = 4;
  BlockPool pool(16, bs);
  const std::vector<int32_t> a = iota_tokens(14, 100);  // 3 full blocks + 2 tokens
  BlockTable ta = computed_table(pool, a);
  CHECK(ta.hashes.size() == 3);
  const std::vector<int32_t> blocks_a = ta.blocks;

  // Still referenced: a hit shares the blocks.
  PrefixHit h = pool.match_prefix(a.data(), 14);
  REQUIRE(h.n_blocks() == 3);
  CHECK(h.blocks == std::vector<int32_t>(blocks_a.begin(), blocks_a.begin() + 3));

  pool.free(ta);
  KvUsage u = pool.usage();
  CHECK(u.used == 0);
  CHECK(u.cached == 3);  // the full blocks stay findable
  CHECK(u.free == 13);

  // Same first block, different second: one block hit.
  std::vector<int32_t> b = a;
  b[5] = 7;
  CHECK(pool.match_prefix(b.data(), 14).n_blocks() == 1);
  // Different first block, same later blocks: the chain breaks at once.
  std::vector<int32_t> c = a;
  c[0] = 7;
  CHECK(pool.match_prefix(c.data(), 14).n_blocks() == 0);
  // Only full blocks of the query count.
  CHECK(pool.match_prefix(a.data(), 11).n_blocks() == 2);
  CHECK(pool.match_prefix(a.data(), 12).n_blocks() == 3);

  // Adopting the hit: the table starts with the cached blocks, they leave the LRU list.
  h = pool.match_prefix(a.data(), 14);
  BlockTable t2;
  std::vector<BlockCopy> copies;
  REQUIRE(pool.can_allocate(h, 12, 14));
  pool.allocate(t2, h, 12, 14, copies);
  CHECK(copies.empty());
  CHECK(std::equal(h.blocks.begin(), h.blocks.end(), t2.blocks.begin()));
  CHECK(t2.blocks.size() == 4);
  u = pool.usage();
  CHECK(u.used == 4);
  CHECK(u.cached == 0);
  pool.free(t2);
  CHECK(pool.check_consistency());
}

TEST_CASE("block_pool: LRU evicts the oldest unreferenced cached blocks, tails first") {
  const int bs = 2;
  BlockPool pool(6, bs);
  const std::vector<int32_t> a = iota_tokens(6, 0);   // 3 full blocks
  const std::vector<int32_t> b = iota_tokens(4, 50);  // 2 full blocks
  BlockTable ta = computed_table(pool, a);
  BlockTable tb = computed_table(pool, b);
  pool.free(ta);  // a's blocks become cached first (oldest), its tail block before its head
  pool.free(tb);
  CHECK(pool.usage().cached == 5);
  CHECK(pool.usage().free == 1);

  // 2 new blocks: the free one, then the oldest cached: a's last block.
  BlockTable t;
  std::vector<BlockCopy> copies;
  pool.allocate(t, PrefixHit{}, 0, 4, copies);
  CHECK(pool.match_prefix(a.data(), 6).n_blocks() == 2);  // head of a survives
  CHECK(pool.match_prefix(b.data(), 4).n_blocks() == 2);
  // 2 more: a's remaining blocks (its second, then its first) go next.
  BlockTable t3;
  pool.allocate(t3, PrefixHit{}, 0, 3, copies);
  CHECK(pool.match_prefix(a.data(), 6).n_blocks() == 0);
  CHECK(pool.match_prefix(b.data(), 4).n_blocks() == 2);
  // A hit refreshes nothing by itself, but adopting protects the blocks from eviction.
  PrefixHit hb = pool.match_prefix(b.data(), 4);
  BlockTable t4;
  REQUIRE(pool.can_allocate(hb, 3, 4));
  pool.allocate(t4, hb, 3, 4, copies);  // whole hit: the last token is rewritten in place
  CHECK(copies.empty());
  CHECK_FALSE(pool.is_registered(t4.blocks[1]));  // taken over to be recomputed
  CHECK(pool.is_registered(t4.blocks[0]));
  CHECK(pool.num_available() == 0);
  CHECK_FALSE(pool.can_append(t, 4, 5));
  pool.free(t);
  pool.free(t3);
  pool.free(t4);
  CHECK(pool.usage().used == 0);
  CHECK(pool.check_consistency());
}

TEST_CASE("block_pool: fork shares every block and the next write copies the shared one") {
  const int bs = 4;
  BlockPool pool(8, bs);
  const std::vector<int32_t> toks = iota_tokens(6, 1);  // blocks: full + 2 of 4
  BlockTable parent = computed_table(pool, toks);
  BlockTable child = pool.fork(parent);
  CHECK(child.blocks == parent.blocks);
  CHECK(pool.ref_count(parent.blocks[0]) == 2);
  CHECK(pool.ref_count(parent.blocks[1]) == 2);
  CHECK(pool.usage().used == 2);

  // The child writes position 6 (in the shared partial block): it gets a copy.
  std::vector<BlockCopy> copies;
  REQUIRE(pool.can_append(child, 6, 7));
  pool.append(child, 6, 7, copies);
  REQUIRE(copies.size() == 1);
  CHECK(copies[0].src == parent.blocks[1]);
  CHECK(copies[0].dst == child.blocks[1]);
  CHECK(child.blocks[1] != parent.blocks[1]);
  CHECK(child.blocks[0] == parent.blocks[0]);  // the full block stays shared
  CHECK(pool.ref_count(parent.blocks[1]) == 1);
  CHECK(pool.ref_count(child.blocks[1]) == 1);
  CHECK(pool.ref_count(parent.blocks[0]) == 2);

  // The parent is now the only holder of its partial block: it writes in place.
  copies.clear();
  pool.append(parent, 6, 7, copies);
  CHECK(copies.empty());

  // A check that needs a copy counts the copy's block.
  BlockTable child2 = pool.fork(child);
  CHECK(pool.num_available() == 5);  // 8 - {shared full block, parent's, child's partial}
  BlockTable filler;
  pool.allocate(filler, PrefixHit{}, 0, 16, copies);  // 4 blocks: 1 left
  copies.clear();
  // Writing 7 touches the block shared with child: 1 copy. Up to 12 adds a block: 2.
  CHECK(pool.can_append(child2, 7, 8));
  CHECK_FALSE(pool.can_append(child2, 7, 12));
  pool.append(child2, 7, 8, copies);
  CHECK(copies.size() == 1);
  CHECK(pool.num_available() == 0);
  pool.free(filler);
  pool.free(parent);
  pool.free(child);
  pool.free(child2);
  CHECK(pool.usage().used == 0);
  CHECK(pool.check_consistency());
}

TEST_CASE("block_pool: a whole-prompt hit recomputes its last token in a private block") {
  const int bs = 4;
  BlockPool pool(8, bs);
  const std::vector<int32_t> toks = iota_tokens(8, 3);  // exactly 2 full blocks
  BlockTable a = computed_table(pool, toks);
  // Another request with the same 8 tokens while `a` still holds them: its last token
  // (position 7, inside a's second block) must be recomputed for logits, into a copy.
  PrefixHit h = pool.match_prefix(toks.data(), 8);
  REQUIRE(h.n_blocks() == 2);
  BlockTable b;
  std::vector<BlockCopy> copies;
  REQUIRE(pool.can_allocate(h, 7, 8));
  pool.allocate(b, h, 7, 8, copies);
  REQUIRE(copies.size() == 1);
  CHECK(copies[0] == BlockCopy{a.blocks[1], b.blocks[1]});
  CHECK(b.blocks[0] == a.blocks[0]);
  CHECK(b.hashes.size() == 1);  // the rewritten block's hash is dropped until recomputed
  pool.cache_full_blocks(b, toks.data(), 8);
  CHECK(b.hashes.size() == 2);
  CHECK_FALSE(pool.is_registered(b.blocks[1]));  // a duplicate of a's registered block
  pool.free(a);
  pool.free(b);
  // Alone, the hit block is taken over and rewritten in place: no copy.
  h = pool.match_prefix(toks.data(), 8);
  REQUIRE(h.n_blocks() == 2);
  copies.clear();
  pool.allocate(b, h, 7, 8, copies);
  CHECK(copies.empty());
  CHECK(b.blocks == h.blocks);
  CHECK(pool.match_prefix(toks.data(), 8).n_blocks() == 1);
  pool.cache_full_blocks(b, toks.data(), 8);  // registered again once recomputed
  CHECK(pool.match_prefix(toks.data(), 8).n_blocks() == 2);
  pool.free(b);
  CHECK(pool.check_consistency());
}

TEST_CASE("block_pool: without prefix caching nothing is registered or found") {
  BlockPool pool(4, 2, /*enable_prefix_caching=*/false);
  const std::vector<int32_t> toks = iota_tokens(6, 0);
  BlockTable t = computed_table(pool, toks);
  CHECK(pool.match_prefix(toks.data(), 6).n_blocks() == 0);
  pool.free(t);
  CHECK(pool.usage().free == 4);
  CHECK(pool.usage().cached == 0);
}

namespace {

// A table under test with the tokens it stands for and how many have K/V.
struct Live {
  BlockTable t;
  std::vector<int32_t> tokens;
  int computed = 0;
};

struct PoolModel {
  BlockPool& pool;
  int bs;
  std::vector<int32_t> kv;  // (num_blocks * bs) simulated K/V: the token written at each slot
  std::vector<Live> live;
  int64_t n_copies = 0, n_hit_blocks = 0, n_refused = 0, n_evicting_allocs = 0;

  // References recounted from the live tables, independently of the pool.
  std::map<int32_t, int> refs() const {
    std::map<int32_t, int> r;
    for (const Live& l : live)
      for (int32_t b : l.t.blocks) ++r[b];
    return r;
  }

  // Blocks the operation needs, from the recounted references; available = unreferenced.
  int expected_need(const BlockTable& t, const PrefixHit* hit, int from, int total) const {
    std::map<int32_t, int> r = refs();
    const std::vector<int32_t>& blocks = hit ? hit->blocks : t.blocks;
    int need = 0;
    if (hit)
      for (int32_t b : hit->blocks) need += r[b] == 0 ? 1 : 0;
    const int have = static_cast<int>(blocks.size());
    const int want = (total + bs - 1) / bs;
    need += std::max(0, want - have);
    for (int i = from / bs; i < std::min(have, want); ++i)
      need += r[blocks[i]] + (hit ? 1 : 0) > 1 ? 1 : 0;
    return need;
  }
  int expected_available() const { return pool.num_blocks() - static_cast<int>(refs().size()); }

  // Runs copies, then "computes" tokens [from, to) of l: writes them to their slots,
  // which must be private to l and not registered.
  void compute(Live& l, int from, int to, const std::vector<BlockCopy>& copies) {
    for (const BlockCopy& c : copies) {
      std::copy_n(kv.begin() + c.src * bs, bs, kv.begin() + c.dst * bs);
      ++n_copies;
    }
    std::map<int32_t, int> r = refs();
    for (int p = from; p < to; ++p) {
      const int32_t b = l.t.blocks[static_cast<size_t>(p / bs)];
      REQUIRE(r[b] == 1);
      REQUIRE_FALSE(pool.is_registered(b));
      kv[static_cast<size_t>(b) * bs + p % bs] = l.tokens[static_cast<size_t>(p)];
    }
    l.computed = to;
    pool.cache_full_blocks(l.t, l.tokens.data(), to);
  }

  void check_all() {
    REQUIRE(pool.check_consistency());
    std::map<int32_t, int> r = refs();
    const int n_used = static_cast<int>(r.size());
    for (int b = 0; b < pool.num_blocks(); ++b) REQUIRE(pool.ref_count(b) == r[b]);
    const KvUsage u = pool.usage();
    REQUIRE(u.used == n_used);
    REQUIRE(u.used + u.cached + u.free == u.total);
    for (const Live& l : live) {
      std::set<int32_t> distinct(l.t.blocks.begin(), l.t.blocks.end());
      REQUIRE(distinct.size() == l.t.blocks.size());
      REQUIRE(l.t.blocks.size() * bs >= static_cast<size_t>(l.computed));
      for (int p = 0; p < l.computed; ++p)
        REQUIRE(kv[static_cast<size_t>(l.t.blocks[p / bs]) * bs + p % bs] == l.tokens[p]);
    }
  }
};

}  // namespace

TEST_CASE("block_pool: random operations keep ref counts, K/V and checks exact") {
  int64_t copies = 0, hits = 0, refused = 0;
  for (uint32_t seed = 1; seed <= 40; ++seed) {
    std::mt19937 rng(seed);
    auto uni = [&rng](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
    const int bs = std::vector<int>{1, 2, 3, 4, 16}[static_cast<size_t>(uni(0, 4))];
    BlockPool pool(uni(3, 24), bs);
    PoolModel m{
        pool, bs, std::vector<int32_t>(static_cast<size_t>(pool.num_blocks()) * bs, -1), {}};
    // A few shared "system prompts" make prefix hits common; 4 token values make equal
    // blocks (and so duplicate registrations) happen too.
    std::vector<std::vector<int32_t>> bases(3);
    for (auto& b : bases)
      for (int i = 0; i < uni(0, 3 * bs); ++i) b.push_back(uni(0, 3));

    for (int op = 0; op < 600; ++op) {
      const int kind = m.live.empty() ? 0 : uni(0, 9);
      if (kind <= 2) {  // a new request, maybe sharing a prefix
        Live l;
        l.tokens = bases[static_cast<size_t>(uni(0, 2))];
        for (int i = uni(1, 2 * bs + 1); i > 0; --i) l.tokens.push_back(uni(0, 3));
        const int n = static_cast<int>(l.tokens.size());
        PrefixHit hit = pool.match_prefix(l.tokens.data(), n);
        // Hit blocks hold exactly the tokens they were found for.
        for (int i = 0; i < hit.n_blocks() * bs; ++i)
          REQUIRE(m.kv[static_cast<size_t>(hit.blocks[i / bs]) * bs + i % bs] == l.tokens[i]);
        hits += hit.n_blocks();
        const int from = std::min(hit.n_blocks() * bs, n - 1);
        const int to = uni(from + 1, n);
        const bool ok = pool.can_allocate(hit, from, to);
        REQUIRE(ok == (m.expected_need(l.t, &hit, from, to) <= m.expected_available()));
        if (!ok) {
          ++refused;
          continue;
        }
        std::vector<BlockCopy> cs;
        pool.allocate(l.t, hit, from, to, cs);
        m.live.push_back(std::move(l));
        m.compute(m.live.back(), from, to, cs);
      } else if (kind <= 6) {  // a step of an existing one: prefill chunk or new tokens
        Live& l = m.live[static_cast<size_t>(uni(0, static_cast<int>(m.live.size()) - 1))];
        if (l.computed == static_cast<int>(l.tokens.size()))
          for (int i = uni(1, 3); i > 0; --i) l.tokens.push_back(uni(0, 3));
        const int from = l.computed;
        const int to = uni(from + 1, static_cast<int>(l.tokens.size()));
        const KvUsage before = pool.usage();
        const bool ok = pool.can_append(l.t, from, to);
        REQUIRE(ok == (m.expected_need(l.t, nullptr, from, to) <= m.expected_available()));
        if (!ok) {
          ++refused;
          const KvUsage after = pool.usage();
          REQUIRE(after.used == before.used);
          REQUIRE(after.cached == before.cached);
          continue;
        }
        std::vector<BlockCopy> cs;
        pool.append(l.t, from, to, cs);
        m.compute(l, from, to, cs);
      } else if (kind == 7) {  // fork (parallel sampling)
        const Live& src = m.live[static_cast<size_t>(uni(0, static_cast<int>(m.live.size()) - 1))];
        Live c;
        c.t = pool.fork(src.t);
        c.tokens = std::vector<int32_t>(src.tokens.begin(), src.tokens.begin() + src.computed);
        c.computed = src.computed;
        if (c.computed > 0)
          m.live.push_back(std::move(c));
        else
          pool.free(c.t);
      } else {  // finish or preempt one
        const size_t i = static_cast<size_t>(uni(0, static_cast<int>(m.live.size()) - 1));
        pool.free(m.live[i].t);
        m.live.erase(m.live.begin() + static_cast<std::ptrdiff_t>(i));
      }
      m.check_all();
    }
    copies += m.n_copies;
    for (Live& l : m.live) pool.free(l.t);
    m.live.clear();
    m.check_all();
    CHECK(pool.usage().used == 0);
    for (int b = 0; b < pool.num_blocks(); ++b) CHECK(pool.ref_count(b) == 0);
  }
  // The run exercised what it claims to.
  CHECK(copies > 50);
  CHECK(hits > 500);
  CHECK(refused > 50);
}
