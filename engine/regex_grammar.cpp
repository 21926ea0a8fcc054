#include "engine/regex_grammar.h"

#include <cstdio>

#include "engine/error.h"
#include "engine/unicode.h"

namespace llm {

namespace {

const std::vector<CharRange> kDigit = {{'0', '9'}};
const std::vector<CharRange> kWord = {{'0', '9'}, {'A', 'Z'}, {'_', '_'}, {'a', 'z'}};
// ECMAScript WhiteSpace and LineTerminator (ECMA-262 "CharacterClassEscape :: s").
const std::vector<CharRange> kSpace = {
    {0x09, 0x0D},     {0x20, 0x20},     {0xA0, 0xA0},     {0x1680, 0x1680}, {0x2000, 0x200A},
    {0x2028, 0x2029}, {0x202F, 0x202F}, {0x205F, 0x205F}, {0x3000, 0x3000}, {0xFEFF, 0xFEFF}};
const std::vector<CharRange> kLineTerm = {{'\n', '\n'}, {'\r', '\r'}, {0x2028, 0x2029}};

class RegexParser {
 public:
  explicit RegexParser(std::string_view p) : p_(p) {}

  Expr parse() {
    std::vector<Expr> alts;
    for (;;) {
      bool start = eat('^');
      Expr body = parse_sequence(true);
      bool end = eat('$');
      if (pos_ < p_.size() && p_[pos_] != '|') {
        fail(p_[pos_] == ')' ? "unbalanced ')'" : "'$' before the end of an alternative");
      }
      std::vector<Expr> parts;
      if (!start) parts.push_back(star(any_char()));
      parts.push_back(std::move(body));
      if (!end) parts.push_back(star(any_char()));
      alts.push_back(seq(std::move(parts)));
      if (!eat('|')) break;
    }
    return alt(std::move(alts));
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw Error("pattern \"" + std::string(p_) + "\": " + what);
  }
  [[noreturn]] void unsupported(const std::string& what) const { fail(what + " is not supported"); }
  bool eat(char c) {
    if (pos_ < p_.size() && p_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }

  Expr parse_alternatives() {
    std::vector<Expr> alts{parse_sequence(false)};
    while (eat('|')) alts.push_back(parse_sequence(false));
    return alt(std::move(alts));
  }

  // top: the '$' that ends a top-level alternative stops the sequence.
  Expr parse_sequence(bool top) {
    std::vector<Expr> items;
    while (pos_ < p_.size()) {
      char c = p_[pos_];
      if (c == '|' || c == ')') break;
      if (c == '$') {
        if (top && (pos_ + 1 == p_.size() || p_[pos_ + 1] == '|')) break;
        unsupported("'$' inside the pattern (only at the end)");
      }
      if (c == '^') unsupported("'^' inside the pattern (only at the start)");
      Expr atom = parse_atom();
      items.push_back(parse_quantifier(std::move(atom)));
    }
    return seq(std::move(items));
  }

  Expr parse_atom() {
    char c = p_[pos_++];
    switch (c) {
      case '.':
        return chars(kLineTerm, true);
      case '(': {
        if (eat('?')) {
          if (eat(':')) {
          } else if (eat('<')) {
            if (pos_ < p_.size() && (p_[pos_] == '=' || p_[pos_] == '!')) {
              unsupported("lookbehind (?<= / (?<!");
            }
            while (pos_ < p_.size() && p_[pos_] != '>') ++pos_;  // a named group
            if (!eat('>')) fail("unterminated group name");
          } else if (pos_ < p_.size() && (p_[pos_] == '=' || p_[pos_] == '!')) {
            unsupported("lookahead (?= / (?!");
          } else {
            unsupported("the group modifier (?" + std::string(p_.substr(pos_, 1)));
          }
        }
        Expr e = parse_alternatives();
        if (!eat(')')) fail("missing ')'");
        return e;
      }
      case '[':
        return parse_class();
      case '\\':
        return parse_escape(false);
      case '*':
      case '+':
      case '?':
        fail(std::string("nothing to repeat before '") + c + "'");
      case '{':
        if (pos_ < p_.size() && p_[pos_] >= '0' && p_[pos_] <= '9')
          fail("nothing to repeat before '{'");
        return lit("{");
      default: {
        --pos_;
        std::string s;
        utf8_append(s, next_code_point());
        return lit(s);
      }
    }
  }

  uint32_t next_code_point() {
    unsigned char c = static_cast<unsigned char>(p_[pos_]);
    int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || pos_ + n > p_.size()) fail("invalid UTF-8");
    uint32_t cp = n == 1 ? c : (c & (0x7F >> n));
    for (int i = 1; i < n; ++i) cp = (cp << 6) | (static_cast<unsigned char>(p_[pos_ + i]) & 0x3F);
    pos_ += n;
    return cp;
  }

  uint32_t hex(int n) {
    uint32_t v = 0;
    for (int i = 0; i < n; ++i) {
      if (pos_ >= p_.size()) fail("truncated escape");
      char c = p_[pos_++];
      const int d = hex_digit_value(c);
      if (d < 0) fail("bad hex digit in escape");
      v = v * 16 + static_cast<uint32_t>(d);
    }
    return v;
  }

  // After '\': a class escape (\d ...) as Chars, or one code point as a literal / range.
  // in_class: \b means backspace there.
  Expr parse_escape(bool in_class) {
    if (pos_ >= p_.size()) fail("trailing '\\'");
    char c = p_[pos_++];
    switch (c) {
      case 'd':
        return chars(kDigit);
      case 'D':
        return chars(kDigit, true);
      case 'w':
        return chars(kWord);
      case 'W':
        return chars(kWord, true);
      case 's':
        return chars(kSpace);
      case 'S':
        return chars(kSpace, true);
      case 'b':
        if (in_class) return single(0x08);
        unsupported("the word boundary \\b");
      case 'B':
        unsupported("the word boundary \\B");
      case 'p':
        return chars(property_ranges(), false);
      case 'P':
        return chars(property_ranges(), true);
      case 'k':
        unsupported("the backreference \\k<name>");
      case 'c':
        unsupported("the control escape \\c");
      case 't':
        return single('\t');
      case 'n':
        return single('\n');
      case 'r':
        return single('\r');
      case 'v':
        return single('\v');
      case 'f':
        return single('\f');
      case '0':
        if (pos_ < p_.size() && p_[pos_] >= '0' && p_[pos_] <= '9') unsupported("octal escapes");
        return single(0);
      case 'x':
        return single(hex(2));
      case 'u': {
        if (eat('{')) {
          uint32_t v = 0;
          size_t b = pos_;
          while (pos_ < p_.size() && p_[pos_] != '}' && pos_ - b < 6) v = v * 16 + hex(1);
          if (!eat('}') || b == pos_ || v > kMaxCodePoint) fail("bad \\u{...} escape");
          return single(v);
        }
        uint32_t v = hex(4);
        // A surrogate pair written as two escapes is one code point.
        if (v >= 0xD800 && v <= 0xDBFF && p_.substr(pos_, 2) == "\\u") {
          size_t save = pos_;
          pos_ += 2;
          uint32_t lo = hex(4);
          if (lo >= 0xDC00 && lo <= 0xDFFF)
            return single(0x10000 + ((v - 0xD800) << 10) + (lo - 0xDC00));
          pos_ = save;
        }
        return single(v);
      }
      default:
        if (c >= '1' && c <= '9') unsupported("the backreference \\" + std::string(1, c));
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
          unsupported("the escape \\" + std::string(1, c));
        }
        --pos_;
        return single(next_code_point());
    }
  }

  static Expr single(uint32_t cp) { return chars({{cp, cp}}); }

  // After \p or \P: {X} with X a general category (L, Lu, N, Nd ...), optionally written
  // gc=X or General_Category=X; the code point ranges of that category.
  std::vector<CharRange> property_ranges() {
    if (!eat('{')) fail("\\p needs {...}");
    size_t close = p_.find('}', pos_);
    if (close == std::string_view::npos) fail("unterminated \\p{...}");
    std::string name(p_.substr(pos_, close - pos_));
    pos_ = close + 1;
    for (const char* prefix : {"gc=", "General_Category="}) {
      if (name.rfind(prefix, 0) == 0) name = name.substr(std::string(prefix).size());
    }
    static const char* const kNames[] = {
        "Cn", "Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd", "Nl", "No", "Pc", "Pd", "Ps",
        "Pe", "Pi", "Pf", "Po", "Sm", "Sc", "Sk", "So", "Zs", "Zl", "Zp", "Cc", "Cf", "Cs", "Co"};
    uint32_t mask = 0;
    for (uint32_t c = 0; c < std::size(kNames); ++c) {
      if (name == kNames[c] || (name.size() == 1 && name[0] == kNames[c][0])) mask |= 1u << c;
    }
    if (mask == 0) unsupported("the property \\p{" + name + "} (only general categories)");
    std::vector<CharRange> out;
    for (size_t i = 0; i < unicode_data::kCategoryRunCount; ++i) {
      const CategoryRun& run = unicode_data::kCategoryRuns[i];
      uint32_t end = i + 1 < unicode_data::kCategoryRunCount
                         ? unicode_data::kCategoryRuns[i + 1].first - 1
                         : kMaxCodePoint;
      if (mask >> static_cast<uint32_t>(run.cat) & 1) out.push_back({run.first, end});
    }
    return out;
  }

  Expr parse_class() {
    bool neg = eat('^');
    std::vector<CharRange> ranges;
    // "[]" is the empty class in ECMAScript and "[^]" any character: ']' always closes.
    while (pos_ < p_.size() && p_[pos_] != ']') {
      std::vector<CharRange> lo = class_atom();
      if (lo.size() == 1 && lo[0].lo == lo[0].hi && p_.substr(pos_, 1) == "-" &&
          pos_ + 1 < p_.size() && p_[pos_ + 1] != ']') {
        ++pos_;
        std::vector<CharRange> hi = class_atom();
        if (hi.size() != 1 || hi[0].lo != hi[0].hi) fail("a class escape cannot end a range");
        if (hi[0].lo < lo[0].lo) fail("range out of order in character class");
        ranges.push_back({lo[0].lo, hi[0].lo});
      } else {
        ranges.insert(ranges.end(), lo.begin(), lo.end());
      }
    }
    if (!eat(']')) fail("missing ']'");
    return chars(std::move(ranges), neg);
  }

  std::vector<CharRange> class_atom() {
    if (eat('\\')) return parse_escape(true).ranges;
    uint32_t cp = next_code_point();
    return {{cp, cp}};
  }

  Expr parse_quantifier(Expr e) {
    for (;;) {
      if (pos_ >= p_.size()) return e;
      char c = p_[pos_];
      uint32_t lo, hi;
      if (c == '*') {
        lo = 0, hi = kUnbounded;
      } else if (c == '+') {
        lo = 1, hi = kUnbounded;
      } else if (c == '?') {
        lo = 0, hi = 1;
      } else if (c == '{' && pos_ + 1 < p_.size() && p_[pos_ + 1] >= '0' && p_[pos_ + 1] <= '9') {
        ++pos_;
        lo = hi = number();
        if (eat(',')) hi = (pos_ < p_.size() && p_[pos_] == '}') ? kUnbounded : number();
        if (pos_ >= p_.size() || p_[pos_] != '}') fail("bad {m,n} quantifier");
        if (hi < lo) fail("quantifier {m,n} with n < m");
      } else {
        return e;
      }
      ++pos_;
      eat('?');  // lazy: the same language
      if (pos_ < p_.size() && (p_[pos_] == '*' || p_[pos_] == '+' || p_[pos_] == '?')) {
        fail("nothing to repeat (two quantifiers in a row)");
      }
      e = repeat(std::move(e), lo, hi);
    }
  }

  uint32_t number() {
    uint64_t v = 0;
    size_t b = pos_;
    while (pos_ < p_.size() && p_[pos_] >= '0' && p_[pos_] <= '9') {
      v = v * 10 + static_cast<uint64_t>(p_[pos_++] - '0');
      if (v > 100000) fail("quantifier count too large (over 100000)");
    }
    if (b == pos_) fail("bad quantifier");
    return static_cast<uint32_t>(v);
  }

  std::string_view p_;
  size_t pos_ = 0;
};

// The one JSON spelling of a control character.
std::string control_escape(uint32_t cp) {
  switch (cp) {
    case '\b':
      return "\\b";
    case '\f':
      return "\\f";
    case '\n':
      return "\\n";
    case '\r':
      return "\\r";
    case '\t':
      return "\\t";
    default: {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", cp);
      return buf;
    }
  }
}

std::string json_escape_text(std::string_view text) {
  std::string out;
  for (char ch : text) {
    unsigned char c = static_cast<unsigned char>(ch);
    if (c == '"') {
      out += "\\\"";
    } else if (c == '\\') {
      out += "\\\\";
    } else if (c < 0x20) {
      out += control_escape(c);
    } else {
      out += ch;
    }
  }
  return out;
}

}  // namespace

Expr regex_to_expr(std::string_view pattern) {
  return RegexParser(pattern).parse();
}

Expr json_escape_expr(const Expr& e) {
  switch (e.kind) {
    case Expr::Kind::Literal:
      return lit(json_escape_text(e.text));
    case Expr::Kind::Chars: {
      std::vector<CharRange> raw;
      std::vector<Expr> alts;
      int n_controls = 0;
      for (const CharRange& r : e.ranges) {
        // Split around the characters JSON must escape: 0x00-0x1F, '"' and '\'.
        for (uint32_t c = r.lo; c <= std::min(r.hi, 0x1Fu); ++c) ++n_controls;
        for (const CharRange& safe :
             {CharRange{0x20, 0x21}, CharRange{0x23, 0x5B}, CharRange{0x5D, kMaxCodePoint}}) {
          uint32_t lo = std::max(r.lo, safe.lo), hi = std::min(r.hi, safe.hi);
          if (lo <= hi) raw.push_back({lo, hi});
        }
        if (r.lo <= '"' && r.hi >= '"') alts.push_back(lit("\\\""));
        if (r.lo <= '\\' && r.hi >= '\\') alts.push_back(lit("\\\\"));
      }
      if (n_controls == 32) {  // any control character, in either of its spellings
        alts.push_back(
            seq({lit("\\"), chars({{'b', 'b'}, {'f', 'f'}, {'n', 'n'}, {'r', 'r'}, {'t', 't'}})}));
        alts.push_back(
            seq({lit("\\u00"), chars({{'0', '1'}}), chars({{'0', '9'}, {'a', 'f'}, {'A', 'F'}})}));
      } else {
        for (const CharRange& r : e.ranges) {
          for (uint32_t c = r.lo; c <= std::min(r.hi, 0x1Fu); ++c)
            alts.push_back(lit(control_escape(c)));
        }
      }
      if (!raw.empty()) alts.insert(alts.begin(), chars(std::move(raw)));
      if (alts.empty()) return chars({});  // the empty class matches nothing
      return alt(std::move(alts));
    }
    case Expr::Kind::Ref:
      return e;  // rules are built over JSON text already
    case Expr::Kind::Seq:
    case Expr::Kind::Alt:
    case Expr::Kind::Repeat: {
      Expr out = e;
      for (Expr& x : out.items) x = json_escape_expr(x);
      return out;
    }
  }
  return e;
}

}  // namespace llm
