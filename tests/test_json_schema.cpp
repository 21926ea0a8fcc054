// JSON Schema -> grammar: hand-written accept/reject cases per construct; integer and
// number bounds against brute force; byte-level random walks through each schema's
// grammar whose output must parse (nlohmann) and validate (tests/json_validator.h);
// unsupported features must throw llm::Error naming the schema path.
#include <doctest/doctest.h>

#include <climits>
#include <cstdio>
#include <random>

#include "engine/error.h"
#include "engine/grammar_matcher.h"
#include "engine/json_schema.h"
#include "json_validator.h"
#include "schema_cases.h"

using namespace llm;
using llm::test::OJson;

namespace {

GrammarMatcher schema_matcher(const std::string& schema, bool strict = false) {
  Grammar g = schema.empty()
                  ? json_object_grammar()
                  : json_schema_to_grammar(OJson::parse(schema), JsonSchemaOptions{strict});
  return GrammarMatcher(ByteProgram::compile(g));
}

void check_texts(const std::string& schema, const std::vector<std::string>& ok,
                 const std::vector<std::string>& bad, bool strict = false) {
  GrammarMatcher m = schema_matcher(schema, strict);
  for (const std::string& t : ok) {
    INFO("schema " << schema << "\n  should accept: " << t);
    CHECK(m.accepts(t));
  }
  for (const std::string& t : bad) {
    INFO("schema " << schema << "\n  should reject: " << t);
    CHECK(!m.accepts(t));
  }
}

}  // namespace

TEST_CASE("json_schema: generic JSON and whitespace") {
  check_texts(
      "",
      {"{}", "{ }", R"({"a":1})", "{\n  \"a\": [1, 2.5e-3, -0, true, null],\n  \"b\": {}\n}",
       R"({"s": "x\"\\\/\b\f\n\r\t\u00e9\uD83D\uDE00 é😀"})", " {}\n"},
      {"[]", "1", "{", R"({"a":})", R"({"a":1,})", R"({'a':1})", R"({"a":01})", R"({"a":1.})",
       R"({"a":.5})", "{\"a\":\"\x01\"}", R"({"a":"\uD800"})", R"({"a":"\uDC00x"})",
       R"({"a":"\x"})", "{" + std::string(30, ' ') + "}", R"({"a":1e999})",
       R"({"a":1234567890123456789})"});
  check_texts("{}", {"1", "\"x\"", "[1,{}]", "null", "true", "-1.5E+2"}, {"tru", "nul", "[1,]"});
  check_texts("true", {"[]"}, {"[1"});
}

TEST_CASE("json_schema: objects") {
  const char* s =
      R"({"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "string"},
                      "c": {"type": "boolean"}}, "required": ["b"]})";
  check_texts(s,
              {R"({"b":"x"})", R"({"a":1,"b":"x"})", R"({"b":"x","c":true})",
               R"({"a":1,"b":"","c":false})", R"({ "a" : 1 , "b" : "x" })"},
              {"{}", R"({"a":1})", R"({"b":"x","a":1})", R"({"b":"x","d":1})", R"({"b":"x",})",
               R"({"b":"x","b":"y"})", R"({"a":1,,"b":"x"})"});
  // Strict: every property required, no extras even when additionalProperties says so.
  check_texts(
      R"({"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "string"}},
                  "additionalProperties": true})",
      {R"({"a":1,"b":"x"})"}, {R"({"b":"x"})", R"({"a":1,"b":"x","c":2})"}, true);
  // additionalProperties: a schema for extra keys, which never repeat a listed name.
  const char* extra =
      R"({"type": "object", "properties": {"a": {"type": "integer"}, "ab": {"type": "null"}},
                          "additionalProperties": {"type": "string"}})";
  check_texts(
      extra,
      {"{}", R"({"a":1,"x":"y"})", R"({"b":"1","abc":"2","":"3"})", R"({"ab":null,"é":"ü"})"},
      {R"({"x":1})", R"({"a":"s"})", R"({"x":"y","a":1})", R"({"a":1,"a":"s"})", R"({"ab":"s"})",
       R"({"a\u0062":"s"})"});
  // Listed names that need escapes still never collide with escape-free extra keys.
  check_texts(
      R"({"type": "object", "properties": {"q\"": {"type": "integer"}}, "additionalProperties": true})",
      {R"({"q\"":1})", R"({"q":"x"})", R"({"q\"":1,"r":[]})"}, {R"({"q\"":"s"})"});
  // No properties: any object; additionalProperties false: only {}.
  check_texts(R"({"type": "object"})", {R"({"x":[1,{"y":null}]})", "{}"}, {"[]"});
  check_texts(R"({"type": "object", "additionalProperties": false})", {"{}", "{ }"},
              {R"({"x":1})"});
  // Required names not in properties take any value.
  check_texts(R"({"type": "object", "required": ["q"]})", {R"({"q":[1]})"}, {"{}"});
}

TEST_CASE("json_schema: arrays") {
  check_texts(R"({"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 3})",
              {"[1,2]", "[1, 2, 3]", "[ 1 ,2 ]"},
              {"[]", "[1]", "[1,2,3,4]", "[1,\"a\"]", "[1,2,]"});
  check_texts(R"({"type": "array", "items": {"type": "string"}})",
              {"[]", "[\"a\"]", "[\"a\",\"b\",\"c\"]"}, {"[1]", "[,]"});
  check_texts(R"({"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}],
                  "items": {"type": "boolean"}, "maxItems": 3})",
              {"[1,\"a\"]", "[1,\"a\",true]"},
              {"[1]", "[\"a\",1]", "[1,\"a\",true,false]", "[1,\"a\",2]"});
  check_texts(
      R"({"type": "array", "items": [{"const": 1}, {"const": 2}], "additionalItems": false})",
      {"[1,2]"}, {"[1,2,3]", "[2,1]"});
  check_texts(R"({"type": "array", "maxItems": 0})", {"[]"}, {"[1]"});
  check_texts(R"({"type": "array", "minItems": 1})", {"[{}]", "[1,[2]]"}, {"[]"});
}

TEST_CASE("json_schema: enum, const, anyOf, allOf, nullable, type lists") {
  check_texts(R"({"enum": ["a", 1, null, [1, {"b": "é"}], "q\"x"]})",
              {"\"a\"", "1", "null", R"([1,{"b":"é"}])", R"("q\"x")"},
              {"\"b\"", "1.0", "[1, {\"b\": \"é\"}]"});
  check_texts(R"({"const": {"k": [true]}})", {R"({"k":[true]})"}, {R"({"k":[false]})"});
  check_texts(R"({"type": "string", "enum": ["x", 2]})", {"\"x\""}, {"2"});
  check_texts(R"({"anyOf": [{"type": "integer"}, {"type": "string", "maxLength": 1}]})",
              {"12", "\"a\""}, {"\"ab\"", "1.5", "null"});
  check_texts(R"({"oneOf": [{"type": "boolean"}, {"type": "null"}]})", {"true", "null"}, {"1"});
  check_texts(
      R"({"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                  "anyOf": [{"required": ["a"]}, {"required": ["b"]}]})",
      {R"({"a":1})", R"({"b":1})", R"({"a":1,"b":2})"}, {"{}"});
  check_texts(
      R"({"allOf": [{"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
                            {"properties": {"b": {"type": "string"}}, "required": ["b"]},
                            {"properties": {"a": {"minimum": 5}}}]})",
      {R"({"a":5,"b":""})"}, {R"({"a":4,"b":""})", R"({"a":5})", R"({"b":""})"});
  check_texts(R"({"allOf": [{"enum": [1, 2, 3]}, {"enum": [3, 2, 5]}]})", {"2", "3"}, {"1", "5"});
  check_texts(R"({"type": ["integer", "null", "boolean"]})", {"1", "null", "false"},
              {"\"1\"", "1.5"});
  check_texts(R"({"type": "string", "nullable": true, "maxLength": 2})", {"null", "\"ab\""},
              {"\"abc\""});
}

TEST_CASE("json_schema: $ref and recursion") {
  const char* tree = R"({"$defs": {"t": {"type": "object", "properties": {"v": {"type": "integer"},
                         "kids": {"type": "array", "items": {"$ref": "#/$defs/t"}}}, "required": ["v"]}},
                         "$ref": "#/$defs/t"})";
  check_texts(tree, {R"({"v":1})", R"({"v":1,"kids":[{"v":2,"kids":[{"v":3}]},{"v":4}]})"},
              {R"({"v":1,"kids":[{}]})", R"({"kids":[]})"});
  check_texts(
      R"({"type": "object", "properties": {"next": {"anyOf": [{"$ref": "#"}, {"type": "null"}]}},
                  "required": ["next"]})",
      {R"({"next":null})", R"({"next":{"next":{"next":null}}})"}, {R"({"next":{}})"});
  check_texts(R"({"definitions": {"a/b": {"type": "integer"}, "c~d": {"type": "boolean"}},
                  "type": "array", "prefixItems": [{"$ref": "#/definitions/a~1b"}, {"$ref": "#/definitions/c~0d"}]})",
              {"[1,true]"}, {"[true,1]"});
}

TEST_CASE("json_schema: strings") {
  check_texts(R"({"type": "string", "minLength": 2, "maxLength": 3})",
              {R"("ab")", R"("abc")", R"("é😀")", R"("\n\u0041")", R"("\"\"\"")"},
              {R"("a")", R"("abcd")", R"("é")"});
  check_texts(R"({"type": "string", "pattern": "^a\"\\\\b$"})", {R"("a\"\\b")"},
              {R"("a"\b")", R"("a\u0022\\b")"});
  check_texts(R"({"type": "string", "pattern": "[0-9]"})", {R"("x1y")", R"("5")"}, {R"("xy")"});
  check_texts(R"({"type": "string", "format": "date"})", {R"("2024-02-29")", R"("1999-12-31")"},
              {R"("2024-13-01")", R"("2024-00-10")", R"("2024-01-32")", R"("24-01-01")"});
  check_texts(R"({"type": "string", "format": "time"})",
              {R"("23:59:59Z")", R"("08:00:00.123+05:30")"},
              {R"("24:00:00Z")", R"("12:00:00")", R"("12:60:00Z")"});
  check_texts(R"({"type": "string", "format": "date-time"})", {R"("2024-05-01T12:30:00Z")"},
              {R"("2024-05-01 12:30:00Z")"});
  check_texts(
      R"({"type": "string", "format": "uuid"})", {R"("123e4567-e89b-12d3-a456-426614174000")"},
      {R"("123e4567e89b12d3a456426614174000")", R"("123e4567-e89b-12d3-a456-42661417400g")"});
  check_texts(R"({"type": "string", "format": "email"})",
              {R"("a.b+c@example.co.uk")", R"("x@y.io")"},
              {R"("a@b")", R"("a..b@c.de")", R"("@c.de")", R"("a@-c.de")"});
  check_texts(R"({"type": "string", "format": "ipv4"})", {R"("192.168.0.255")", R"("0.0.0.0")"},
              {R"("256.1.1.1")", R"("01.1.1.1")", R"("1.1.1")"});
  check_texts(R"({"type": "string", "format": "uri"})", {R"("anything")"},
              {"1"});  // annotation only
}

TEST_CASE("json_schema: integer bounds match brute force") {
  struct B {
    const char* schema;
    long lo, hi;  // inclusive
  };
  const std::vector<B> cases = {
      {R"({"minimum": 0, "maximum": 0})", 0, 0},
      {R"({"minimum": -5, "maximum": 5})", -5, 5},
      {R"({"minimum": 1, "maximum": 100})", 1, 100},
      {R"({"minimum": -1200, "maximum": -3})", -1200, -3},
      {R"({"minimum": 7, "maximum": 1234})", 7, 1234},
      {R"({"minimum": -99, "maximum": 0})", -99, 0},
      {R"({"minimum": 10, "maximum": 19})", 10, 19},
      {R"({"minimum": 0})", 0, LONG_MAX},
      {R"({"maximum": -10})", LONG_MIN, -10},
      {R"({"minimum": 95})", 95, LONG_MAX},
      {R"({"exclusiveMinimum": -3, "exclusiveMaximum": 300})", -2, 299},
      {R"({"minimum": 2.5, "maximum": 9.5})", 3, 9},
      {R"({"minimum": 5, "exclusiveMinimum": true, "maximum": 50, "exclusiveMaximum": true})", 6,
       49},
  };
  for (const B& b : cases) {
    OJson s = OJson::parse(b.schema);
    s["type"] = "integer";
    GrammarMatcher m = schema_matcher(s.dump());
    int wrong = 0;
    for (long n = -1500; n <= 1500; ++n) {
      if (m.accepts(std::to_string(n)) != (n >= b.lo && n <= b.hi)) ++wrong;
    }
    for (long n : {123456789012L, -123456789012L, 999999999999999999L}) {
      if (m.accepts(std::to_string(n)) != (n >= b.lo && n <= b.hi)) ++wrong;
    }
    INFO(std::string(b.schema));
    CHECK(wrong == 0);
    CHECK(!m.accepts("-0"));
    CHECK(!m.accepts("1.0"));
    CHECK(!m.accepts("007"));
  }
}

TEST_CASE("json_schema: number bounds are sound and accept plain decimals in range") {
  const std::vector<const char*> schemas = {R"({"minimum": 0, "maximum": 1})",
                                            R"({"exclusiveMinimum": 0, "exclusiveMaximum": 1})",
                                            R"({"minimum": -2, "exclusiveMaximum": 3})",
                                            R"({"exclusiveMaximum": 0})",
                                            R"({"exclusiveMinimum": 5})",
                                            R"({"exclusiveMinimum": -3, "maximum": -1})",
                                            R"({"minimum": 12, "maximum": 12})",
                                            R"({"minimum": -40, "maximum": 125})"};
  std::vector<std::string> texts;
  for (int i = -600; i <= 600; ++i) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%d", i / 4);
    texts.push_back(buf);
    std::snprintf(buf, sizeof buf, "%.2f", i / 40.0);
    texts.push_back(buf);
    std::snprintf(buf, sizeof buf, "%.1f", i / 4.0);
    texts.push_back(buf);
  }
  for (const char* t :
       {"0.0001", "-0.0001", "0.999999", "1.000", "1.0001", "3.0", "2.99", "5.0", "5.00001", "-3.0",
        "-2.9999", "12.000", "12.01", "11.99", "1e2", "-1E-2", "-0", "-0.0"})
    texts.push_back(t);
  for (const char* sch : schemas) {
    OJson s = OJson::parse(sch);
    s["type"] = "number";
    GrammarMatcher m = schema_matcher(s.dump());
    test::Validator v(s, false);
    int unsound = 0, missed = 0;
    for (const std::string& t : texts) {
      bool in = v.check(OJson::parse(t)).empty();
      bool neg_zero = t[0] == '-' && std::stod(t) == 0;
      bool plain = t.find_first_of("eE") == std::string::npos && !neg_zero;
      bool got = m.accepts(t);
      if (got && !in) ++unsound;
      if (!got && in && plain) ++missed;
    }
    INFO(std::string(sch));
    CHECK(unsound == 0);
    CHECK(missed == 0);
  }
}

namespace {

// A random byte-level walk through a grammar: random allowed bytes, then (after `patience`
// bytes) the ones that close strings, arrays and objects first, until the text is complete.
std::string random_text(GrammarMatcher& m, std::mt19937& rng, int patience) {
  std::string out;
  GrammarMatcher::State s = m.start();
  for (int step = 0; step < 20000; ++step) {
    std::vector<uint8_t> ok;
    for (int b = 0; b < 256; ++b) {
      if (m.step(s, static_cast<uint8_t>(b)) != GrammarMatcher::kDead)
        ok.push_back(static_cast<uint8_t>(b));
    }
    if (m.accepting(s) && (ok.empty() || step > patience || rng() % 8 == 0)) return out;
    REQUIRE(!ok.empty());
    uint8_t pick = ok[rng() % ok.size()];
    if (step > patience) {
      for (uint8_t pref : {'"', '}', ']', '0', 'n', 'a', '1'}) {
        if (std::find(ok.begin(), ok.end(), pref) != ok.end() && rng() % 4 != 0) {
          pick = pref;
          break;
        }
      }
    }
    out += static_cast<char>(pick);
    s = m.step(s, pick);
  }
  FAIL("the walk did not end");
  return out;
}

}  // namespace

TEST_CASE("json_schema: random byte walks parse and validate") {
  std::mt19937 rng(42);
  for (const test::SchemaCase& c : test::schema_cases()) {
    OJson schema = c.schema[0] ? OJson::parse(c.schema) : OJson{{"type", "object"}};
    GrammarMatcher m = schema_matcher(c.schema, c.strict);
    test::Validator v(schema, c.strict);
    INFO(c.name << " example: " << c.example);
    CHECK(m.accepts(c.example));
    CHECK(v.check(OJson::parse(c.example)) == "");
    for (int i = 0; i < 40; ++i) {
      std::string text = random_text(m, rng, 20 + i * 10);
      INFO(c.name << ": " << text);
      OJson parsed;
      REQUIRE_NOTHROW(parsed = OJson::parse(text));
      CHECK(v.check(parsed) == "");
    }
  }
}

TEST_CASE("json_schema: unsupported or invalid schemas throw with the path") {
  const std::vector<std::pair<std::string, std::string>> bad = {
      {R"({"not": {"type": "string"}})", "json_schema #: the keyword 'not'"},
      {R"({"properties": {"a": {"type": "array", "uniqueItems": true}}})",
       "#/properties/a: the keyword 'uniqueItems'"},
      {R"({"properties": {"a": {"if": {}, "then": {}}}})", "#/properties/a: the keyword 'if'"},
      {R"({"type": "object", "patternProperties": {"^x": {}}})", "'patternProperties'"},
      {R"({"type": "integer", "multipleOf": 3})", "'multipleOf'"},
      {R"j({"items": {"pattern": "(?=x)"}})j", "#/items: pattern \"(?=x)\": lookahead"},
      {R"({"type": "string", "pattern": "a\\1"})", "backreference"},
      {R"({"$ref": "http://example.com/s.json"})", "remote $ref"},
      {R"({"$ref": "#/$defs/missing"})", "does not point into the schema"},
      {R"({"type": "strnig"})", "unknown type \"strnig\""},
      {R"({"type": "integer", "minimum": 5, "maximum": 4})", "no integer lies between"},
      {R"({"type": "string", "minLength": 3, "maxLength": 2})", "maxLength is below minLength"},
      {R"({"type": "string", "pattern": "a", "maxLength": 2})", "pattern together with minLength"},
      {R"({"enum": []})", "no enum/const value"},
      {"false", "matches nothing"},
      {R"({"anyOf": []})", "non-empty array"},
      {R"({"allOf": [{"type": "string"}, {"type": "integer"}]})", "exclude each other"},
      {R"({"type": "object", "minProperties": 2})", "minProperties"},
      {R"({"type": "array", "maxItems": 200000})", "over 100000"},
      {R"({"$defs": {"a": {"allOf": [{"$ref": "#/$defs/a"}]}}, "$ref": "#/$defs/a"})",
       "nested too deeply"},
      {R"({"properties": {"a": 5}})", "#/properties/a: a schema must be an object or a boolean"},
  };
  for (const auto& [schema, needle] : bad) {
    INFO(schema);
    try {
      json_schema_to_grammar(OJson::parse(schema));
      FAIL("no error");
    } catch (const Error& e) {
      INFO(e.what());
      CHECK(std::string(e.what()).find(needle) != std::string::npos);
    }
  }
  // Huge repetition counts are refused, not built.
  OJson huge = {{"type", "object"}, {"properties", OJson::object()}};
  for (int i = 0; i < 10; ++i) {
    huge["properties"]["p" + std::to_string(i)] = {
        {"type", "array"}, {"items", {{"const", i}}}, {"maxItems", 100000}};
  }
  CHECK_THROWS_AS(ByteProgram::compile(json_schema_to_grammar(huge)), Error);
}
