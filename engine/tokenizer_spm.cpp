// SentencePiece-style BPE over scores, as llama.cpp's llm_tokenizer_spm: start from
// the UTF-8 characters of the text (spaces already ▁) and repeatedly merge the adjacent
// pair whose concatenation is the vocab entry with the highest score (leftmost on
// ties); what never becomes a vocab entry falls back to <0xNN> byte tokens.
#include "engine/bigram_merge.h"
#include "engine/tokenizer.h"

namespace llm {

void Tokenizer::encode_spm(std::string_view text, std::vector<int32_t>& out) const {
  std::vector<detail::MergeSymbol> sym;  // (n_chars)
  detail::utf8_symbols(text, sym);
  if (sym.empty()) return;
  detail::merge_pairs<float>(
      sym,
      [&](int l, int r, float& score) {
        auto it = index_.find(text.substr(sym[l].off, sym[l].n + sym[r].n));
        if (it == index_.end()) return false;
        score = score_[it->second];
        return true;
      },
      [](float a, float b) { return a > b; });  // highest score first

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
