#include "engine/jinja_lexer.h"

#include <cstdlib>

#include "engine/jinja_text.h"
#include "engine/jinja_value.h"

namespace llm::jinja {
namespace {

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
bool is_name_start(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
         static_cast<unsigned char>(c) >= 0x80;
}
bool is_name_char(char c) {
  return is_name_start(c) || is_digit(c);
}

int hex_value(char32_t c) {
  if (c >= '0' && c <= '9') return static_cast<int>(c - '0');
  if (c >= 'a' && c <= 'f') return static_cast<int>(c - 'a' + 10);
  if (c >= 'A' && c <= 'F') return static_cast<int>(c - 'A' + 10);
  return -1;
}

// Python's `unicode-escape` decoding of a string literal body, as jinja2 applies it after
// `.encode("ascii", "backslashreplace")`.
std::string unescape(std::string_view body, int line) {
  std::u32string s = to_u32(body);
  std::string out;
  out.reserve(body.size());
  auto error = [&](const std::string& what) {
    throw TemplateError("(unicode error) " + what, line);
  };
  for (size_t i = 0; i < s.size(); ++i) {
    char32_t c = s[i];
    if (c != '\\') {
      utf8_append(out, c);
      continue;
    }
    if (i + 1 >= s.size()) error("\\ at end of string");
    char32_t d = s[++i];
    if (d >= 0x80) {
      // backslashreplace turned the character into \xNN / \uNNNN / \UNNNNNNNN, whose
      // leading backslash pairs with ours into a literal backslash.
      char buf[16];
      const char* fmt = d < 0x100 ? "\\x%02x" : d < 0x10000 ? "\\u%04x" : "\\U%08x";
      std::snprintf(buf, sizeof buf, fmt, static_cast<unsigned>(d));
      out += buf;
      continue;
    }
    switch (d) {
      case '\n':
        break;
      case '\\':
        out.push_back('\\');
        break;
      case '\'':
        out.push_back('\'');
        break;
      case '"':
        out.push_back('"');
        break;
      case 'a':
        out.push_back('\a');
        break;
      case 'b':
        out.push_back('\b');
        break;
      case 'f':
        out.push_back('\f');
        break;
      case 'n':
        out.push_back('\n');
        break;
      case 'r':
        out.push_back('\r');
        break;
      case 't':
        out.push_back('\t');
        break;
      case 'v':
        out.push_back('\v');
        break;
      case 'x':
      case 'u':
      case 'U': {
        int digits = d == 'x' ? 2 : d == 'u' ? 4 : 8;
        char32_t v = 0;
        for (int k = 0; k < digits; ++k) {
          int h = i + 1 < s.size() ? hex_value(s[i + 1]) : -1;
          if (h < 0) error("truncated \\" + std::string(1, static_cast<char>(d)) + " escape");
          v = v * 16 + static_cast<char32_t>(h);
          ++i;
        }
        if (v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) error("illegal Unicode character");
        utf8_append(out, v);
        break;
      }
      case 'N':
        error("named Unicode escapes (\\N{...}) are not supported");
        break;
      default:
        if (d >= '0' && d <= '7') {
          char32_t v = d - '0';
          for (int k = 0; k < 2 && i + 1 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '7'; ++k)
            v = v * 8 + (s[++i] - '0');
          utf8_append(out, v);
        } else {
          out.push_back('\\');
          utf8_append(out, d);
        }
    }
  }
  return out;
}

class Lexer {
 public:
  explicit Lexer(std::string_view source) {
    // Newlines: \r\n and \r become \n; one trailing newline is dropped.
    src_.reserve(source.size());
    for (size_t i = 0; i < source.size(); ++i) {
      if (source[i] == '\r') {
        src_.push_back('\n');
        if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
      } else {
        src_.push_back(source[i]);
      }
    }
    if (!src_.empty() && src_.back() == '\n') src_.pop_back();
  }

  std::vector<Token> run() {
    while (pos_ < src_.size()) lex_root();
    push(Tok::Eof, "");
    return std::move(out_);
  }

 private:
  enum class TagKind { Var, Block, Comment, Raw };

  [[noreturn]] void error(const std::string& msg) const { throw TemplateError(msg, line_); }

  void push(Tok t, std::string text, int line = 0) {
    Token tok;
    tok.type = t;
    tok.text = std::move(text);
    tok.line = line ? line : line_;
    out_.push_back(std::move(tok));
  }

  void advance_to(size_t p) {
    for (size_t i = pos_; i < p; ++i) line_ += src_[i] == '\n';
    line_starting_ = p > pos_ && src_[p - 1] == '\n';
    pos_ = p;
  }

  // Length of the (unicode) whitespace run at p.
  size_t ws_run(size_t p) const {
    size_t q = p;
    while (q < src_.size()) {
      size_t r = q;
      if (!is_py_space(utf8_next(src_, r))) break;
      q = r;
    }
    return q - p;
  }

  bool all_ws(std::string_view s) const {
    for (size_t i = 0; i < s.size();)
      if (!is_py_space(utf8_next(s, i))) return false;
    return true;
  }

  std::string rstrip_ws(std::string_view s) const {
    std::u32string u = to_u32(s);
    while (!u.empty() && is_py_space(u.back())) u.pop_back();
    return to_utf8(u);
  }

  // jinja2's OptionalLStrip on the text before a tag with the given sign.
  std::string strip_text(std::string_view text, char sign, bool lstrip_allowed) const {
    if (sign == '-') return rstrip_ws(text);
    if (sign != '+' && lstrip_allowed) {
      size_t nl = text.rfind('\n');
      size_t l = nl == std::string_view::npos ? 0 : nl + 1;
      if ((l > 0 || line_starting_) && l < text.size() && all_ws(text.substr(l)))
        return std::string(text.substr(0, l));
    }
    return std::string(text);
  }

  bool starts(size_t p, std::string_view s) const { return src_.compare(p, s.size(), s) == 0; }

  // `raw` begin at p (just after "{%" and its sign): \s*raw\s*(-%}\s*|%}). Returns the end.
  size_t match_raw_begin(size_t p) const {
    p += ws_run(p);
    if (!starts(p, "raw")) return 0;
    p += 3;
    p += ws_run(p);
    if (starts(p, "-%}")) return p + 3 + ws_run(p + 3);
    if (starts(p, "%}")) return p + 2;
    return 0;
  }

  void lex_root() {
    size_t p = pos_;
    TagKind kind = TagKind::Var;
    for (;; ++p) {
      p = src_.find('{', p);
      if (p == std::string::npos || p + 1 >= src_.size()) {
        push(Tok::Data, src_.substr(pos_));
        advance_to(src_.size());
        return;
      }
      char c = src_[p + 1];
      if (c == '{' || c == '%' || c == '#') {
        kind = c == '{' ? TagKind::Var : c == '%' ? TagKind::Block : TagKind::Comment;
        break;
      }
    }
    char sign = p + 2 < src_.size() && (src_[p + 2] == '-' || src_[p + 2] == '+') ? src_[p + 2] : 0;
    size_t body = p + 2 + (sign ? 1 : 0);
    size_t raw_end = kind == TagKind::Block ? match_raw_begin(body) : 0;
    if (raw_end) kind = TagKind::Raw;

    std::string text =
        strip_text(std::string_view(src_).substr(pos_, p - pos_), sign, kind != TagKind::Var);
    if (!text.empty()) push(Tok::Data, std::move(text));
    advance_to(p);
    int tag_line = line_;
    switch (kind) {
      case TagKind::Comment:
        lex_comment(body);
        break;
      case TagKind::Raw:
        advance_to(raw_end);
        lex_raw();
        break;
      case TagKind::Var:
      case TagKind::Block:
        advance_to(body);
        push(kind == TagKind::Var ? Tok::VarBegin : Tok::BlockBegin, "", tag_line);
        lex_tag(kind == TagKind::Block);
        break;
    }
  }

  void lex_comment(size_t body) {
    for (size_t q = body; q < src_.size(); ++q) {
      if (starts(q, "+#}")) {
        advance_to(q + 3);
        return;
      }
      if (starts(q, "-#}")) {
        advance_to(q + 3 + ws_run(q + 3));
        return;
      }
      if (starts(q, "#}")) {
        advance_to(q + 2 + (starts(q + 2, "\n") ? 1 : 0));
        return;
      }
    }
    error("Missing end of comment tag");
  }

  void lex_raw() {
    for (size_t q = src_.find("{%", pos_); q != std::string::npos; q = src_.find("{%", q + 1)) {
      char sign =
          q + 2 < src_.size() && (src_[q + 2] == '-' || src_[q + 2] == '+') ? src_[q + 2] : 0;
      size_t p = q + 2 + (sign ? 1 : 0);
      p += ws_run(p);
      if (!starts(p, "endraw")) continue;
      p += 6;
      p += ws_run(p);
      size_t end;
      if (starts(p, "+%}"))
        end = p + 3;
      else if (starts(p, "-%}"))
        end = p + 3 + ws_run(p + 3);
      else if (starts(p, "%}"))
        end = p + 2 + (starts(p + 2, "\n") ? 1 : 0);
      else
        continue;
      std::string text = strip_text(std::string_view(src_).substr(pos_, q - pos_), sign, true);
      if (!text.empty()) push(Tok::Data, std::move(text));
      advance_to(end);
      return;
    }
    error("Missing end of raw directive");
  }

  size_t match_digits(size_t p) const {  // (\d+_)*\d+
    if (p >= src_.size() || !is_digit(src_[p])) return 0;
    while (p < src_.size() && is_digit(src_[p])) ++p;
    while (p + 1 < src_.size() && src_[p] == '_' && is_digit(src_[p + 1])) {
      ++p;
      while (p < src_.size() && is_digit(src_[p])) ++p;
    }
    return p;
  }

  bool lex_number() {
    size_t p = pos_;
    size_t d = match_digits(p);
    if (!d) return false;
    // Float: digits [. digits] [e[+-]digits], with a fraction or an exponent; not after '.'.
    if (p == 0 || src_[p - 1] != '.') {
      size_t q = d;
      bool frac = false, exp = false;
      if (q < src_.size() && src_[q] == '.') {
        size_t f = match_digits(q + 1);
        if (f) q = f, frac = true;
      }
      if (q < src_.size() && (src_[q] == 'e' || src_[q] == 'E')) {
        size_t r = q + 1;
        if (r < src_.size() && (src_[r] == '+' || src_[r] == '-')) ++r;
        size_t f = match_digits(r);
        if (f) q = f, exp = true;
      }
      if (frac || exp) {
        std::string lit;
        for (size_t i = p; i < q; ++i)
          if (src_[i] != '_') lit.push_back(src_[i]);
        push(Tok::Float, lit);
        out_.back().fval = std::strtod(lit.c_str(), nullptr);
        advance_to(q);
        return true;
      }
    }
    // Integer: 0b / 0o / 0x prefixes, [1-9](_?\d)*, or 0(_?0)*.
    int base = 10;
    size_t q = p;
    char c1 = p + 1 < src_.size() ? static_cast<char>(src_[p + 1] | 0x20) : 0;
    auto digit_ok = [&](char c) {
      int v = hex_value(static_cast<unsigned char>(c));
      return v >= 0 && v < base;
    };
    if (src_[p] == '0' && (c1 == 'b' || c1 == 'o' || c1 == 'x')) {
      base = c1 == 'b' ? 2 : c1 == 'o' ? 8 : 16;
      size_t r = p + 2;
      while (true) {
        size_t s = r + (r < src_.size() && src_[r] == '_' ? 1 : 0);
        if (s < src_.size() && digit_ok(src_[s]))
          r = s + 1;
        else
          break;
      }
      if (r > p + 2)
        q = r;
      else
        base = 10;
    }
    if (base == 10) {
      bool zero = src_[p] == '0';
      q = p + 1;
      while (true) {
        size_t s = q + (q < src_.size() && src_[q] == '_' ? 1 : 0);
        if (s < src_.size() && (zero ? src_[s] == '0' : is_digit(src_[s])))
          q = s + 1;
        else
          break;
      }
    }
    std::string digits;
    for (size_t i = p + (base == 10 ? 0 : 2); i < q; ++i)
      if (src_[i] != '_') digits.push_back(src_[i]);
    errno = 0;
    char* end = nullptr;
    unsigned long long v = std::strtoull(digits.c_str(), &end, base);
    if (errno || v > static_cast<unsigned long long>(INT64_MAX))
      error("integer literal too large: " + src_.substr(p, q - p));
    push(Tok::Int, src_.substr(p, q - p));
    out_.back().ival = static_cast<int64_t>(v);
    advance_to(q);
    return true;
  }

  void lex_string() {
    char quote = src_[pos_];
    size_t q = pos_ + 1;
    while (q < src_.size() && src_[q] != quote) q += src_[q] == '\\' ? 2 : 1;
    if (q >= src_.size())
      error("unexpected char '" + std::string(1, quote) + "' (unterminated string)");
    push(Tok::String, unescape(std::string_view(src_).substr(pos_ + 1, q - pos_ - 1), line_));
    advance_to(q + 1);
  }

  void lex_operator() {
    static const char* const kTwo[] = {"**", "//", "==", "!=", ">=", "<="};
    for (const char* op : kTwo) {
      if (starts(pos_, op)) {
        push(Tok::Op, op);
        advance_to(pos_ + 2);
        return;
      }
    }
    char c = src_[pos_];
    static const std::string kOne = "+-/*%~[](){}><=.:|,;";
    if (kOne.find(c) == std::string::npos) {
      error("unexpected char '" + std::string(1, c) + "' at " + std::to_string(pos_));
    }
    if (c == '(' || c == '[' || c == '{') {
      balance_.push_back(c == '(' ? ')' : c == '[' ? ']' : '}');
    } else if (c == ')' || c == ']' || c == '}') {
      if (balance_.empty()) error(std::string("unexpected '") + c + "'");
      if (balance_.back() != c)
        error(std::string("unexpected '") + c + "', expected '" + balance_.back() + "'");
      balance_.pop_back();
    }
    push(Tok::Op, std::string(1, c));
    advance_to(pos_ + 1);
  }

  // Tokens of one {{ ... }} or {% ... %} up to and including its end.
  void lex_tag(bool block) {
    balance_.clear();
    while (true) {
      if (pos_ >= src_.size()) error("unexpected end of template inside a tag");
      if (balance_.empty()) {
        size_t end = 0;
        if (block) {
          if (starts(pos_, "+%}"))
            end = pos_ + 3;
          else if (starts(pos_, "-%}"))
            end = pos_ + 3 + ws_run(pos_ + 3);
          else if (starts(pos_, "%}"))
            end = pos_ + 2 + (starts(pos_ + 2, "\n") ? 1 : 0);
        } else {
          if (starts(pos_, "-}}"))
            end = pos_ + 3 + ws_run(pos_ + 3);
          else if (starts(pos_, "}}"))
            end = pos_ + 2;
        }
        if (end) {
          push(block ? Tok::BlockEnd : Tok::VarEnd, "");
          advance_to(end);
          return;
        }
      }
      if (size_t w = ws_run(pos_)) {
        advance_to(pos_ + w);
        continue;
      }
      char c = src_[pos_];
      if (is_digit(c) && lex_number()) continue;
      if (is_name_start(c)) {
        size_t q = pos_;
        while (q < src_.size() && is_name_char(src_[q])) ++q;
        push(Tok::Name, src_.substr(pos_, q - pos_));
        advance_to(q);
        continue;
      }
      if (c == '\'' || c == '"') {
        lex_string();
        continue;
      }
      lex_operator();
    }
  }

  std::string src_;
  size_t pos_ = 0;
  int line_ = 1;
  bool line_starting_ = true;  // the previous match ended with a newline
  std::vector<char> balance_;  // expected closing brackets inside a tag
  std::vector<Token> out_;
};

}  // namespace

std::vector<Token> tokenize(std::string_view source) {
  return Lexer(source).run();
}

}  // namespace llm::jinja
