// Byte-level BPE, as llama.cpp's llm_tokenizer_bpe: split the text with the family's
// pre-tokenizer regexes, spell each piece in the GPT-2 byte alphabet, then merge
// adjacent symbols by merge rank (lowest first, leftmost on ties) with a priority
// queue per piece.
#include <queue>

#include "engine/tokenizer.h"

namespace llm {
namespace {

struct Symbol {
  int prev, next;
  size_t off, n;  // bytes of the encoded word; n == 0 once merged into its left neighbour
};

struct Bigram {
  int left, right;
  int32_t rank;
  size_t size;  // bytes of the pair when queued: a different size means it is stale
};

struct BigramOrder {  // priority_queue top: lowest rank, then leftmost
  bool operator()(const Bigram& a, const Bigram& b) const {
    return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
  }
};

}  // namespace

void Tokenizer::encode_bpe(std::string_view text, std::vector<int32_t>& out) const {
  // llama.cpp decodes leniently (each invalid byte becomes U+FFFD) before splitting.
  const CodepointText cps(utf8_to_codepoints(text));
  const std::vector<size_t> pieces = regex_split(cps, regexes_);

  std::string word, utf8, key;
  std::vector<Symbol> sym;
  std::priority_queue<Bigram, std::vector<Bigram>, BigramOrder> queue;  // empty between words
  size_t start = 0;
  for (size_t len : pieces) {
    utf8.clear();
    for (size_t i = start; i < start + len; ++i) utf8_append(utf8, cps.cps[i]);
    start += len;
    word.clear();
    for (char c : utf8) word += byte_text_[static_cast<uint8_t>(c)];

    if (ignore_merges_) {
      if (int32_t id = token_id(word); id >= 0) {
        out.push_back(id);
        continue;
      }
    }

    sym.clear();
    for (size_t off = 0; off < word.size();) {
      size_t n = std::min(utf8_seq_len(static_cast<uint8_t>(word[off])), word.size() - off);
      int idx = static_cast<int>(sym.size());
      sym.push_back({idx - 1, off + n == word.size() ? -1 : idx + 1, off, n});
      off += n;
    }

    auto try_add = [&](int l, int r) {
      if (l < 0 || r < 0) return;
      key.assign(word, sym[l].off, sym[l].n);
      key.push_back(' ');
      key.append(word, sym[r].off, sym[r].n);
      auto it = merge_rank_.find(key);
      if (it == merge_rank_.end()) return;
      queue.push({l, r, it->second, sym[l].n + sym[r].n});
    };
    for (int i = 1; i < static_cast<int>(sym.size()); ++i) try_add(i - 1, i);

    while (!queue.empty()) {
      Bigram b = queue.top();
      queue.pop();
      Symbol& l = sym[b.left];
      Symbol& r = sym[b.right];
      if (l.n == 0 || r.n == 0 || l.n + r.n != b.size) continue;
      l.n += r.n;
      r.n = 0;
      l.next = r.next;
      if (r.next >= 0) sym[r.next].prev = b.left;
      try_add(l.prev, b.left);
      try_add(b.left, l.next);
    }

    for (int i = 0; i != -1 && !sym.empty(); i = sym[i].next) {
      std::string_view s = std::string_view(word).substr(sym[i].off, sym[i].n);
      if (int32_t id = token_id(s); id >= 0) {
        out.push_back(id);
        continue;
      }
      // Not in the vocabulary: llama.cpp looks up each byte of the encoded text alone
      // (and drops what it cannot find).
      for (char c : s)
        if (int32_t id = token_id(std::string_view(&c, 1)); id >= 0) out.push_back(id);
    }
  }
}

}  // namespace llm
