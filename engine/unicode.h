// Unicode facts the tokenizers need: general categories (\p{L}, \p{N} ...), the
// White_Space property (\s), lenient UTF-8 decoding that matches llama.cpp, and the
// GPT-2 byte-level alphabet (bytes <-> printable code points).
//
// The category table is generated (engine/unicode_data.cpp, by
// scripts/gen_unicode_data.py from Python's unicodedata; the Unicode version is in
// unicode_data::kUnicodeVersion).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace llm {

// Unicode general categories. Cn (unassigned) is 0. The order is the generator's.
enum class UCat : uint8_t {
  Cn,
  Lu,
  Ll,
  Lt,
  Lm,
  Lo,
  Mn,
  Mc,
  Me,
  Nd,
  Nl,
  No,
  Pc,
  Pd,
  Ps,
  Pe,
  Pi,
  Pf,
  Po,
  Sm,
  Sc,
  Sk,
  So,
  Zs,
  Zl,
  Zp,
  Cc,
  Cf,
  Cs,
  Co,
};

constexpr uint32_t ucat_bit(UCat c) {
  return 1u << static_cast<unsigned>(c);
}
// Masks of the one-letter classes: \p{L}, \p{M}, \p{N}, \p{P}, \p{S}, \p{Z}, \p{C}.
constexpr uint32_t kCatL = ucat_bit(UCat::Lu) | ucat_bit(UCat::Ll) | ucat_bit(UCat::Lt) |
                           ucat_bit(UCat::Lm) | ucat_bit(UCat::Lo);
constexpr uint32_t kCatM = ucat_bit(UCat::Mn) | ucat_bit(UCat::Mc) | ucat_bit(UCat::Me);
constexpr uint32_t kCatN = ucat_bit(UCat::Nd) | ucat_bit(UCat::Nl) | ucat_bit(UCat::No);
constexpr uint32_t kCatP = ucat_bit(UCat::Pc) | ucat_bit(UCat::Pd) | ucat_bit(UCat::Ps) |
                           ucat_bit(UCat::Pe) | ucat_bit(UCat::Pi) | ucat_bit(UCat::Pf) |
                           ucat_bit(UCat::Po);
constexpr uint32_t kCatS =
    ucat_bit(UCat::Sm) | ucat_bit(UCat::Sc) | ucat_bit(UCat::Sk) | ucat_bit(UCat::So);
constexpr uint32_t kCatZ = ucat_bit(UCat::Zs) | ucat_bit(UCat::Zl) | ucat_bit(UCat::Zp);
constexpr uint32_t kCatC = ucat_bit(UCat::Cn) | ucat_bit(UCat::Cc) | ucat_bit(UCat::Cf) |
                           ucat_bit(UCat::Cs) | ucat_bit(UCat::Co);

struct CategoryRun {
  uint32_t first;  // first code point of the run
  UCat cat;
};

namespace unicode_data {
extern const char* const kUnicodeVersion;
extern const CategoryRun kCategoryRuns[];  // sorted by first; kCategoryRuns[0].first == 0
extern const size_t kCategoryRunCount;
extern const uint32_t kWhiteSpace[];  // sorted
extern const size_t kWhiteSpaceCount;
}  // namespace unicode_data

constexpr uint32_t kMaxCodepoint = 0x10FFFF;
constexpr uint32_t kReplacementChar = 0xFFFD;

// General category; code points above U+10FFFF count as Cn.
UCat unicode_category(uint32_t cp);
// The White_Space property (what \s matches in Python's `regex` and in Rust/Oniguruma).
bool unicode_is_whitespace(uint32_t cp);

// Length of the UTF-8 sequence a lead byte announces, from its high nibble only
// (continuation bytes count as 1), the way llama.cpp walks SPM text.
// The value of a hexadecimal digit, or -1.
inline int hex_digit_value(char c) {
  return (c >= '0' && c <= '9')   ? c - '0'
         : (c >= 'a' && c <= 'f') ? c - 'a' + 10
         : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                                  : -1;
}

inline size_t utf8_seq_len(uint8_t lead) {
  static constexpr uint8_t kLen[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return kLen[lead >> 4];
}

// Decodes one code point at s[*pos] and advances *pos. A byte that does not start a
// complete sequence (stray continuation, truncated tail, bad continuation) yields
// U+FFFD and advances by one byte, as llama.cpp's unicode_cpts_from_utf8 does (it
// does not reject overlong forms or surrogates either).
uint32_t utf8_decode_lenient(std::string_view s, size_t* pos);
std::vector<uint32_t> utf8_to_codepoints(std::string_view s);
void utf8_append(std::string& out, uint32_t cp);

// Strict check: length of the valid UTF-8 sequence at s[pos] (1..4), 0 when the bytes
// there are invalid, or -1 when they are a valid but incomplete prefix cut by the end.
int utf8_valid_prefix(std::string_view s, size_t pos);

// GPT-2 byte-level BPE alphabet: the printable bytes stand for themselves, the other
// 68 bytes map to U+0100.. in byte order (the space 0x20 becomes U+0120 'Ġ').
uint32_t byte_to_unicode(uint8_t b);
int unicode_to_byte(uint32_t cp);  // -1 when cp is not in the alphabet

}  // namespace llm
