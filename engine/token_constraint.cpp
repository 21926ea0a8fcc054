#include "engine/token_constraint.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <nlohmann/json.hpp>

#include "engine/error.h"
#include "engine/grammar_matcher.h"
#include "engine/json_schema.h"
#include "engine/tokenizer.h"

namespace llm {

// ---------------------------------------------------------------- TokenIndex

namespace {

// valid[k]: bytes [k, end) are valid UTF-8, the last character possibly cut short.
// Strict as the grammar's lowering: no overlong forms, surrogates or code points above
// U+10FFFF.
std::vector<uint8_t> valid_utf8_from(const std::string& p) {
  size_t n = p.size();
  std::vector<uint8_t> valid(n + 1, 1);
  for (size_t k = n; k-- > 0;) {
    uint8_t b = static_cast<uint8_t>(p[k]);
    if (b < 0x80) {
      valid[k] = valid[k + 1];
      continue;
    }
    size_t len = b >= 0xC2 && b <= 0xDF   ? 2
                 : b >= 0xE0 && b <= 0xEF ? 3
                 : b >= 0xF0 && b <= 0xF4 ? 4
                                          : 0;
    bool ok = len > 0;
    for (size_t i = 1; ok && i < len && k + i < n; ++i) {
      uint8_t c = static_cast<uint8_t>(p[k + i]);
      uint8_t lo = 0x80, hi = 0xBF;
      if (i == 1) {
        if (b == 0xE0) lo = 0xA0;
        if (b == 0xED) hi = 0x9F;
        if (b == 0xF0) lo = 0x90;
        if (b == 0xF4) hi = 0x8F;
      }
      ok = c >= lo && c <= hi;
    }
    valid[k] = ok && (k + len >= n || valid[k + len]);
  }
  return valid;
}

}  // namespace

TokenIndex::TokenIndex(const Tokenizer& tok) : n_vocab_(tok.n_vocab()) {
  piece_.resize(static_cast<size_t>(n_vocab_));
  eog_mask_.assign(static_cast<size_t>(n_vocab_), 0);
  eog_ = tok.eog_ids();
  for (int32_t id : eog_) eog_mask_[static_cast<size_t>(id)] = 1;

  constexpr uint32_t kNever = kAttrControl | kAttrUserDefined | kAttrUnknown | kAttrUnused;
  std::vector<int32_t> ids;
  for (int32_t id = 0; id < n_vocab_; ++id) {
    if (eog_mask_[static_cast<size_t>(id)] || (tok.attr(id) & kNever)) continue;
    std::string p = tok.token_to_piece(id);
    if (p.empty() || p.size() > 0x7FFF) continue;
    piece_[static_cast<size_t>(id)] = std::move(p);
    ids.push_back(id);
  }
  // Sorting the pieces bytewise (char_traits<char> compares as unsigned char) lists them
  // in the trie's depth-first order; each new piece shares its common prefix with the last.
  std::sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) {
    const std::string &pa = piece_[static_cast<size_t>(a)], &pb = piece_[static_cast<size_t>(b)];
    return pa != pb ? pa < pb : a < b;
  });
  nodes_.push_back({0, 0, 0, 1, 0, 0});
  std::vector<uint32_t> parent{0};  // (n_nodes) for the subtree byte sets below
  std::vector<uint32_t> path{0};    // node index of each prefix length of the last piece
  const std::string* prev = nullptr;
  for (int32_t id : ids) {
    const std::string& p = piece_[static_cast<size_t>(id)];
    size_t common = 0;
    if (prev) {
      size_t n = std::min(prev->size(), p.size());
      while (common < n && (*prev)[common] == p[common]) ++common;
    }
    // Close the subtrees of the last piece below the shared prefix.
    while (path.size() > common + 1) {
      nodes_[path.back()].end = static_cast<uint32_t>(nodes_.size());
      path.pop_back();
    }
    for (size_t d = common; d < p.size(); ++d) {
      parent.push_back(path.back());
      path.push_back(static_cast<uint32_t>(nodes_.size()));
      nodes_.push_back({0, static_cast<uint32_t>(tokens_.size()), static_cast<uint16_t>(d + 1), 1,
                        static_cast<uint8_t>(p[d]), 0});
    }
    // A node keeps its utf8 flag only if this token, too, is valid UTF-8 from there on.
    std::vector<uint8_t> valid = valid_utf8_from(p);
    for (size_t d = 1; d <= p.size(); ++d) {
      if (!valid[d - 1]) nodes_[path[d]].utf8 = 0;
    }
    tokens_.push_back(id);  // belongs to the last node created (equal pieces are adjacent)
    max_depth_ = std::max(max_depth_, p.size());
    prev = &p;
  }
  while (!path.empty()) {
    nodes_[path.back()].end = static_cast<uint32_t>(nodes_.size());
    path.pop_back();
  }
  nodes_.push_back({0, static_cast<uint32_t>(tokens_.size()), 0, 0, 0, 0});  // sentinel

  // Subtree categories, children before parents (reverse preorder).
  for (size_t i = nodes_.size() - 2; i >= 1; --i) {
    nodes_[i].cats |= static_cast<uint8_t>(1 << byte_category(nodes_[i].byte));
    nodes_[parent[i]].cats |= nodes_[i].cats;
  }
}

// ---------------------------------------------------------------- the constraint

namespace {

using State = GrammarMatcher::State;

class GrammarConstraint final : public TokenConstraint {
 public:
  GrammarConstraint(std::shared_ptr<const TokenIndex> index, std::shared_ptr<const ByteProgram> p)
      : index_(std::move(index)), m_(std::move(p)) {
    words_ = (static_cast<size_t>(index_->n_vocab()) + 63) / 64;
  }

  void mask(float* logits) override {
    const int n = index_->n_vocab();
    if (finished_ || dead_) {  // only end-of-generation remains
      for (int i = 0; i < n; ++i) {
        if (!index_->is_eog(i)) logits[i] = -INFINITY;
      }
      return;
    }
    const std::vector<uint64_t>& bits = allowed(m_.state());
    for (size_t w = 0; w < words_; ++w) {
      uint64_t keep = bits[w];
      if (keep == ~0ull) continue;
      int base = static_cast<int>(w * 64);
      int top = std::min(64, n - base);
      for (int b = 0; b < top; ++b) {
        if (!((keep >> b) & 1)) logits[base + b] = -INFINITY;
      }
    }
  }

  void accept(int32_t token) override {
    assert(token >= 0 && token < index_->n_vocab());
    if (finished_ || dead_) return;
    if (index_->is_eog(token)) {
      assert(complete() && "end of generation before the grammar is complete");
      finished_ = true;
      return;
    }
    const std::string& piece = index_->piece(token);
    bool ok = !piece.empty() && m_.advance(piece);
    assert(ok && "accept() of a token that mask() did not allow");
    // Without asserts: stop matching and allow only end-of-generation from now on.
    if (!ok) dead_ = true;
    // Bound the cache between tokens (a walk only ever adds states).
    if (m_.memory_bytes() > kMaxMatcherBytes) {
      m_.compact();
      cache_.clear();
    }
  }

  bool complete() const override { return finished_ || m_.accepting(m_.state()); }

  std::unique_ptr<TokenConstraint> clone() const override {
    return std::make_unique<GrammarConstraint>(*this);
  }

 private:
  static constexpr size_t kMaxMatcherBytes = 64u << 20;
  static constexpr size_t kCacheEntries = 16;

  struct CacheEntry {
    State state;
    std::vector<uint64_t> bits;  // (words_) allowed tokens
  };

  // The allowed-token bitset of a matcher state: cached, since the state at a token
  // boundary often repeats (inside a string it is the same after every token).
  const std::vector<uint64_t>& allowed(State s) {
    for (const CacheEntry& e : cache_) {
      if (e.state == s) return e.bits;
    }
    CacheEntry* e;
    if (cache_.size() < kCacheEntries) {
      e = &cache_.emplace_back();
    } else {
      e = &cache_[next_victim_];
      next_victim_ = (next_victim_ + 1) % kCacheEntries;
    }
    e->state = s;
    e->bits.assign(words_, 0);
    walk(s, e->bits.data());
    return e->bits;
  }

  // One depth-first pass over the trie, carrying the matcher state of every prefix;
  // a prefix the grammar refuses skips its whole subtree.
  void walk(State s, uint64_t* bits) {
    const std::vector<TokenIndex::Node>& nodes = index_->nodes();
    const int32_t* toks = index_->tokens().data();
    depth_state_.resize(index_->max_depth() + 1);
    State* st = depth_state_.data();  // (max_depth + 1) state after each prefix length
    st[0] = s;
    const size_t n_nodes = nodes.size() - 1;  // without the sentinel
    for (size_t i = 1; i < n_nodes;) {
      const TokenIndex::Node& nd = nodes[i];
      State p = st[nd.depth - 1];
      uint8_t loop = m_.loop_categories(p);
      uint8_t rest = nd.cats & ~loop;      // categories that may leave p
      constexpr uint8_t kNonAscii = 0xC0;  // categories 6 and 7
      if (loop && (!rest || (!(rest & ~kNonAscii) && nd.utf8 && m_.utf8_loop(p)))) {
        // Every byte below keeps the state at p: every token in the subtree is allowed.
        for (uint32_t k = nd.tok_begin; k < nodes[nd.end].tok_begin; ++k) {
          uint32_t id = static_cast<uint32_t>(toks[k]);
          bits[id >> 6] |= 1ull << (id & 63);
        }
        i = nd.end;
        continue;
      }
      State t = m_.step(p, nd.byte);
      if (t == GrammarMatcher::kDead) {
        i = nd.end;
        continue;
      }
      st[nd.depth] = t;
      for (uint32_t k = nd.tok_begin; k < nodes[i + 1].tok_begin; ++k) {
        uint32_t id = static_cast<uint32_t>(toks[k]);
        bits[id >> 6] |= 1ull << (id & 63);
      }
      ++i;
    }
    if (m_.accepting(s)) {
      for (int32_t id : index_->eog_ids()) {
        bits[static_cast<uint32_t>(id) >> 6] |= 1ull << (static_cast<uint32_t>(id) & 63);
      }
    }
  }

  std::shared_ptr<const TokenIndex> index_;
  GrammarMatcher m_;
  size_t words_ = 0;
  bool finished_ = false;  // an end-of-generation token was accepted
  bool dead_ = false;      // a disallowed token was accepted (a caller bug)
  std::vector<CacheEntry> cache_;
  size_t next_victim_ = 0;
  std::vector<State> depth_state_;
};

}  // namespace

std::unique_ptr<TokenConstraint> make_grammar_constraint(std::shared_ptr<const TokenIndex> index,
                                                         std::shared_ptr<const ByteProgram> prog) {
  return std::make_unique<GrammarConstraint>(std::move(index), std::move(prog));
}

std::unique_ptr<TokenConstraint> make_json_constraint(std::shared_ptr<const TokenIndex> index,
                                                      const nlohmann::ordered_json* schema,
                                                      const JsonSchemaOptions& opt) {
  Grammar g = schema ? json_schema_to_grammar(*schema, opt) : json_object_grammar();
  return make_grammar_constraint(std::move(index), ByteProgram::compile(g));
}

std::unique_ptr<TokenConstraint> make_json_constraint(std::shared_ptr<const TokenIndex> index,
                                                      const nlohmann::ordered_json* schema) {
  return make_json_constraint(std::move(index), schema, JsonSchemaOptions{});
}

std::unique_ptr<TokenConstraint> make_json_constraint(const Tokenizer& tok,
                                                      const nlohmann::ordered_json* schema) {
  return make_json_constraint(TokenIndex::build(tok), schema, JsonSchemaOptions{});
}

}  // namespace llm
