#include "engine/tokenizer.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <optional>

#include "engine/error.h"
#include "engine/pretokenizer.h"

namespace llm {
namespace {

bool ascii_isspace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

// tokenizer.ggml.token_type values (gguf-py's TokenType) -> TokenAttr.
uint32_t attr_from_type(int64_t type) {
  switch (type) {
    case 1:
      return kAttrNormal;
    case 2:
      return kAttrUnknown;
    case 3:
      return kAttrControl;
    case 4:
      return kAttrUserDefined;
    case 5:
      return kAttrUnused;
    case 6:
      return kAttrByte;
    default:
      return kAttrUndefined;
  }
}

}  // namespace

Tokenizer Tokenizer::from_gguf(const GgufFile& f) {
  const std::string& path = f.path();
  Tokenizer t;
  std::optional<std::string> model = f.get_string("tokenizer.ggml.model");
  if (!model) throw Error(path + ": no tokenizer in this file (tokenizer.ggml.model is missing)");

  // Defaults per vocabulary type, as llama.cpp sets them before reading the metadata.
  if (*model == "llama") {
    t.kind_ = Kind::Spm;
    t.bos_ = 1, t.eos_ = 2, t.unk_ = 0;
    t.add_space_prefix_ = true;
    t.add_bos_ = true;
    t.clean_spaces_ = false;
  } else if (*model == "gpt2") {
    t.kind_ = Kind::Bpe;
    PreTokenizerSpec spec = pretokenizer_spec(f.get_string("tokenizer.ggml.pre").value_or(""));
    t.pre_ = spec.family;
    t.bos_ = spec.has_bos ? 11 : -1;
    t.eos_ = 11;
    t.clean_spaces_ = spec.clean_spaces;
    t.ignore_merges_ = spec.ignore_merges;
    t.add_bos_ = spec.add_bos;
    for (const std::string& r : spec.regexes) t.regexes_.emplace_back(r);
  } else {
    throw Error(
        path + ": unsupported tokenizer model '" + *model +
        "' (tokenizer.ggml.model); supported: llama (SentencePiece), gpt2 (byte-level BPE)");
  }
  if (auto v = f.get_bool("tokenizer.ggml.add_space_prefix")) t.add_space_prefix_ = *v;

  auto tokens = f.get_string_array("tokenizer.ggml.tokens");
  if (!tokens || tokens->empty()) throw Error(path + ": tokenizer.ggml.tokens is missing or empty");
  if (tokens->size() > static_cast<size_t>(INT32_MAX))
    throw Error(path + ": tokenizer.ggml.tokens has too many entries");
  const size_t n = tokens->size();
  std::vector<float> scores =
      f.get_float_array("tokenizer.ggml.scores").value_or(std::vector<float>());
  if (!scores.empty() && scores.size() < n)
    throw Error(path + ": tokenizer.ggml.scores has " + std::to_string(scores.size()) +
                " entries for " + std::to_string(n) + " tokens");
  std::vector<int64_t> types =
      f.get_int_array("tokenizer.ggml.token_type").value_or(std::vector<int64_t>());
  if (!types.empty() && types.size() < n)
    throw Error(path + ": tokenizer.ggml.token_type has " + std::to_string(types.size()) +
                " entries for " + std::to_string(n) + " tokens");

  t.text_.resize(n);
  t.score_.assign(n, 0.0f);
  t.attr_.assign(n, kAttrNormal);
  t.index_.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    std::string word((*tokens)[i]);
    if (word.empty()) word = "[EMPTY_" + std::to_string(i) + "]";  // as llama.cpp
    auto [it, fresh] = t.index_.emplace(word, static_cast<int32_t>(i));
    if (!fresh)
      throw Error(path + ": duplicate token '" + word + "' in the vocabulary (ids " +
                  std::to_string(it->second) + " and " + std::to_string(i) + ")");
    t.text_[i] = std::move(word);
    if (!scores.empty()) t.score_[i] = scores[i];
    if (!types.empty()) t.attr_[i] = attr_from_type(types[i]);
  }

  if (t.kind_ == Kind::Bpe) {
    auto merges = f.get_string_array("tokenizer.ggml.merges");
    if (!merges) throw Error(path + ": BPE tokenizer without tokenizer.ggml.merges");
    t.merge_rank_.reserve(merges->size());
    for (size_t r = 0; r < merges->size(); ++r) {
      std::string_view m = (*merges)[r];
      // "left right", split at the first space after the first byte.
      size_t sp = m.size() > 1 ? m.find(' ', 1) : std::string_view::npos;
      if (sp == std::string_view::npos) continue;  // llama.cpp keeps it as ("", ""): never used
      t.merge_rank_.emplace(std::string(m), static_cast<int32_t>(r));
    }
    for (int b = 0; b < 256; ++b) {
      t.byte_text_[b].clear();
      utf8_append(t.byte_text_[b], byte_to_unicode(static_cast<uint8_t>(b)));
    }
  }
  for (int b = 0; b < 256; ++b) {
    char hex[8];
    std::snprintf(hex, sizeof hex, "<0x%02X>", b);
    int32_t id = t.token_id(hex);
    if (id < 0) id = t.token_id(std::string(1, static_cast<char>(b)));
    t.byte_token_[b] = id >= 0 ? id : t.unk_;
  }

  t.load_specials(f);
  t.detect_special_tokens(f);
  t.piece_.resize(n);
  for (size_t i = 0; i < n; ++i) t.piece_[i] = t.make_piece(static_cast<int32_t>(i));
  return t;
}

void Tokenizer::load_specials(const GgufFile& f) {
  const int32_t n = n_vocab();
  struct Key {
    const char* key;
    int32_t* id;
  };
  const Key keys[] = {
      {"tokenizer.ggml.bos_token_id", &bos_},
      {"tokenizer.ggml.eos_token_id", &eos_},
      {"tokenizer.ggml.eot_token_id", &eot_},
      {"tokenizer.ggml.eom_token_id", &eom_},
      {"tokenizer.ggml.unknown_token_id", &unk_},
      {"tokenizer.ggml.seperator_token_id", &sep_},  // sic, the GGUF key's spelling
      {"tokenizer.ggml.padding_token_id", &pad_},
      {"tokenizer.ggml.fim_pre_token_id", &fim_pre_},
      {"tokenizer.ggml.fim_suf_token_id", &fim_suf_},
      {"tokenizer.ggml.fim_mid_token_id", &fim_mid_},
      {"tokenizer.ggml.fim_pad_token_id", &fim_pad_},
      {"tokenizer.ggml.fim_rep_token_id", &fim_rep_},
      {"tokenizer.ggml.fim_sep_token_id", &fim_sep_},
      {"tokenizer.ggml.prefix_token_id", &fim_pre_},  // deprecated names
      {"tokenizer.ggml.suffix_token_id", &fim_suf_},
      {"tokenizer.ggml.middle_token_id", &fim_mid_},
  };
  for (const Key& k : keys) {
    if (*k.id >= n) *k.id = -1;  // a default outside this vocabulary
    // An id outside the vocabulary (stories260K says 4294967295 for "none") keeps the
    // default, as llama.cpp does.
    if (auto v = f.get_int(k.key); v && *v >= 0 && *v < n) *k.id = static_cast<int32_t>(*v);
  }
  if (auto v = f.get_bool("tokenizer.ggml.add_bos_token")) add_bos_ = *v;
  if (auto v = f.get_bool("tokenizer.ggml.add_eos_token")) add_eos_ = *v;
  if (add_bos_ && bos_ < 0)
    throw Error(f.path() + ": tokenizer.ggml.add_bos_token is true but there is no BOS token");
  if (add_eos_ && eos_ < 0)
    throw Error(f.path() + ": tokenizer.ggml.add_eos_token is true but there is no EOS token");
}

// Finds the tokens that convert scripts do not name (EOT, EOM, FIM) by their text,
// collects the end-of-generation set, builds the special-token list and per-token
// strip flags — the workarounds llama.cpp's vocabulary loader applies.
void Tokenizer::detect_special_tokens(const GgufFile& f) {
  // llama.cpp walks an unordered_map, so among several candidates its pick is
  // arbitrary; here the first text in each list that exists wins.
  auto first_of = [&](std::initializer_list<const char*> texts) {
    for (const char* s : texts)
      if (int32_t id = token_id(s); id >= 0) return id;
    return int32_t{-1};
  };
  auto detect = [&](int32_t& slot, std::initializer_list<const char*> texts) {
    if (slot >= 0) return;
    slot = first_of(texts);
    if (slot >= 0) attr_[slot] |= kAttrControl;
  };
  detect(eot_, {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
                "<|end_of_text|>", "<EOT>", "_<EOT>", "[EOT]",
                "<\uFF5Cend\u2581of\u2581sentence\uFF5C>", "<end_of_utterance>"});
  detect(eom_, {"<|eom_id|>"});
  detect(fim_pre_,
         {"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<\uFF5Cfim\u2581begin\uFF5C>", "<PRE>",
          "\u2581<PRE>", "<|code_prefix|>", "<|prefix|>"});
  detect(fim_suf_, {"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<\uFF5Cfim\u2581hole\uFF5C>",
                    "<SUF>", "\u2581<SUF>", "<|code_suffix|>", "<|suffix|>"});
  detect(fim_mid_, {"<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<\uFF5Cfim\u2581end\uFF5C>",
                    "<MID>", "\u2581<MID>", "<|code_middle|>", "<|middle|>"});
  detect(fim_pad_, {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"});
  detect(fim_rep_, {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"});
  detect(fim_sep_, {"<|file_sep|>"});

  std::vector<int32_t> eog;
  for (int32_t id : {fim_pad_, fim_rep_, fim_sep_})
    if (id >= 0) eog.push_back(id);
  for (const char* s : {"<|eot_id|>",
                        "<|im_end|>",
                        "<|end|>",
                        "<|return|>",
                        "<|call|>",
                        "<|flush|>",
                        "<|calls|>",
                        "<end_of_turn>",
                        "<|endoftext|>",
                        "</s>",
                        "<|eom_id|>",
                        "<EOT>",
                        "_<EOT>",
                        "[EOT]",
                        "[EOS]",
                        "<|end_of_text|>",
                        "<end_of_utterance>",
                        "<eos>",
                        "<turn|>",
                        "<|tool_response>",
                        "<\uFF5Cend\u2581of\u2581sentence\uFF5C>",
                        "[e~["}) {
    if (int32_t id = token_id(s); id >= 0) {
      eog.push_back(id);
      attr_[id] |= kAttrControl;
    }
  }
  // gpt-oss: these frame the reply and must always be rendered.
  for (const char* s : {"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"})
    if (int32_t id = token_id(s); id >= 0) attr_[id] = kAttrUserDefined;
  for (int32_t id : {eos_, eot_, eom_})
    if (id >= 0) eog.push_back(id);
  std::sort(eog.begin(), eog.end());
  eog.erase(std::unique(eog.begin(), eog.end()), eog.end());
  // o200k_harmony / solar-open: "<|end|>" ends a message, not the generation, when the
  // vocabulary also has <|return|> and <|call|> (or <|calls|> and <|flush|>).
  auto in_eog = [&](const char* s) {
    int32_t id = token_id(s);
    return id >= 0 && std::binary_search(eog.begin(), eog.end(), id);
  };
  if (in_eog("<|end|>") && ((in_eog("<|return|>") && (in_eog("<|call|>") || in_eog("<|calls|>"))) ||
                            ((in_eog("<|call|>") || in_eog("<|calls|>")) && in_eog("<|flush|>")))) {
    int32_t end = token_id("<|end|>");
    eog.erase(std::find(eog.begin(), eog.end(), end));
    attr_[end] = kAttrUserDefined;
  }
  eog_ = std::move(eog);

  // Special tokens are matched longest text first.
  for (int32_t id = 0; id < n_vocab(); ++id)
    if (attr_[id] & (kAttrControl | kAttrUserDefined | kAttrUnknown)) special_.push_back(id);
  std::stable_sort(special_.begin(), special_.end(),
                   [&](int32_t a, int32_t b) { return text_[a].size() > text_[b].size(); });

  // Phi-3's special tokens swallow the whitespace after them (per model name, as llama.cpp).
  std::string name = f.get_string("general.name").value_or("");
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (name.find("phi-3") != std::string::npos || name.find("phi3") != std::string::npos) {
    for (int32_t id : special_) attr_[id] |= kAttrRstrip;
    if (int32_t id = token_id("</s>"); id >= 0) attr_[id] |= kAttrRstrip;
    for (const char* s : {"<unk>", "<s>", "<|endoftext|>"})
      if (int32_t id = token_id(s); id >= 0) attr_[id] &= ~kAttrRstrip;
  }
}

int32_t Tokenizer::token_id(std::string_view text) const {
  auto it = index_.find(text);
  return it == index_.end() ? -1 : it->second;
}

const std::string& Tokenizer::token_text(int32_t id) const {
  if (!valid(id))
    throw Error("token id " + std::to_string(id) + " is outside the vocabulary (0.." +
                std::to_string(n_vocab() - 1) + ")");
  return text_[id];
}

bool Tokenizer::is_eog(int32_t id) const {
  return std::binary_search(eog_.begin(), eog_.end(), id);
}

// Splits text around special tokens, longest first, each over all remaining raw text
// (llama.cpp's tokenizer_st_partition). Control and unknown tokens only match when
// parse_special; user-defined ones always do.
std::vector<Tokenizer::Fragment> Tokenizer::partition(std::string_view text,
                                                      bool parse_special) const {
  std::vector<Fragment> frags;
  if (text.empty()) return frags;
  frags.push_back({-1, 0, text.size()});
  std::vector<Fragment> next;
  for (int32_t id : special_) {
    const uint32_t attr = attr_[id];
    if (!parse_special && (attr & (kAttrControl | kAttrUnknown))) continue;
    const std::string& st = text_[id];
    if (text.find(st) == std::string_view::npos) continue;  // cheap common case
    next.clear();
    for (const Fragment& fr : frags) {
      if (fr.token >= 0) {
        next.push_back(fr);
        continue;
      }
      size_t off = fr.off, len = fr.len;
      while (len > 0) {
        size_t m = text.substr(0, off + len).find(st, off);
        if (m == std::string_view::npos) {
          next.push_back({-1, off, len});
          break;
        }
        size_t left = m - off;
        if (attr & kAttrLstrip)
          while (left > 0 && ascii_isspace(text[off + left - 1])) --left;
        if (left > 0) next.push_back({-1, off, left});
        next.push_back({id, 0, 0});
        size_t r_off = m + st.size(), r_len = off + len - r_off;
        if (attr & kAttrRstrip)
          while (r_len > 0 && ascii_isspace(text[r_off])) ++r_off, --r_len;
        off = r_off;
        len = r_len;
      }
    }
    frags.swap(next);
  }
  return frags;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special,
                                       bool parse_special) const {
  std::vector<int32_t> out;
  const std::vector<Fragment> frags = partition(text, parse_special);
  if (add_special && add_bos_) out.push_back(bos_);
  if (kind_ == Kind::Spm) {
    // SentencePiece prefixes a space to the text, and llama.cpp to every text fragment
    // that follows a special token; spaces become ▁ (U+2581).
    bool prev_special = true;
    std::string s;
    for (const Fragment& fr : frags) {
      if (fr.token >= 0) {
        out.push_back(fr.token);
        prev_special = true;
        continue;
      }
      s.clear();
      if (add_space_prefix_ && prev_special) s += "\u2581";
      for (char c : text.substr(fr.off, fr.len)) {
        if (c == ' ')
          s += "\u2581";
        else
          s.push_back(c);
      }
      encode_spm(s, out);
      prev_special = false;
    }
  } else {
    for (const Fragment& fr : frags) {
      if (fr.token >= 0)
        out.push_back(fr.token);
      else
        encode_bpe(text.substr(fr.off, fr.len), out);
    }
  }
  if (add_special && add_eos_) out.push_back(eos_);
  return out;
}

}  // namespace llm
