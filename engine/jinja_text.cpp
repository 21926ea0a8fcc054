#include "engine/jinja_text.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iterator>

#include "engine/unicode.h"

namespace llm::jinja {

char32_t utf8_next(std::string_view s, size_t& i) {
  auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) {
    ++i;
    return b0;
  }
  int n = b0 >= 0xF0 ? 3 : b0 >= 0xE0 ? 2 : b0 >= 0xC0 ? 1 : -1;
  if (b0 >= 0xF5) n = -1;
  char32_t cp = n == 3 ? (b0 & 0x07) : n == 2 ? (b0 & 0x0F) : (b0 & 0x1F);
  if (n > 0 && i + n < s.size()) {
    bool ok = true;
    for (int k = 1; k <= n; ++k) {
      auto b = static_cast<unsigned char>(s[i + k]);
      if ((b & 0xC0) != 0x80) {
        ok = false;
        break;
      }
      cp = (cp << 6) | (b & 0x3F);
    }
    // Reject overlong forms, surrogates and values above U+10FFFF.
    static const char32_t kMin[4] = {0, 0x80, 0x800, 0x10000};
    if (ok && cp >= kMin[n] && cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF)) {
      i += n + 1;
      return cp;
    }
  }
  ++i;
  return kRawByteBase + b0;
}

void utf8_append(std::string& out, char32_t cp) {
  if (cp >= kRawByteBase)
    out.push_back(static_cast<char>(cp - kRawByteBase));
  else
    llm::utf8_append(out, static_cast<uint32_t>(cp));
}

std::u32string to_u32(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) out.push_back(utf8_next(s, i));
  return out;
}

std::string to_utf8(std::u32string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t c : s) utf8_append(out, c);
  return out;
}

size_t utf8_length(std::string_view s) {
  size_t n = 0;
  bool ascii = true;
  for (char c : s) ascii &= static_cast<unsigned char>(c) < 0x80;
  if (ascii) return s.size();
  for (size_t i = 0; i < s.size(); ++n) utf8_next(s, i);
  return n;
}

bool is_py_space(char32_t c) {
  if (c <= 0x20) return c == 0x20 || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F);
  if (c < 0x85) return false;
  return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
         c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

std::string py_strip(std::string_view s, const std::optional<std::string>& chars, bool left,
                     bool right) {
  std::u32string u = to_u32(s);
  std::u32string set = chars ? to_u32(*chars) : std::u32string();
  auto strip_me = [&](char32_t c) {
    return chars ? set.find(c) != std::u32string::npos : is_py_space(c);
  };
  size_t b = 0, e = u.size();
  if (left)
    while (b < e && strip_me(u[b])) ++b;
  if (right)
    while (e > b && strip_me(u[e - 1])) --e;
  return to_utf8(std::u32string_view(u).substr(b, e - b));
}

std::vector<std::string> py_split(std::string_view s, const std::optional<std::string>& sep,
                                  int64_t maxsplit) {
  std::vector<std::string> out;
  if (sep) {
    size_t pos = 0;
    while (maxsplit < 0 || static_cast<int64_t>(out.size()) < maxsplit) {
      size_t f = s.find(*sep, pos);
      if (f == std::string_view::npos) break;
      out.emplace_back(s.substr(pos, f - pos));
      pos = f + sep->size();
    }
    out.emplace_back(s.substr(pos));
    return out;
  }
  std::u32string u = to_u32(s);
  size_t i = 0, n = u.size();
  while (true) {
    while (i < n && is_py_space(u[i])) ++i;
    if (i == n) break;
    if (maxsplit >= 0 && static_cast<int64_t>(out.size()) == maxsplit) {
      size_t e = n;
      while (e > i && is_py_space(u[e - 1])) --e;
      out.push_back(to_utf8(std::u32string_view(u).substr(i, e - i)));
      break;
    }
    size_t j = i;
    while (j < n && !is_py_space(u[j])) ++j;
    out.push_back(to_utf8(std::u32string_view(u).substr(i, j - i)));
    i = j;
  }
  return out;
}

std::vector<std::string> py_rsplit(std::string_view s, const std::optional<std::string>& sep,
                                   int64_t maxsplit) {
  std::vector<std::string> out;
  if (sep) {
    size_t end = s.size();
    while (maxsplit < 0 || static_cast<int64_t>(out.size()) < maxsplit) {
      if (end < sep->size()) break;
      size_t f = s.rfind(*sep, end - sep->size());
      if (f == std::string_view::npos) break;
      out.emplace_back(s.substr(f + sep->size(), end - f - sep->size()));
      end = f;
    }
    out.emplace_back(s.substr(0, end));
  } else {
    std::u32string u = to_u32(s);
    size_t e = u.size();
    while (true) {
      while (e > 0 && is_py_space(u[e - 1])) --e;
      if (e == 0) break;
      if (maxsplit >= 0 && static_cast<int64_t>(out.size()) == maxsplit) {
        size_t b = 0;
        while (b < e && is_py_space(u[b])) ++b;
        out.push_back(to_utf8(std::u32string_view(u).substr(b, e - b)));
        break;
      }
      size_t b = e;
      while (b > 0 && !is_py_space(u[b - 1])) --b;
      out.push_back(to_utf8(std::u32string_view(u).substr(b, e - b)));
      e = b;
    }
  }
  return {out.rbegin(), out.rend()};
}

std::vector<std::string> py_splitlines(std::string_view s) {
  std::vector<std::string> out;
  std::u32string u = to_u32(s);
  size_t start = 0, i = 0;
  while (i < u.size()) {
    char32_t c = u[i];
    bool brk = c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || c == 0x1C || c == 0x1D ||
               c == 0x1E || c == 0x85 || c == 0x2028 || c == 0x2029;
    if (!brk) {
      ++i;
      continue;
    }
    out.push_back(to_utf8(std::u32string_view(u).substr(start, i - start)));
    i += (c == '\r' && i + 1 < u.size() && u[i + 1] == '\n') ? 2 : 1;
    start = i;
  }
  if (start < u.size()) out.push_back(to_utf8(std::u32string_view(u).substr(start)));
  return out;
}

std::string py_replace(std::string_view s, std::string_view old, std::string_view repl,
                       int64_t count) {
  std::string out;
  if (old.empty()) {
    // Python inserts `repl` before every code point and at the end.
    std::u32string u = to_u32(s);
    int64_t done = 0;
    for (char32_t c : u) {
      if (count < 0 || done < count) {
        out += repl;
        ++done;
      }
      utf8_append(out, c);
    }
    if (count < 0 || done < count) out += repl;
    return out;
  }
  size_t pos = 0;
  int64_t done = 0;
  while (count < 0 || done < count) {
    size_t f = s.find(old, pos);
    if (f == std::string_view::npos) break;
    out.append(s.substr(pos, f - pos));
    out.append(repl);
    pos = f + old.size();
    ++done;
  }
  out.append(s.substr(pos));
  return out;
}

namespace {

struct CaseRun {  // code points first, first+stride, ... last map to cp + delta
  char32_t first, last;
  int32_t delta, stride;
};
struct CaseSpecial {  // a mapping to several code points
  char32_t cp;
  const char* utf8;
};
struct CpRange {
  char32_t first, last;
};
#include "engine/jinja_unicode.inc"

template <size_t N>
const CaseSpecial* find_special(const CaseSpecial (&table)[N], char32_t c) {
  auto it = std::lower_bound(std::begin(table), std::end(table), c,
                             [](const CaseSpecial& s, char32_t v) { return s.cp < v; });
  return it != std::end(table) && it->cp == c ? it : nullptr;
}

template <size_t N>
char32_t map_runs(const CaseRun (&runs)[N], char32_t c) {
  // Runs are sorted by `first`; strided runs may interleave with a few neighbours.
  auto it = std::upper_bound(std::begin(runs), std::end(runs), c,
                             [](char32_t v, const CaseRun& r) { return v < r.first; });
  for (int k = 0; k < 8 && it != std::begin(runs); ++k) {
    --it;
    if (c <= it->last && (c - it->first) % it->stride == 0)
      return static_cast<char32_t>(static_cast<int64_t>(c) + it->delta);
  }
  return c;
}

template <size_t N>
bool in_ranges(const CpRange (&ranges)[N], char32_t c) {
  auto it = std::upper_bound(std::begin(ranges), std::end(ranges), c,
                             [](char32_t v, const CpRange& r) { return v < r.first; });
  return it != std::begin(ranges) && c <= std::prev(it)->last;
}

bool is_lower_cp(char32_t c) {
  return c < 0x80 ? (c >= 'a' && c <= 'z') : in_ranges(kLowercase, c);
}
bool is_upper_cp(char32_t c) {
  return c < 0x80 ? (c >= 'A' && c <= 'Z') : in_ranges(kUppercase, c);
}
bool is_title_cp(char32_t c) {
  return c >= 0x80 && in_ranges(kTitlecase, c);
}
bool is_cased(char32_t c) {
  return is_lower_cp(c) || is_upper_cp(c) || is_title_cp(c);
}
bool is_case_ignorable(char32_t c) {
  return in_ranges(kCaseIgnorable, c);
}

void append_upper(std::string& out, char32_t c) {
  if (c < 0x80) {
    out.push_back(static_cast<char>(c >= 'a' && c <= 'z' ? c - 32 : c));
  } else if (const CaseSpecial* sp = find_special(kUpperSpecial, c)) {
    out += sp->utf8;
  } else {
    utf8_append(out, map_runs(kUpperRuns, c));
  }
}

void append_lower(std::string& out, char32_t c) {
  if (c < 0x80) {
    out.push_back(static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c));
  } else if (const CaseSpecial* sp = find_special(kLowerSpecial, c)) {
    out += sp->utf8;
  } else {
    utf8_append(out, map_runs(kLowerRuns, c));
  }
}

void append_title(std::string& out, char32_t c) {
  if (const CaseSpecial* sp = find_special(kTitleSpecial, c))
    out += sp->utf8;
  else
    append_upper(out, c);
}

// Python's final-sigma rule for str.lower(): U+03A3 becomes U+03C2 after a cased letter
// when no cased letter follows (case-ignorable characters skipped on both sides).
bool final_sigma(const std::u32string& u, size_t i) {
  size_t j = i;
  while (j > 0 && is_case_ignorable(u[j - 1])) --j;
  if (j == 0 || !is_cased(u[j - 1])) return false;
  size_t k = i + 1;
  while (k < u.size() && is_case_ignorable(u[k])) ++k;
  return k == u.size() || !is_cased(u[k]);
}

// lower() of u[i] in its context (the final-sigma rule needs the neighbours).
void append_lower_at(std::string& out, const std::u32string& u, size_t i) {
  if (u[i] == 0x3A3)
    utf8_append(out, final_sigma(u, i) ? 0x3C2 : 0x3C3);
  else
    append_lower(out, u[i]);
}

bool is_ascii(std::string_view s) {
  for (char c : s)
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  return true;
}

}  // namespace

std::string py_upper(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) append_upper(out, utf8_next(s, i));
  return out;
}

std::string py_lower(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  if (is_ascii(s)) {
    for (char c : s) out.push_back(static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c));
    return out;
  }
  std::u32string u = to_u32(s);
  for (size_t i = 0; i < u.size(); ++i) {
    append_lower_at(out, u, i);
  }
  return out;
}

std::string py_title(std::string_view s) {
  std::string out;
  std::u32string u = to_u32(s);
  bool prev_cased = false;
  for (size_t i = 0; i < u.size(); ++i) {
    char32_t c = u[i];
    if (!prev_cased)
      append_title(out, c);
    else
      append_lower_at(out, u, i);
    prev_cased = is_cased(c);
  }
  return out;
}

std::string py_capitalize(std::string_view s) {
  std::string out;
  std::u32string u = to_u32(s);
  for (size_t i = 0; i < u.size(); ++i) {
    if (i == 0)
      append_title(out, u[i]);
    else
      append_lower_at(out, u, i);
  }
  return out;
}

bool py_is_upper(std::string_view s) {
  bool cased = false;
  for (size_t i = 0; i < s.size();) {
    char32_t c = utf8_next(s, i);
    if (is_lower_cp(c) || is_title_cp(c)) return false;
    cased |= is_upper_cp(c);
  }
  return cased;
}

bool py_is_lower(std::string_view s) {
  bool cased = false;
  for (size_t i = 0; i < s.size();) {
    char32_t c = utf8_next(s, i);
    if (is_upper_cp(c) || is_title_cp(c)) return false;
    cased |= is_lower_cp(c);
  }
  return cased;
}

namespace {

// Py_UNICODE_ISPRINTABLE (str.isprintable), which repr() uses to decide what to escape.
bool is_printable(char32_t c) {
  if (c < 0x7F) return c >= 0x20;
  if (c >= kRawByteBase) return false;
  return !in_ranges(kNonPrintable, c);
}

void append_hex(std::string& out, const char* prefix, uint32_t v, int digits) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%s%0*x", prefix, digits, v);
  out += buf;
}

}  // namespace

std::string py_repr_string(std::string_view s) {
  bool has_single = s.find('\'') != std::string_view::npos;
  bool has_double = s.find('"') != std::string_view::npos;
  char quote = (has_single && !has_double) ? '"' : '\'';
  std::string out(1, quote);
  for (size_t i = 0; i < s.size();) {
    char32_t c = utf8_next(s, i);
    if (c == static_cast<char32_t>(quote) || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (is_printable(c)) {
      utf8_append(out, c);
    } else if (c >= kRawByteBase) {
      append_hex(out, "\\x", c - kRawByteBase, 2);
    } else if (c < 0x100) {
      append_hex(out, "\\x", c, 2);
    } else if (c < 0x10000) {
      append_hex(out, "\\u", c, 4);
    } else {
      append_hex(out, "\\U", c, 8);
    }
  }
  out.push_back(quote);
  return out;
}

void json_escape_string(std::string& out, std::string_view s, bool ensure_ascii) {
  out.push_back('"');
  for (size_t i = 0; i < s.size();) {
    auto b = static_cast<unsigned char>(s[i]);
    if (b >= 0x20 && b < 0x7F && b != '"' && b != '\\') {
      out.push_back(static_cast<char>(b));
      ++i;
      continue;
    }
    char32_t c = utf8_next(s, i);
    switch (c) {
      case '"':
        out += "\\\"";
        continue;
      case '\\':
        out += "\\\\";
        continue;
      case '\n':
        out += "\\n";
        continue;
      case '\r':
        out += "\\r";
        continue;
      case '\t':
        out += "\\t";
        continue;
      case '\b':
        out += "\\b";
        continue;
      case '\f':
        out += "\\f";
        continue;
      default:
        break;
    }
    if (c < 0x20 || (ensure_ascii && c == 0x7F)) {
      append_hex(out, "\\u", c, 4);
    } else if (!ensure_ascii || c >= kRawByteBase) {
      utf8_append(out, c);
    } else if (c < 0x10000) {
      append_hex(out, "\\u", c, 4);
    } else {
      char32_t v = c - 0x10000;
      append_hex(out, "\\u", 0xD800 | (v >> 10), 4);
      append_hex(out, "\\u", 0xDC00 | (v & 0x3FF), 4);
    }
  }
  out.push_back('"');
}

std::string html_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '\'':
        out += "&#39;";
        break;
      case '"':
        out += "&#34;";
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

std::string py_float_repr(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  if (v == 0) return std::signbit(v) ? "-0.0" : "0.0";
  // Shortest round-trip digits in scientific form: d[.ddd]e±XX.
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
  std::string sci(buf, res.ptr);
  bool neg = sci[0] == '-';
  if (neg) sci.erase(0, 1);
  size_t epos = sci.find('e');
  int exp10 = std::atoi(sci.c_str() + epos + 1);
  std::string digits;
  for (size_t i = 0; i < epos; ++i)
    if (sci[i] != '.') digits.push_back(sci[i]);
  int decpt = exp10 + 1;  // value = 0.DIGITS * 10^decpt
  std::string out = neg ? "-" : "";
  if (decpt > -4 && decpt <= 16) {
    if (decpt <= 0) {
      out += "0." + std::string(-decpt, '0') + digits;
    } else if (static_cast<size_t>(decpt) >= digits.size()) {
      out += digits + std::string(decpt - digits.size(), '0') + ".0";
    } else {
      out += digits.substr(0, decpt) + "." + digits.substr(decpt);
    }
  } else {
    out += digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    char eb[16];
    std::snprintf(eb, sizeof eb, "e%c%02d", exp10 < 0 ? '-' : '+', std::abs(exp10));
    out += eb;
  }
  return out;
}

}  // namespace llm::jinja
