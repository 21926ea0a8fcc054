// SentencePiece-style BPE over scores, as llama.cpp's llm_tokenizer_spm: start from
// the UTF-8 characters of the text (spaces already ▁) and repeatedly merge the adjacent
// pair whose concatenation is the vocab entry with the highest score (leftmost on
// ties); what never becomes a vocab entry falls back to <0xNN> byte tokens.
#include <queue>

#include "engine/tokenizer.h"

namespace llm {
namespace {

struct Symbol {
  int prev, next;  // neighbours in the linked list, -1 at the ends
  size_t off, n;   // bytes text[off, off + n); n == 0 once merged into its left neighbour
};

struct Bigram {
  int left, right;
  float score;
  size_t size;  // bytes of the pair when queued: a different size means it is stale
};

struct BigramOrder {  // priority_queue top: highest score, then leftmost
  bool operator()(const Bigram& a, const Bigram& b) const {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  }
};

}  // namespace

void Tokenizer::encode_spm(std::string_view text, std::vector<int32_t>& out) const {
  std::vector<Symbol> sym;  // (n_chars)
  sym.reserve(text.size());
  for (size_t off = 0; off < text.size();) {
    size_t n = std::min(utf8_seq_len(static_cast<uint8_t>(text[off])), text.size() - off);
    int idx = static_cast<int>(sym.size());
    sym.push_back({idx - 1, off + n == text.size() ? -1 : idx + 1, off, n});
    off += n;
  }
  if (sym.empty()) return;

  std::priority_queue<Bigram, std::vector<Bigram>, BigramOrder> queue;
  auto try_add = [&](int l, int r) {
    if (l < 0 || r < 0) return;
    std::string_view pair = text.substr(sym[l].off, sym[l].n + sym[r].n);
    auto it = index_.find(pair);
    if (it == index_.end()) return;
    queue.push({l, r, score_[it->second], pair.size()});
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

  // Every merged symbol is a vocab entry by construction; single characters that are
  // not are spelled in bytes.
  for (int i = 0; i != -1; i = sym[i].next) {
    std::string_view s = text.substr(sym[i].off, sym[i].n);
    if (int32_t id = token_id(s); id >= 0) {
      out.push_back(id);
      continue;
    }
    for (char c : s)
      if (int32_t id = byte_token_[static_cast<uint8_t>(c)]; id >= 0) out.push_back(id);
  }
}

}  // namespace llm
