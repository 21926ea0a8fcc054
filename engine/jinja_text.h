// Python `str` semantics over UTF-8 std::string, for the Jinja engine: code-point
// length/indexing, str.isspace()-style whitespace, case mapping, repr() and json.dumps()
// string escaping. Chat templates are rendered by Python in transformers, so a string
// operation here must give what the same Python `str` method gives.
//
// Invalid UTF-8 bytes are carried losslessly as code points 0x110000 + byte (outside
// Unicode), so that decoding and re-encoding any byte string is the identity.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace llm::jinja {

constexpr char32_t kRawByteBase = 0x110000;  // code point of an undecodable byte b: base + b

// Decodes one code point at s[i] and advances i (invalid bytes: one byte, kRawByteBase + b).
char32_t utf8_next(std::string_view s, size_t& i);
void utf8_append(std::string& out, char32_t cp);
std::u32string to_u32(std::string_view s);
std::string to_utf8(std::u32string_view s);
size_t utf8_length(std::string_view s);  // number of code points (Python len())

// str.isspace() for one code point (also what Python's re `\s` matches).
bool is_py_space(char32_t c);
// str.strip/lstrip/rstrip; chars == nullopt strips whitespace, else the given set.
std::string py_strip(std::string_view s, const std::optional<std::string>& chars, bool left,
                     bool right);
// str.split(sep, maxsplit): sep == nullopt splits on whitespace runs and drops empties.
std::vector<std::string> py_split(std::string_view s, const std::optional<std::string>& sep,
                                  int64_t maxsplit);
// str.rsplit(sep, maxsplit).
std::vector<std::string> py_rsplit(std::string_view s, const std::optional<std::string>& sep,
                                   int64_t maxsplit);
// str.splitlines(keepends=False).
std::vector<std::string> py_splitlines(std::string_view s);
// str.replace(old, new, count); count < 0 replaces all.
std::string py_replace(std::string_view s, std::string_view old, std::string_view repl,
                       int64_t count);

// Case mapping and case tests as Python's str does them: full Unicode mappings (ß -> SS),
// titlecase for title()/capitalize(), the final-sigma rule of lower(). The tables come from
// Python's unicodedata (scripts/gen_unicode_case.py -> jinja_unicode_case.inc).
std::string py_upper(std::string_view s);
std::string py_lower(std::string_view s);
std::string py_title(std::string_view s);       // str.title()
std::string py_capitalize(std::string_view s);  // str.capitalize()
bool py_is_upper(std::string_view s);           // str.isupper()
bool py_is_lower(std::string_view s);           // str.islower()

// repr(str): quotes chosen like Python, non-printable characters escaped.
std::string py_repr_string(std::string_view s);
// json.dumps(str) with the given ensure_ascii.
void json_escape_string(std::string& out, std::string_view s, bool ensure_ascii);
// markupsafe.escape(): & < > ' " as HTML entities.
std::string html_escape(std::string_view s);

// Python float repr (shortest round-trip digits, exponent outside [1e-4, 1e16)).
std::string py_float_repr(double v);

}  // namespace llm::jinja
