// A small backtracking regex matcher over code points, enough for the pre-tokenizer
// patterns of tokenizer.json files (as llama.cpp lists them in llama-vocab.cpp):
// alternation, (?:...) and (...) groups, (?=...) / (?!...) lookahead, ^ $, classes
// with ranges and \p{L} \p{Lu} \p{N} \p{P} \p{S} \p{M} \p{Z} \p{C} (\P{..} negated),
// \s \S \d \D, escapes \r \n \t \f \v, and the quantifiers ? * + {n} {n,} {n,m}
// (lazy with a trailing ?). Semantics are leftmost-first like Python's `regex` and
// Oniguruma: alternatives in order, greedy quantifiers backtrack.
//
// C++ has no regex library with Unicode categories; llama.cpp hand-writes two of the
// splitters and runs the rest through std::regex on a "collapsed" text. A matcher
// that reads the patterns themselves keeps every family exact with one piece of code.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "engine/unicode.h"

namespace llm {

// The text being split: code points with their categories precomputed once.
struct CodepointText {
  std::vector<uint32_t> cps;  // (n)
  std::vector<UCat> cats;     // (n) unicode_category(cps[i])
  std::vector<uint8_t> ws;    // (n) unicode_is_whitespace(cps[i])
  explicit CodepointText(std::vector<uint32_t> codepoints);
  size_t size() const { return cps.size(); }
};

class SplitRegex {
 public:
  // Throws llm::Error on syntax this matcher does not support.
  explicit SplitRegex(std::string_view pattern);

  // End of the match that starts exactly at pos, looking only at text[begin, end)
  // (lookahead and $ see `end` as the end of the text), or npos when none matches.
  // Zero-length matches count as no match.
  size_t match_at(const CodepointText& text, size_t begin, size_t end, size_t pos) const;
  // The same for a left-to-right scan of one piece: `skip` (one entry per top-level
  // alternative, zeroed at the start of the piece) remembers where alternatives that
  // begin with an unbounded greedy class are known to fail. Without it a pattern like
  // \s+$ would rescan a long run of spaces from every position in it (quadratic).
  size_t match_at(const CodepointText& text, size_t begin, size_t end, size_t pos,
                  std::vector<size_t>& skip) const;
  size_t alternatives() const;

  const std::string& pattern() const { return pattern_; }

  static constexpr size_t npos = static_cast<size_t>(-1);

  struct Class;
  struct Node;
  using Seq = std::vector<Node>;
  struct Group {
    std::vector<Seq> alts;
  };

 private:
  friend struct RegexParser;
  friend struct RegexMatcher;
  std::string pattern_;
  std::vector<Class> classes_;
  std::vector<Group> groups_;
  int root_ = -1;  // index into groups_
};

struct SplitRegex::Class {
  bool negated = false;
  std::vector<std::pair<uint32_t, uint32_t>> ranges;  // inclusive
  uint32_t cats = 0;                                  // general categories in the class (ucat_bit)
  std::vector<uint32_t> not_cats;         // \P{..} / \D items: in the class when outside the mask
  bool space = false, not_space = false;  // \s, \S items
  std::vector<int> and_classes;  // intersection with these classes (from lookahead folding)
  uint64_t ascii[2] = {0, 0};    // final membership of U+0000..U+007F, built by finish()
  bool contains(const SplitRegex& re, uint32_t cp, UCat cat, bool ws) const;
  bool raw_contains(uint32_t cp, UCat cat, bool ws) const;  // before negation and intersection
};

struct SplitRegex::Node {
  enum class Kind : uint8_t { Class, Group, Ahead, NotAhead, End, Start };
  Kind kind = Kind::Class;
  int index = -1;        // Class: into classes_; Group / Ahead / NotAhead: into groups_
  int min = 1, max = 1;  // repetition; max == kInf for unbounded
  bool lazy = false;
  static constexpr int kInf = 1 << 30;
};

// Splits text by each pattern in turn, keeping both the matches and the text between
// them as pieces ("isolated" splitting, what HF tokenizers' Split and ByteLevel do):
// every pattern re-splits the pieces the previous one made.
// Returns piece lengths in code points, in order; they add up to text.size().
std::vector<size_t> regex_split(const CodepointText& text, const std::vector<SplitRegex>& regexes);

}  // namespace llm
