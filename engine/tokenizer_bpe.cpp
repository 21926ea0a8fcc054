// Byte-level BPE, as llama.cpp's llm_tokenizer_bpe: split the text with the family's
// pre-tokenizer regexes, spell each piece in the GPT-2 byte alphabet, then merge
// adjacent symbols by merge rank (lowest first, leftmost on ties) with a priority
// queue per piece.
#include "engine/bigram_merge.h"
#include "engine/tokenizer.h"

namespace llm {

void Tokenizer::encode_bpe(std::string_view text, std::vector<int32_t>& out) const {
  // llama.cpp decodes leniently (each invalid byte becomes U+FFFD) before splitting.
  const CodepointText cps(utf8_to_codepoints(text));
  const std::vector<size_t> pieces = regex_split(cps, regexes_);

  std::string word, utf8, key;
  std::vector<detail::MergeSymbol> sym;
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

    detail::utf8_symbols(word, sym);
    detail::merge_pairs<int32_t>(
        sym,
        [&](int l, int r, int32_t& rank) {
          key.assign(word, sym[l].off, sym[l].n);
          key.push_back(' ');
          key.append(word, sym[r].off, sym[r].n);
          auto it = merge_rank_.find(key);
          if (it == merge_rank_.end()) return false;
          rank = it->second;
          return true;
        },
        [](int32_t a, int32_t b) { return a < b; });  // lowest rank first

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
