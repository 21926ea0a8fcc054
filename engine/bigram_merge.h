// The merge loop the two BPE tokenizers share (tokenizer_spm.cpp: SentencePiece scores,
// tokenizer_bpe.cpp: byte-level merge ranks), as llama.cpp runs it: a text's UTF-8
// characters as a linked list of symbols; adjacent pairs that may merge wait in a
// priority queue, best key first and leftmost on ties; merging a pair queues its new
// neighbours. Internal to the tokenizers.
#pragma once
#include <algorithm>
#include <queue>
#include <string_view>
#include <vector>

#include "engine/unicode.h"

namespace llm::detail {

struct MergeSymbol {
  int prev, next;  // neighbours in the linked list, -1 at the ends
  size_t off, n;   // bytes text[off, off + n); n == 0 once merged into its left neighbour
};

// One symbol per UTF-8 character of text (a truncated last sequence is one symbol).
inline void utf8_symbols(std::string_view text, std::vector<MergeSymbol>& sym) {
  sym.clear();
  for (size_t off = 0; off < text.size();) {
    const size_t n = std::min(utf8_seq_len(static_cast<uint8_t>(text[off])), text.size() - off);
    const int idx = static_cast<int>(sym.size());
    sym.push_back({idx - 1, off + n == text.size() ? -1 : idx + 1, off, n});
    off += n;
  }
}

// Merges until no pair is left. key_of(l, r, key) says whether symbols l and r may merge
// and with which key; better(a, b) whether key a goes before key b.
template <class Key, class KeyOf, class Better>
void merge_pairs(std::vector<MergeSymbol>& sym, KeyOf key_of, Better better) {
  struct Pair {
    int left, right;
    Key key;
    size_t size;  // bytes of the pair when queued: a different size means it is stale
  };
  const auto after = [&](const Pair& a, const Pair& b) {  // a leaves the queue after b
    return better(b.key, a.key) || (a.key == b.key && a.left > b.left);
  };
  std::priority_queue<Pair, std::vector<Pair>, decltype(after)> queue(after);
  const auto try_add = [&](int l, int r) {
    Key key;
    if (l >= 0 && r >= 0 && key_of(l, r, key)) queue.push({l, r, key, sym[l].n + sym[r].n});
  };
  for (int i = 1; i < static_cast<int>(sym.size()); ++i) try_add(i - 1, i);
  while (!queue.empty()) {
    const Pair b = queue.top();
    queue.pop();
    MergeSymbol& l = sym[b.left];
    MergeSymbol& r = sym[b.right];
    if (l.n == 0 || r.n == 0 || l.n + r.n != b.size) continue;
    l.n += r.n;
    r.n = 0;
    l.next = r.next;
    if (r.next >= 0) sym[r.next].prev = b.left;
    try_add(l.prev, b.left);
    try_add(b.left, l.next);
  }
}

}  // namespace llm::detail
