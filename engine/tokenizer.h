// Tokenizers built from GGUF metadata, token-for-token the same as llama.cpp's
// llama-vocab.cpp: SentencePiece-style BPE over scores ("llama", SPM) and byte-level
// BPE over merge ranks ("gpt2", BPE) with the pre-tokenizer regexes named by
// `tokenizer.ggml.pre`.
//
// Per-token tables (n_vocab rows):
//   column     | meaning
//   text_      | the vocab entry as stored (SPM: "▁the", "<0x0A>"; BPE: "Ġthe")
//   score_     | SPM merge priority (higher merges first); 0 when absent
//   attr_      | TokenAttr bits from tokenizer.ggml.token_type, plus detected ones
//   piece_     | the bytes the token stands for, control tokens rendered as their text
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "engine/gguf.h"
#include "engine/regex_split.h"

namespace llm {

// Token attributes, bit values as llama.h's llama_token_attr.
enum TokenAttr : uint32_t {
  kAttrUndefined = 0,
  kAttrUnknown = 1u << 0,
  kAttrUnused = 1u << 1,
  kAttrNormal = 1u << 2,
  kAttrControl = 1u << 3,
  kAttrUserDefined = 1u << 4,
  kAttrByte = 1u << 5,
  kAttrLstrip = 1u << 7,  // matching this special token eats the spaces before it
  kAttrRstrip = 1u << 8,  // ... and after it
};

class Tokenizer {
 public:
  enum class Kind { Spm, Bpe };

  // Reads tokenizer.ggml.* from a model or vocab-only file. Throws llm::Error on
  // missing, malformed or unsupported metadata.
  static Tokenizer from_gguf(const GgufFile& f);

  // add_special: add BOS/EOS as the model's rules say (add_bos()/add_eos()).
  // parse_special: recognise control-token texts such as "<|eot_id|>" inside the text;
  // false treats them as plain text (user-defined tokens are always recognised, as in
  // llama.cpp and HF tokenizers).
  std::vector<int32_t> encode(std::string_view text, bool add_special, bool parse_special) const;

  const std::string& token_text(int32_t id) const;  // the vocab entry as stored
  // The bytes this token stands for (SPM ▁ -> space, <0xNN> byte tokens, BPE byte-level
  // unmapping). Control and unknown tokens give "" unless render_special.
  std::string token_to_piece(int32_t id) const { return token_to_piece(id, false); }
  std::string token_to_piece(int32_t id, bool render_special) const;
  // The whole text of ids. Drops the space SPM prefixed to the first word (so that
  // decode(encode(x, true, _)) == x) and, for BPE families that say so, cleans up
  // spaces before punctuation like llama.cpp's detokenizer (clean_up_tokenization_spaces).
  std::string decode(const std::vector<int32_t>& ids) const { return decode(ids, false); }
  std::string decode(const std::vector<int32_t>& ids, bool render_special) const;

  int n_vocab() const { return static_cast<int>(text_.size()); }
  int32_t bos() const { return bos_; }  // -1 when absent
  int32_t eos() const { return eos_; }
  int32_t eot() const { return eot_; }
  int32_t eom() const { return eom_; }
  int32_t unk() const { return unk_; }
  int32_t pad() const { return pad_; }
  bool add_bos() const { return add_bos_; }
  bool add_eos() const { return add_eos_; }
  bool add_space_prefix() const { return add_space_prefix_; }
  bool clean_spaces() const { return clean_spaces_; }
  // End of generation: eos, eot, eom and the tokens llama.cpp collects by their text
  // (<|eot_id|>, <|im_end|>, <|end|>, <|endoftext|>, <|end_of_text|>, FIM pad/repo/sep...).
  bool is_eog(int32_t id) const;
  const std::vector<int32_t>& eog_ids() const { return eog_; }  // sorted
  bool is_control(int32_t id) const { return valid(id) && (attr_[id] & kAttrControl); }
  uint32_t attr(int32_t id) const { return valid(id) ? attr_[id] : kAttrUndefined; }
  int32_t token_id(std::string_view text) const;  // exact vocab entry, or -1

  Kind kind() const { return kind_; }
  const std::string& pre() const { return pre_; }  // pre-tokenizer family ("" for SPM)

 private:
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  using StringMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;
  struct Fragment {
    int32_t token;  // -1: raw text [off, off + len)
    size_t off, len;
  };

  bool valid(int32_t id) const { return id >= 0 && id < n_vocab(); }
  void load_specials(const GgufFile& f);
  void detect_special_tokens(const GgufFile& f);
  std::vector<Fragment> partition(std::string_view text, bool parse_special) const;
  void encode_spm(std::string_view text, std::vector<int32_t>& out) const;  // tokenizer_spm.cpp
  void encode_bpe(std::string_view text, std::vector<int32_t>& out) const;  // tokenizer_bpe.cpp
  std::string make_piece(int32_t id) const;

  Kind kind_ = Kind::Spm;
  std::string pre_;
  std::vector<std::string> text_;    // (n_vocab)
  std::vector<float> score_;         // (n_vocab)
  std::vector<uint32_t> attr_;       // (n_vocab)
  std::vector<std::string> piece_;   // (n_vocab) rendered with special tokens
  StringMap index_;                  // text -> id
  StringMap merge_rank_;             // "left right" -> rank (BPE)
  std::vector<SplitRegex> regexes_;  // BPE pre-tokenizer
  std::vector<int32_t> special_;     // control/user-defined/unknown ids, longest text first
  std::vector<int32_t> eog_;         // sorted
  int32_t byte_token_[256];          // SPM byte fallback: <0xNN> (or the byte itself)
  std::string byte_text_[256];       // BPE: the alphabet character each byte becomes (UTF-8)

  int32_t bos_ = -1, eos_ = -1, eot_ = -1, eom_ = -1, unk_ = -1, pad_ = -1, sep_ = -1;
  int32_t fim_pre_ = -1, fim_suf_ = -1, fim_mid_ = -1, fim_pad_ = -1, fim_rep_ = -1, fim_sep_ = -1;
  bool add_bos_ = false, add_eos_ = false, add_space_prefix_ = false;
  bool clean_spaces_ = false, ignore_merges_ = false;
};

// Streaming detokenizer for generated tokens: never emits half a UTF-8 character; an
// incomplete tail is held back until the next token completes it. Bytes that can never
// form a character are replaced by U+FFFD. No space clean-up (like llama.cpp's server).
class StreamDecoder {
 public:
  // strip_leading_space: drop the space of the first piece (SPM text that starts a
  // sequence); keep it for continuations.
  explicit StreamDecoder(const Tokenizer& t, bool strip_leading_space = false)
      : tok_(&t), strip_(strip_leading_space) {}
  std::string push(int32_t id);  // newly complete text
  std::string flush();           // whatever remains (invalid bytes replaced by U+FFFD)

 private:
  const Tokenizer* tok_;
  std::string pending_;  // bytes not yet emitted: at most an incomplete UTF-8 sequence
  bool strip_;
};

// UTF-8 text of bytes, invalid sequences replaced by U+FFFD. With `final` false, an
// incomplete sequence at the end is left in *rest instead.
std::string utf8_sanitize(std::string_view bytes, bool final, std::string* rest);

}  // namespace llm
