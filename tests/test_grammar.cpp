// Grammar representation, GBNF parsing, UTF-8 lowering and the byte matcher, checked on
// hand-written accept/reject cases per construct; the regex subset checked against the
// C++ standard library's ECMAScript engine (std::wregex) on generated strings.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>
#include <random>
#include <regex>

#include "engine/error.h"
#include "engine/grammar.h"
#include "engine/grammar_matcher.h"
#include "engine/regex_grammar.h"
#include "engine/unicode.h"

using namespace llm;

namespace {

std::string utf8(uint32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else if (cp < 0x800) {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    s += static_cast<char>(0xE0 | (cp >> 12));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    s += static_cast<char>(0xF0 | (cp >> 18));
    s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return s;
}

GrammarMatcher matcher(const std::string& gbnf) {
  return GrammarMatcher(ByteProgram::compile(Grammar::parse(gbnf)));
}

struct Case {
  std::string text;
  bool ok;
};

void check_cases(const std::string& gbnf, const std::vector<Case>& cases) {
  GrammarMatcher m = matcher(gbnf);
  for (const Case& c : cases) {
    INFO("grammar: " << gbnf << "  text: \"" << c.text << "\"");
    CHECK(m.accepts(c.text) == c.ok);
  }
}

}  // namespace

TEST_CASE("grammar: literals, classes, alternatives, groups") {
  check_cases(R"(root ::= "abc")", {{"abc", true}, {"ab", false}, {"abcd", false}, {"", false}});
  check_cases(R"(root ::= "a\"b\\c\n\x41\u00e9")",
              {{"a\"b\\c\nA\xC3\xA9", true}, {"a\"b\\c\nA", false}});
  check_cases(R"(root ::= [a-cx] [0-9])",
              {{"a0", true}, {"x9", true}, {"d0", false}, {"a", false}});
  check_cases(R"(root ::= [^a-z"])",
              {{"A", true}, {"a", false}, {"\"", false}, {"\xE2\x82\xAC", true}});
  check_cases(R"(root ::= "x" | "yz" | "")", {{"x", true}, {"yz", true}, {"", true}, {"y", false}});
  check_cases("root ::= (\"a\" | \"b\") (\"c\"\n  | \"d\")  # comment\n",
              {{"ac", true}, {"bd", true}, {"ab", false}});
  check_cases("root ::= a\n  | b\na ::= \"1\"\nb ::= \"2\"",
              {{"1", true}, {"2", true}, {"12", false}});
  check_cases(R"(root ::= .)",
              {{"a", true}, {"\xF0\x9F\x98\x80", true}, {"ab", false}, {"", false}});
}

TEST_CASE("grammar: repetition") {
  check_cases(R"(root ::= "a"*)", {{"", true}, {"a", true}, {"aaaaaaaa", true}, {"b", false}});
  check_cases(R"(root ::= "ab"+)", {{"", false}, {"ab", true}, {"ababab", true}, {"aba", false}});
  check_cases(R"(root ::= "a"? "b")", {{"b", true}, {"ab", true}, {"aab", false}});
  check_cases(R"(root ::= [0-9]{3})", {{"123", true}, {"12", false}, {"1234", false}});
  check_cases(R"(root ::= [0-9]{2,})", {{"1", false}, {"12", true}, {"123456789", true}});
  check_cases(R"(root ::= [0-9]{1,3} "x")",
              {{"x", false}, {"1x", true}, {"123x", true}, {"1234x", false}});
  check_cases(R"(root ::= ("a" "b"?){0,2})",
              {{"", true}, {"a", true}, {"aab", true}, {"aaa", false}});
  // Nullable bodies under * and + must not loop in the matcher.
  check_cases(R"(root ::= ("a"?)* "b")", {{"b", true}, {"aaab", true}, {"aa", false}});
  check_cases(R"(root ::= (x)+ x ::= "c"*)", {{"", true}, {"ccc", true}, {"d", false}});
}

TEST_CASE("grammar: recursion") {
  const char* g = R"g(
    root ::= item*
    item ::= "(" root ")" | "[" root "]"
  )g";
  check_cases(g, {{"", true},
                  {"()", true},
                  {"([])()", true},
                  {"(((([]))))", true},
                  {"(]", false},
                  {"((", false},
                  {"())", false}});
  GrammarMatcher m = matcher(g);
  CHECK(m.is_prefix("(([("));
  CHECK(!m.accepts("(([("));
  CHECK(!m.is_prefix("(([(]"));
  // Deep nesting: the stack grows, states stay correct.
  std::string deep = std::string(300, '(') + std::string(300, ')');
  CHECK(m.accepts(deep));
  CHECK(!m.accepts(deep + ")"));
}

TEST_CASE("grammar: errors") {
  auto throws = [](const std::string& gbnf, const std::string& needle) {
    INFO(gbnf);
    try {
      ByteProgram::compile(Grammar::parse(gbnf));
      FAIL("no error");
    } catch (const Error& e) {
      CHECK(std::string(e.what()).find(needle) != std::string::npos);
    }
  };
  throws(R"(root ::= x)", "'x' is used but not defined");
  throws(R"(root ::= root "a" | "b")", "left-recursive");
  throws("root ::= a \"x\"\na ::= b\nb ::= \"\" | root", "left-recursive");
  throws(R"(root ::= "abc)", "unterminated string");
  throws(R"(root ::= [a-)", "unterminated character class");
  throws(R"g(root ::= ("a")g", "expected ')'");
  throws("root ::= \"a\"\nroot ::= \"b\"", "defined twice");
  throws(R"(root ::= "a"{3,2})", "n < m");
  throws(R"(oops ::= "a")", "no rule named 'root'");
  // A huge repetition count is refused instead of building millions of rules.
  Grammar g;
  g.set_root(g.add_rule("root", repeat(lit("ab"), 0, 5'000'000)));
  CHECK_THROWS_AS(ByteProgram::compile(g), Error);
  // Right recursion through a tail reference is fine, however deep.
  CHECK_NOTHROW(ByteProgram::compile(Grammar::parse(R"(root ::= "a" root | "")")));
}

TEST_CASE("grammar: to_gbnf round trip") {
  const char* src = R"(root ::= ("a" | [b-d\n]+) x{2,4} y? "\"q\\"
x ::= [^\x00-\x1F"]
y ::= "é" .*)";
  Grammar g = Grammar::parse(src);
  Grammar g2 = Grammar::parse(g.to_gbnf());
  GrammarMatcher a(ByteProgram::compile(g)), b(ByteProgram::compile(g2));
  for (const char* t :
       {"axx\"q\\", "bcd\nxyzw\"q\\", "ax\"q\\", "axxé\xE2\x82\xAC\"q\\", "axxxxx\"q\\"}) {
    CHECK(a.accepts(t) == b.accepts(t));
  }
  CHECK(a.accepts("bcd\nxyzw\"q\\"));
}

// Every code point against a class whose ranges cut across each UTF-8 length boundary and
// continuation-byte block: the lowered byte sequences must accept exactly the class.
TEST_CASE("grammar: UTF-8 classes accept exactly their code points") {
  std::vector<CharRange> ranges = {{0x41, 0x5A},     {0x7E, 0x85},      {0x3FF, 0x801},
                                   {0xD7FE, 0xE001}, {0xFFF0, 0x10005}, {0x10FFF0, 0x10FFFF}};
  for (bool negate : {false, true}) {
    Grammar g;
    g.set_root(g.add_rule("root", chars(ranges, negate)));
    GrammarMatcher m(ByteProgram::compile(g));
    int wrong = 0;
    for (uint32_t cp = 0; cp <= kMaxCodePoint; ++cp) {
      if (cp >= 0xD800 && cp <= 0xDFFF) continue;  // not encodable
      bool in = false;
      for (auto r : ranges) in |= cp >= r.lo && cp <= r.hi;
      if (m.accepts(utf8(cp)) != (in != negate)) ++wrong;
    }
    CHECK(wrong == 0);
    // Surrogates (ED A0..BF xx), overlong forms and stray continuation bytes never match.
    CHECK(!m.is_prefix("\xED\xA0"));
    CHECK(!m.is_prefix("\xC0\x80"));
    CHECK(!m.is_prefix("\xE0\x80"));
    CHECK(!m.is_prefix("\x80"));
    CHECK(!m.is_prefix("\xF4\x90"));
  }
  // A character split across tokens: the matcher sits between its bytes.
  GrammarMatcher m = matcher(R"(root ::= "€" [α-ω])");
  CHECK(m.advance("\xE2\x82"));
  CHECK(!m.accepting(m.state()));
  CHECK(m.advance("\xAC\xCE"));
  CHECK(!m.advance("\xCE"));  // a second lead byte: refused, state unchanged
  CHECK(m.advance("\xB2"));   // β
  CHECK(m.accepting(m.state()));
}

TEST_CASE("grammar matcher: cached transitions and compact() keep behaviour") {
  GrammarMatcher m = matcher(R"(
    root ::= "[" (v ("," v)*)? "]"
    v ::= [0-9]+ | root
  )");
  const char* ok = "[1,[2,[3,[]]],45]";
  CHECK(m.accepts(ok));
  size_t n = m.n_states();
  CHECK(m.accepts(ok));
  CHECK(m.n_states() == n);  // the second run is all cache hits
  CHECK(m.advance("[1,[2,["));
  m.compact();
  CHECK(m.n_states() < n);
  CHECK(m.advance("3]],4"));
  CHECK(!m.advance("]]"));
  CHECK(m.advance("]"));
  CHECK(m.accepting(m.state()));
  m.reset();
  CHECK(m.accepts(ok));
  CHECK(!m.accepts("[1,]"));
}

// ---------------------------------------------------------------- regex

namespace {

std::wstring widen(const std::string& s) {  // UTF-8 -> UTF-32 (valid input only)
  std::wstring w;
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : 4;
    uint32_t cp = n == 1 ? c : (c & (0x7F >> n));
    for (int k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
    w += static_cast<wchar_t>(cp);
    i += static_cast<size_t>(n);
  }
  return w;
}

}  // namespace

// Our grammar for a pattern, over raw text and over JSON-escaped string bodies, against
// std::wregex's regex_search (ECMAScript, search semantics like JSON Schema).
TEST_CASE("regex: matches std::wregex on generated strings") {
  const std::vector<std::string> patterns = {"abc",
                                             "^abc$",
                                             "^a|b$",
                                             "^(ab|cd)*e?$",
                                             "^[a-c]{2,3}x+$",
                                             "^\\d{3}-\\d{4}$",
                                             "^[^0-9]*$",
                                             "^\\w+@\\w+\\.com$",
                                             "^(?:x|yz){2}$",
                                             "a.c",
                                             "^\\s*$",
                                             "^[\\-+]?\\d+(\\.\\d+)?$",
                                             "^(a+)+$",
                                             "^a{0}b$",
                                             "^(a|)+$",
                                             "^\\.\\*\\\\$",
                                             "^[A-Z][a-z]*( [A-Z][a-z]*)*$",
                                             "x{2,}",
                                             "^\"q\"$",
                                             "^[\\n\\t]+$",
                                             "^[^a]$",
                                             "^.$",
                                             "^a+?b$",
                                             "^[α-ω]{2}é?$",
                                             "^\\u00e9\\x41$",
                                             "^[\\w\\s]{1,3}$",
                                             "b$",
                                             "^(a|b)*abb$",
                                             "[^\\W\\d]",
                                             "^\\$\\{\\}\\(\\)$"};
  // Alphabet: characters that matter to the patterns, plus controls, quotes, unicode.
  const std::vector<std::string> alphabet = {"a",  "b",  "c",  "d", "e",    "x", "y", "z", "A",
                                             "Q",  "0",  "5",  "-", "+",    ".", "@", " ", "\n",
                                             "\t", "\"", "\\", "*", "$",    "{", "}", "(", ")",
                                             "_",  "α",  "β",  "é", "\x01", "€", "q", "m", "o"};
  std::mt19937 rng(7);
  std::vector<std::string> corpus = {
      "",         "abc",      "zabcz",       "ab",         "cdcde", "abx",   "abcxx",
      "123-4567", "12-34567", "foo@bar.com", "foo@bar.co", "xyzx",  "xx",    "+12.5",
      "-7",       "1.",       "aaaa",        "b",          ".*\\",  "Ab Cd", "Ab cd",
      "\"q\"",    "\n\t",     "a",           "é",          "αβ",    "αβé",   "éA",
      "ab ",      "abb",      "babb",        "${}()",      "_"};
  for (int i = 0; i < 600; ++i) {
    std::string s;
    for (int n = static_cast<int>(rng() % 7); n > 0; --n) s += alphabet[rng() % alphabet.size()];
    corpus.push_back(s);
  }
  for (const std::string& p : patterns) {
    std::wregex ref(widen(p), std::regex::ECMAScript);
    Grammar raw, json;
    raw.set_root(raw.add_rule("root", regex_to_expr(p)));
    json.set_root(
        json.add_rule("root", seq({lit("\""), json_escape_expr(regex_to_expr(p)), lit("\"")})));
    GrammarMatcher mr(ByteProgram::compile(raw)), mj(ByteProgram::compile(json));
    int wrong = 0;
    for (const std::string& s : corpus) {
      bool want = std::regex_search(widen(s), ref);
      bool got = mr.accepts(s);
      bool got_json = mj.accepts(nlohmann::json(s).dump());
      if (got != want || got_json != want) {
        if (++wrong <= 3)
          MESSAGE("pattern " << p << " on \"" << s << "\": want " << want << " got " << got << "/"
                             << got_json);
      }
    }
    INFO("pattern " << p);
    CHECK(wrong == 0);
  }
}

TEST_CASE("regex: named groups, lazy quantifiers, surrogate escapes") {
  Grammar g;
  g.set_root(g.add_rule("root", regex_to_expr("^(?<year>\\d{4})-\\uD83D\\uDE00{1,2}?$")));
  GrammarMatcher m(ByteProgram::compile(g));
  CHECK(m.accepts("2024-\xF0\x9F\x98\x80"));
  CHECK(m.accepts("2024-\xF0\x9F\x98\x80\xF0\x9F\x98\x80"));
  CHECK(!m.accepts("2024-"));
}

// \p{..}: checked against the category table directly (std::regex has no \p).
TEST_CASE("regex: general category escapes") {
  Grammar g;
  g.set_root(g.add_rule("root", regex_to_expr("^\\p{Lu}\\p{gc=Ll}*\\P{L}$")));
  GrammarMatcher m(ByteProgram::compile(g));
  CHECK(m.accepts("Ab1"));
  CHECK(m.accepts("\xC3\x89t\xC3\xA9!"));  // Été!
  CHECK(m.accepts("\xCE\x94\xCE\xB4 "));   // Δδ
  CHECK(!m.accepts("ab1"));
  CHECK(!m.accepts("AB1"));
  CHECK(!m.accepts("Abc"));
  std::mt19937 rng(3);
  int wrong = 0;
  for (int i = 0; i < 20000; ++i) {
    uint32_t cp = rng() % 0x30000;
    if (cp >= 0xD800 && cp <= 0xDFFF) continue;
    bool upper = unicode_category(cp) == UCat::Lu;
    wrong += m.accepts(utf8(cp) + "1") != upper;
  }
  CHECK(wrong == 0);
}

TEST_CASE("regex: unsupported features are named") {
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"(?=a)", "lookahead"},
      {"(?<=a)b", "lookbehind"},
      {"\\bfoo", "word boundary"},
      {"(a)\\1", "backreference"},
      {"\\p{Script=Greek}", "only general categories"},
      {"a^b", "'^' inside"},
      {"a$b", "'$' inside"},
      {"(?i)a", "group modifier"},
      {"[b-a]", "out of order"},
      {"(ab", "missing ')'"},
      {"*a", "nothing to repeat"},
      {"a{2,1}", "n < m"},
      {"\\k<x>", "backreference"},
      {"\\cA", "control escape"}};
  for (const auto& [p, needle] : bad) {
    INFO(p);
    try {
      regex_to_expr(p);
      FAIL("no error");
    } catch (const Error& e) {
      CHECK(std::string(e.what()).find(needle) != std::string::npos);
    }
  }
}
