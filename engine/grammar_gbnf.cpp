// GBNF text <-> Grammar: the parser (llama.cpp's grammar syntax) and the printer.
#include <algorithm>
#include <cstdio>

#include "engine/error.h"
#include "engine/grammar.h"
#include "engine/unicode.h"

namespace llm {

namespace {

class GbnfParser {
 public:
  GbnfParser(std::string_view src, Grammar& g) : s_(src), g_(g) {}

  void parse() {
    skip(true);
    while (pos_ < s_.size()) {
      std::string name = parse_name();
      skip(false);
      if (s_.substr(pos_, 3) != "::=") fail("expected '::=' after rule name '" + name + "'");
      pos_ += 3;
      Expr body = parse_alternatives(0);
      uint32_t r = rule_id(name);
      if (g_.defined(r)) fail("rule '" + name + "' is defined twice");
      g_.define(r, std::move(body));
      skip(true);
    }
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    int line = 1 + static_cast<int>(std::count(s_.begin(), s_.begin() + pos_, '\n'));
    throw Error("grammar line " + std::to_string(line) + ": " + what);
  }

  uint32_t rule_id(const std::string& name) {
    int r = g_.find(name);
    return r >= 0 ? static_cast<uint32_t>(r) : g_.add_rule(name);
  }

  // Skips blanks and comments; newlines only when `newlines` (inside parentheses, or
  // between rules).
  void skip(bool newlines) {
    while (pos_ < s_.size()) {
      char c = s_[pos_];
      if (c == '#') {
        while (pos_ < s_.size() && s_[pos_] != '\n') ++pos_;
      } else if (c == ' ' || c == '\t' || c == '\r' || (newlines && c == '\n')) {
        ++pos_;
      } else {
        break;
      }
    }
  }

  static bool name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
  }

  std::string parse_name() {
    size_t b = pos_;
    while (pos_ < s_.size() && name_char(s_[pos_])) ++pos_;
    if (b == pos_) fail("expected a rule name");
    return std::string(s_.substr(b, pos_ - b));
  }

  // True when a new rule (`name ::=`) starts at pos_.
  bool at_rule_start() const {
    size_t p = pos_;
    while (p < s_.size() && name_char(s_[p])) ++p;
    if (p == pos_) return false;
    while (p < s_.size() && (s_[p] == ' ' || s_[p] == '\t')) ++p;
    return s_.substr(p, 3) == "::=";
  }

  uint32_t parse_hex(int n) {
    uint32_t v = 0;
    for (int i = 0; i < n; ++i) {
      if (pos_ >= s_.size()) fail("truncated escape");
      char c = s_[pos_++];
      const int d = hex_digit_value(c);
      if (d < 0) fail("bad hex digit in escape");
      v = v * 16 + static_cast<uint32_t>(d);
    }
    return v;
  }

  // One code point of a literal or class, escapes resolved.
  uint32_t parse_char() {
    if (pos_ >= s_.size()) fail("unexpected end of grammar");
    unsigned char c = static_cast<unsigned char>(s_[pos_]);
    if (c == '\\') {
      ++pos_;
      if (pos_ >= s_.size()) fail("truncated escape");
      char e = s_[pos_++];
      switch (e) {
        case 'n':
          return '\n';
        case 't':
          return '\t';
        case 'r':
          return '\r';
        case 'x':
          return parse_hex(2);
        case 'u':
          return parse_hex(4);
        case 'U':
          return parse_hex(8);
        case '\\':
        case '"':
        case '[':
        case ']':
        case '-':
        case '^':
          return static_cast<uint8_t>(e);
        default:
          fail(std::string("unknown escape \\") + e);
      }
    }
    // A UTF-8 sequence: decode it so classes see whole code points.
    int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || pos_ + n > s_.size()) fail("invalid UTF-8 in grammar");
    uint32_t cp = n == 1 ? c : (c & (0x7F >> n));
    for (int i = 1; i < n; ++i) cp = (cp << 6) | (static_cast<unsigned char>(s_[pos_ + i]) & 0x3F);
    pos_ += n;
    return cp;
  }

  Expr parse_alternatives(int depth) {
    std::vector<Expr> alts;
    alts.push_back(parse_sequence(depth));
    for (;;) {
      // At top level an alternative may continue on the next line when it starts with '|'.
      size_t save = pos_;
      skip(true);
      if (pos_ < s_.size() && s_[pos_] == '|') {
        ++pos_;
        alts.push_back(parse_sequence(depth));
      } else {
        pos_ = save;
        break;
      }
    }
    return alt(std::move(alts));
  }

  Expr parse_sequence(int depth) {
    std::vector<Expr> items;
    for (;;) {
      skip(depth > 0);
      if (pos_ >= s_.size()) break;
      char c = s_[pos_];
      if (c == '|' || c == ')' || c == '\n') break;
      if (depth == 0 && at_rule_start()) break;
      Expr e;
      if (c == '"') {
        ++pos_;
        std::string text;
        while (pos_ < s_.size() && s_[pos_] != '"') utf8_append(text, parse_char());
        if (pos_ >= s_.size()) fail("unterminated string literal");
        ++pos_;
        e = lit(text);
      } else if (c == '[') {
        ++pos_;
        bool neg = pos_ < s_.size() && s_[pos_] == '^';
        if (neg) ++pos_;
        std::vector<CharRange> ranges;
        while (pos_ < s_.size() && s_[pos_] != ']') {
          uint32_t lo = parse_char(), hi = lo;
          if (pos_ + 1 < s_.size() && s_[pos_] == '-' && s_[pos_ + 1] != ']') {
            ++pos_;
            hi = parse_char();
            if (hi < lo) fail("reversed range in character class");
          }
          ranges.push_back({lo, hi});
        }
        if (pos_ >= s_.size()) fail("unterminated character class");
        ++pos_;
        e = chars(std::move(ranges), neg);
      } else if (c == '(') {
        ++pos_;
        e = parse_alternatives(depth + 1);
        skip(true);
        if (pos_ >= s_.size() || s_[pos_] != ')') fail("expected ')'");
        ++pos_;
      } else if (c == '.') {
        ++pos_;
        e = any_char();
      } else if (name_char(c)) {
        e = ref(rule_id(parse_name()));
      } else {
        fail(std::string("unexpected character '") + c + "'");
      }
      items.push_back(parse_postfix(std::move(e)));
    }
    return seq(std::move(items));
  }

  Expr parse_postfix(Expr e) {
    for (;;) {
      if (pos_ >= s_.size()) return e;
      char c = s_[pos_];
      if (c == '*') {
        ++pos_;
        e = star(std::move(e));
      } else if (c == '+') {
        ++pos_;
        e = plus(std::move(e));
      } else if (c == '?') {
        ++pos_;
        e = opt(std::move(e));
      } else if (c == '{') {
        ++pos_;
        uint32_t lo = parse_int(), hi = lo;
        if (pos_ < s_.size() && s_[pos_] == ',') {
          ++pos_;
          hi = (pos_ < s_.size() && s_[pos_] == '}') ? kUnbounded : parse_int();
        }
        if (pos_ >= s_.size() || s_[pos_] != '}') fail("expected '}' after repetition count");
        ++pos_;
        if (hi < lo) fail("repetition {m,n} with n < m");
        e = repeat(std::move(e), lo, hi);
      } else {
        return e;
      }
    }
  }

  uint32_t parse_int() {
    size_t b = pos_;
    uint64_t v = 0;
    while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9' && v < 1'000'000'000) {
      v = v * 10 + static_cast<uint64_t>(s_[pos_++] - '0');
    }
    if (b == pos_) fail("expected a number in {m,n}");
    if (v >= kUnbounded) fail("repetition count too large");
    return static_cast<uint32_t>(v);
  }

  std::string_view s_;
  Grammar& g_;
  size_t pos_ = 0;
};

void print_char(std::string& out, uint32_t cp, bool in_class) {
  if (cp == '"' || cp == '\\' || (in_class && (cp == ']' || cp == '-' || cp == '^'))) {
    out += '\\';
    out += static_cast<char>(cp);
  } else if (cp == '\n') {
    out += "\\n";
  } else if (cp == '\t') {
    out += "\\t";
  } else if (cp == '\r') {
    out += "\\r";
  } else if (cp < 0x20 || cp == 0x7F || (cp >= 0xD800 && cp <= 0xDFFF)) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "\\x%02X", cp);
    out += cp > 0xFF ? "\\u" + std::string(buf + 2) : std::string(buf);
  } else {
    utf8_append(out, cp);
  }
}

void print_expr(std::string& out, const Expr& e, const Grammar& g, bool nested) {
  switch (e.kind) {
    case Expr::Kind::Literal: {
      out += '"';
      for (size_t i = 0; i < e.text.size();) {
        unsigned char c = static_cast<unsigned char>(e.text[i]);
        int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (n > 1 && i + n <= e.text.size()) {
          out.append(e.text, i, n);  // copied as is; invalid bytes become \x escapes below
          i += n;
        } else {
          print_char(out, c, false);
          ++i;
        }
      }
      out += '"';
      break;
    }
    case Expr::Kind::Chars:
      out += '[';
      for (const auto& r : e.ranges) {
        print_char(out, r.lo, true);
        if (r.hi != r.lo) {
          out += '-';
          print_char(out, r.hi, true);
        }
      }
      out += ']';
      break;
    case Expr::Kind::Ref:
      out += g.name(e.rule);
      break;
    case Expr::Kind::Seq:
      if (e.items.empty()) {
        out += "\"\"";
        break;
      }
      if (nested) out += '(';
      for (size_t i = 0; i < e.items.size(); ++i) {
        if (i) out += ' ';
        print_expr(out, e.items[i], g, true);
      }
      if (nested) out += ')';
      break;
    case Expr::Kind::Alt:
      if (nested) out += '(';
      for (size_t i = 0; i < e.items.size(); ++i) {
        if (i) out += " | ";
        print_expr(out, e.items[i], g, true);
      }
      if (nested) out += ')';
      break;
    case Expr::Kind::Repeat:
      print_expr(out, e.items[0], g, true);
      if (e.min == 0 && e.max == 1) {
        out += '?';
      } else if (e.min == 0 && e.max == kUnbounded) {
        out += '*';
      } else if (e.min == 1 && e.max == kUnbounded) {
        out += '+';
      } else {
        out += '{' + std::to_string(e.min);
        if (e.max != e.min) out += ',' + (e.max == kUnbounded ? "" : std::to_string(e.max));
        out += '}';
      }
      break;
  }
}

}  // namespace

Grammar Grammar::parse(std::string_view gbnf, std::string_view root) {
  Grammar g;
  GbnfParser(gbnf, g).parse();
  for (uint32_t r = 0; r < g.n_rules(); ++r) {
    if (!g.defined(r)) throw Error("grammar: rule '" + g.name(r) + "' is used but not defined");
  }
  int r = g.find(root);
  if (r < 0) throw Error("grammar: no rule named '" + std::string(root) + "'");
  g.set_root(static_cast<uint32_t>(r));
  return g;
}

std::string Grammar::to_gbnf() const {
  std::string out;
  for (uint32_t r = 0; r < n_rules(); ++r) {
    out += names_[r] + " ::= ";
    print_expr(out, bodies_[r], *this, false);
    out += '\n';
  }
  return out;
}

}  // namespace llm
