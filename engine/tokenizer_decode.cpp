// Tokens back to text: per-token pieces, whole-text decoding with llama.cpp's space
// rules, and the streaming decoder that never splits a UTF-8 character.
#include <cstdlib>

#include "engine/error.h"
#include "engine/tokenizer.h"

namespace llm {
namespace {

// llama.cpp's detokenizer clean-up (HF clean_up_tokenization_spaces), three passes.
std::string clean_up_spaces(const std::string& in) {
  // 1. " ?" " !" " ." " ," lose the space.
  std::string a;
  a.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    char x = in[i];
    if (i > 0 && in[i - 1] == ' ' && (x == '?' || x == '!' || x == '.' || x == ',')) a.pop_back();
    a.push_back(x);
  }
  // 2. A lone apostrophe between spaces loses both spaces: " ' " -> "'". The space
  // after it is consumed and does not count as a space for the next character.
  std::string b;
  b.reserve(a.size());
  bool prev_consumed = false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i];
    bool prev_space = i > 0 && a[i - 1] == ' ' && !prev_consumed;
    prev_consumed = false;
    if (i > 0 && x == '\'' && i + 1 < a.size() && prev_space && a[i + 1] == ' ') {
      b.pop_back();
      b.push_back(x);
      ++i;
      prev_consumed = true;
      continue;
    }
    b.push_back(x);
  }
  // 3. " 's" " 'm" " 're" " 've" lose the space (" 't" " 'd" " 'll" keep it).
  std::string c;
  c.reserve(b.size());
  for (size_t i = 0; i < b.size(); ++i) {
    char x = b[i];
    if (i > 0 && b[i - 1] == ' ' && x == '\'' && i + 1 < b.size()) {
      char x1 = b[i + 1];
      bool drop = x1 == 's' || x1 == 'm';
      if (!drop && x1 != 't' && x1 != 'd' && i + 2 < b.size()) {
        char x2 = b[i + 2];
        drop = (x1 == 'r' && x2 == 'e') || (x1 == 'v' && x2 == 'e');
      }
      if (drop) c.pop_back();
    }
    c.push_back(x);
  }
  return c;
}

}  // namespace

// The piece of a token with special tokens rendered (llama.cpp's token_to_piece cache).
std::string Tokenizer::make_piece(int32_t id) const {
  const uint32_t attr = attr_[id];
  const std::string& t = text_[id];
  if (attr & (kAttrUnknown | kAttrControl | kAttrUserDefined)) return t;
  if (attr & kAttrByte) {
    // "<0xNN>"
    if (t.size() == 6 && t.compare(0, 3, "<0x") == 0)
      return std::string(1, static_cast<char>(std::strtol(t.substr(3, 2).c_str(), nullptr, 16)));
    return t;
  }
  if (!(attr & kAttrNormal)) return "";  // unused and undefined tokens render as nothing
  std::string out;
  if (kind_ == Kind::Spm) {
    for (size_t i = 0; i < t.size(); ++i) {
      if (t.compare(i, 3, "\u2581") == 0) {
        out.push_back(' ');
        i += 2;
      } else {
        out.push_back(t[i]);
      }
    }
    return out;
  }
  // Byte-level: every code point stands for one byte. A code point outside the
  // alphabet (llama.cpp prints "[UNK_BYTE_0x..]" for it) is kept as its UTF-8.
  size_t pos = 0;
  while (pos < t.size()) {
    size_t start = pos;
    uint32_t cp = utf8_decode_lenient(t, &pos);
    int b = unicode_to_byte(cp);
    if (b >= 0)
      out.push_back(static_cast<char>(b));
    else
      out.append(t, start, pos - start);
  }
  return out;
}

std::string Tokenizer::token_to_piece(int32_t id, bool render_special) const {
  if (!valid(id))
    throw Error("token id " + std::to_string(id) + " is outside the vocabulary (0.." +
                std::to_string(n_vocab() - 1) + ")");
  if (!render_special && (attr_[id] & (kAttrUnknown | kAttrControl))) return "";
  return piece_[id];
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool render_special) const {
  std::string out;
  bool strip = add_space_prefix_;
  for (int32_t id : ids) {
    std::string piece = token_to_piece(id, render_special);
    if (piece.empty()) continue;
    if (strip && piece[0] == ' ') piece.erase(0, 1);
    strip = false;
    out += piece;
  }
  return clean_spaces_ ? clean_up_spaces(out) : out;
}

std::string utf8_sanitize(std::string_view bytes, bool final, std::string* rest) {
  std::string out;
  out.reserve(bytes.size());
  size_t i = 0;
  while (i < bytes.size()) {
    int n = utf8_valid_prefix(bytes, i);
    if (n > 0) {
      out.append(bytes.substr(i, n));
      i += n;
    } else if (n == 0) {
      out += "\uFFFD";
      ++i;
    } else {  // an incomplete sequence cut by the end
      if (!final) break;
      out += "\uFFFD";
      i = bytes.size();
    }
  }
  if (rest) rest->assign(bytes.substr(i));
  return out;
}

std::string StreamDecoder::push(int32_t id) {
  std::string piece = tok_->token_to_piece(id);
  if (strip_ && !piece.empty()) {
    if (piece[0] == ' ') piece.erase(0, 1);
    strip_ = false;
  }
  pending_ += piece;
  std::string rest;
  std::string out = utf8_sanitize(pending_, false, &rest);
  pending_.swap(rest);
  return out;
}

std::string StreamDecoder::flush() {
  std::string out = utf8_sanitize(pending_, true, nullptr);
  pending_.clear();
  return out;
}

}  // namespace llm
