// Context-free grammars for constrained decoding, in two forms:
//
//   Grammar      GBNF-like rules over Unicode text: each rule's body is an expression of
//                literals, code point classes, rule references, sequences, alternatives
//                and bounded/unbounded repetition. Built by code (json_schema.cpp) or
//                parsed from GBNF text (llama.cpp's grammar syntax, grammars/README.md).
//   ByteProgram  the same language lowered to bytes: every rule is a list of
//                alternatives, each a sequence of byte sets and rule references. Code point
//                classes become UTF-8 byte sequences (never surrogates), repetition becomes
//                right-recursive helper rules, so the matcher (grammar_matcher.h) never
//                decodes UTF-8 and a token may end in the middle of a character.
//
// Recursion is allowed; left recursion (a rule reaching itself, through nullable prefixes,
// at a non-tail position) is rejected when lowering because a top-down matcher cannot run it.
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace llm {

struct CharRange {
  uint32_t lo, hi;  // inclusive code points
};

constexpr uint32_t kMaxCodePoint = 0x10FFFF;
constexpr uint32_t kUnbounded = UINT32_MAX;  // Expr::max of x*, x+, x{n,}

// One node of a rule body. Plain value type; build with the helpers below.
struct Expr {
  enum class Kind : uint8_t { Literal, Chars, Ref, Seq, Alt, Repeat };
  Kind kind = Kind::Seq;
  std::string text;               // Literal: the bytes (UTF-8)
  std::vector<CharRange> ranges;  // Chars: sorted, disjoint, non-adjacent; may be empty
  uint32_t rule = 0;              // Ref: rule id
  std::vector<Expr> items;        // Seq, Alt: the parts; Repeat: exactly one
  uint32_t min = 0, max = 0;      // Repeat: count bounds (max may be kUnbounded)
};

Expr lit(std::string_view bytes);
// Code point class; negate: every code point (surrogates excluded) not in `ranges`.
Expr chars(std::vector<CharRange> ranges, bool negate = false);
Expr any_char();  // any code point except surrogates
Expr ref(uint32_t rule);
Expr seq(std::vector<Expr> items);
Expr alt(std::vector<Expr> items);
Expr repeat(Expr e, uint32_t min, uint32_t max);
inline Expr empty() {
  return seq({});
}
inline Expr opt(Expr e) {
  return repeat(std::move(e), 0, 1);
}
inline Expr star(Expr e) {
  return repeat(std::move(e), 0, kUnbounded);
}
inline Expr plus(Expr e) {
  return repeat(std::move(e), 1, kUnbounded);
}

// Normalises ranges: sorted, merged, clipped to [0, kMaxCodePoint].
std::vector<CharRange> normalize_ranges(std::vector<CharRange> r);
std::vector<CharRange> complement_ranges(const std::vector<CharRange>& r);

class Grammar {
 public:
  // Declares a rule (define it later; allows recursion). A taken name gets a "-N" suffix.
  uint32_t add_rule(std::string_view name);
  uint32_t add_rule(std::string_view name, Expr body);
  void define(uint32_t rule, Expr body);
  void set_root(uint32_t rule) { root_ = rule; }

  // GBNF text: `name ::= alternatives` rules, "literals" with \n \t \r \\ \" \xHH \uHHHH
  // \UHHHHHHHH escapes, [classes] with ranges and ^, `.`, (groups), postfix * + ? {m}
  // {m,} {m,n}, # comments. Throws llm::Error with the line of the mistake.
  static Grammar parse(std::string_view gbnf, std::string_view root = "root");
  std::string to_gbnf() const;  // for logs and debugging; parse(to_gbnf()) is equivalent

  uint32_t root() const { return root_; }
  size_t n_rules() const { return names_.size(); }
  const std::string& name(uint32_t rule) const { return names_[rule]; }
  const Expr& body(uint32_t rule) const { return bodies_[rule]; }
  bool defined(uint32_t rule) const { return defined_[rule]; }
  int find(std::string_view name) const;  // -1 when absent

 private:
  std::vector<std::string> names_;  // (n_rules)
  std::vector<Expr> bodies_;        // (n_rules)
  std::vector<bool> defined_;       // (n_rules)
  uint32_t root_ = 0;
};

// The byte-level program. Elements of all alternatives live in one array; an alternative
// is the run from alt_start[a] to the next End.
//
//   array      | rows          | meaning
//   elems      | all elements  | Byte (arg: index into sets) / Ref (arg: rule) / End
//   alt_start  | n_alts        | first element of each alternative
//   rule_alts  | n_rules + 1   | rule r owns alternatives [rule_alts[r], rule_alts[r + 1])
//   sets       | n_sets        | 256-bit byte sets (deduplicated)
//   byte_class | 256           | byte -> equivalence class: bytes of one class are in
//              |               | exactly the same sets, so transitions can be cached per class
// A fixed partition of bytes into 8 categories, shared by the matcher and the token trie
// so that a trie walk can skip a subtree whose every byte is in categories that keep the
// matcher in the same state (the body of a JSON string).
//   0: 0x00-0x1F   1: space   2: '"'   3: '\\'   4: 0-9   5: other ASCII   6: 0x80-0xBF
//   7: 0xC0-0xFF
inline int byte_category(uint8_t b) {
  if (b < 0x20) return 0;
  if (b == ' ') return 1;
  if (b == '"') return 2;
  if (b == '\\') return 3;
  if (b >= '0' && b <= '9') return 4;
  if (b < 0x80) return 5;
  return b < 0xC0 ? 6 : 7;
}

struct ByteProgram {
  enum class Op : uint8_t { End, Byte, Ref };
  struct Elem {
    Op op;
    uint32_t arg;
  };
  using ByteSet = std::array<uint64_t, 4>;

  std::vector<Elem> elems;
  std::vector<uint32_t> alt_start;
  std::vector<uint32_t> rule_alts;
  std::vector<ByteSet> sets;
  std::vector<std::string> rule_names;  // (n_rules) for error messages
  std::array<uint8_t, 256> byte_class{};
  uint32_t n_classes = 1;
  uint32_t root = 0;

  static bool has(const ByteSet& s, uint8_t b) { return (s[b >> 6] >> (b & 63)) & 1; }

  // Lowers a grammar. Throws llm::Error for undefined rules, left recursion, or a program
  // over max_elems elements (a schema asking for huge repetition counts).
  static std::shared_ptr<const ByteProgram> compile(const Grammar& g, size_t max_elems = 2'000'000);
};

}  // namespace llm
