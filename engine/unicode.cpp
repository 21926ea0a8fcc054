#include "engine/unicode.h"

#include <algorithm>

namespace llm {

UCat unicode_category(uint32_t cp) {
  using unicode_data::kCategoryRunCount;
  using unicode_data::kCategoryRuns;
  if (cp > kMaxCodepoint) return UCat::Cn;
  // The last run whose first code point is <= cp.
  const CategoryRun* end = kCategoryRuns + kCategoryRunCount;
  const CategoryRun* it = std::upper_bound(
      kCategoryRuns, end, cp, [](uint32_t v, const CategoryRun& r) { return v < r.first; });
  return (it - 1)->cat;
}

bool unicode_is_whitespace(uint32_t cp) {
  if (cp <= 0x20) return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D);
  if (cp < 0x85) return false;
  const uint32_t* end = unicode_data::kWhiteSpace + unicode_data::kWhiteSpaceCount;
  return std::binary_search(unicode_data::kWhiteSpace, end, cp);
}

uint32_t utf8_decode_lenient(std::string_view s, size_t* pos) {
  const size_t i = *pos;
  const auto b = [&](size_t k) { return static_cast<uint8_t>(s[i + k]); };
  const auto cont = [&](size_t k) { return i + k < s.size() && (b(k) & 0xC0) == 0x80; };
  const uint8_t b0 = b(0);
  uint32_t cp = kReplacementChar;
  size_t n = 1;
  if (b0 < 0x80) {
    cp = b0;
  } else if ((b0 & 0x40) == 0) {
    // stray continuation byte
  } else if ((b0 & 0x20) == 0) {
    if (cont(1)) cp = (uint32_t(b0 & 0x1F) << 6) | (b(1) & 0x3F), n = 2;
  } else if ((b0 & 0x10) == 0) {
    if (cont(1) && cont(2))
      cp = (uint32_t(b0 & 0x0F) << 12) | (uint32_t(b(1) & 0x3F) << 6) | (b(2) & 0x3F), n = 3;
  } else if ((b0 & 0x08) == 0) {
    if (cont(1) && cont(2) && cont(3)) {
      uint32_t v = (uint32_t(b0 & 0x07) << 18) | (uint32_t(b(1) & 0x3F) << 12) |
                   (uint32_t(b(2) & 0x3F) << 6) | (b(3) & 0x3F);
      // Above U+10FFFF cannot be re-encoded; treat the lead byte as invalid.
      if (v <= kMaxCodepoint) cp = v, n = 4;
    }
  }
  *pos = i + n;
  return cp;
}

std::vector<uint32_t> utf8_to_codepoints(std::string_view s) {
  std::vector<uint32_t> out;
  out.reserve(s.size());
  size_t pos = 0;
  while (pos < s.size()) out.push_back(utf8_decode_lenient(s, &pos));
  return out;
}

void utf8_append(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

int utf8_valid_prefix(std::string_view s, size_t pos) {
  const uint8_t b0 = static_cast<uint8_t>(s[pos]);
  if (b0 < 0x80) return 1;
  // RFC 3629 table 3-7: allowed ranges of the second byte depend on the lead byte.
  int n;
  uint8_t lo = 0x80, hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    n = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    n = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    n = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  for (int k = 1; k < n; ++k) {
    if (pos + k >= s.size()) return -1;
    const uint8_t c = static_cast<uint8_t>(s[pos + k]);
    const uint8_t l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
    if (c < l || c > h) return 0;
  }
  return n;
}

namespace {

constexpr bool byte_is_printable(int b) {
  return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
}

struct ByteAlphabet {
  uint16_t to_cp[256];     // byte -> code point
  int16_t to_byte[0x144];  // code point (< U+0144) -> byte, or -1
};

// The printable bytes stand for themselves; the others are numbered from U+0100.
constexpr ByteAlphabet make_byte_alphabet() {
  ByteAlphabet a{};
  for (int cp = 0; cp < 0x144; ++cp) a.to_byte[cp] = -1;
  int n = 0;
  for (int b = 0; b < 256; ++b) {
    int cp = byte_is_printable(b) ? b : 0x100 + n++;
    a.to_cp[b] = static_cast<uint16_t>(cp);
    a.to_byte[cp] = static_cast<int16_t>(b);
  }
  return a;
}

constexpr ByteAlphabet kByteAlphabet = make_byte_alphabet();

}  // namespace

uint32_t byte_to_unicode(uint8_t b) {
  return kByteAlphabet.to_cp[b];
}

int unicode_to_byte(uint32_t cp) {
  return cp < 0x144 ? kByteAlphabet.to_byte[cp] : -1;
}

}  // namespace llm
