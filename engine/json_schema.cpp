#include "engine/json_schema.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <optional>
#include <unordered_map>

#include "engine/error.h"
#include "engine/json_scalars.h"
#include "engine/regex_grammar.h"

namespace llm {

namespace {

using Json = nlohmann::ordered_json;

constexpr uint32_t kMaxIndent = 24;  // spaces/tabs after a newline
constexpr int kMaxDepth = 64;
constexpr double kMaxBound = 1e18;

const char* const kUnsupported[] = {"not",
                                    "if",
                                    "then",
                                    "else",
                                    "dependentSchemas",
                                    "dependentRequired",
                                    "dependencies",
                                    "patternProperties",
                                    "propertyNames",
                                    "unevaluatedProperties",
                                    "unevaluatedItems",
                                    "contains",
                                    "minContains",
                                    "maxContains",
                                    "multipleOf",
                                    "$dynamicRef",
                                    "$recursiveRef"};

// Keywords that constrain a value (the rest are annotations or unknown, hence ignored).
const char* const kAssertions[] = {"type",
                                   "enum",
                                   "const",
                                   "properties",
                                   "required",
                                   "additionalProperties",
                                   "items",
                                   "prefixItems",
                                   "additionalItems",
                                   "minItems",
                                   "maxItems",
                                   "minLength",
                                   "maxLength",
                                   "pattern",
                                   "format",
                                   "minimum",
                                   "maximum",
                                   "exclusiveMinimum",
                                   "exclusiveMaximum",
                                   "nullable",
                                   "anyOf",
                                   "oneOf",
                                   "allOf",
                                   "$ref",
                                   "minProperties",
                                   "maxProperties",
                                   "uniqueItems"};

enum Gen {
  kWs,
  kValue,
  kObject,
  kArray,
  kString,
  kChar,
  kNumber,
  kInteger,
  kBoolean,
  kNull,
  kGenCount
};

struct Bounds {
  std::optional<double> lo, hi;
  bool lo_ex = false, hi_ex = false;
};

class SchemaCompiler {
 public:
  SchemaCompiler(const Json& root, const JsonSchemaOptions& opt) : root_(root), opt_(opt) {
    gen_.fill(UINT32_MAX);
  }

  Grammar run() {
    uint32_t r = g_.add_rule("root");
    Expr body = compile(root_, "#", 0);
    g_.define(r, seq({ref(gen(kWs)), std::move(body), ref(gen(kWs))}));
    g_.set_root(r);
    return std::move(g_);
  }

  Grammar object_only() {
    uint32_t r = g_.add_rule("root");
    g_.define(r, seq({ref(gen(kWs)), ref(gen(kObject)), ref(gen(kWs))}));
    g_.set_root(r);
    return std::move(g_);
  }

 private:
  [[noreturn]] static void fail(const std::string& path, const std::string& what) {
    throw Error("json_schema " + path + ": " + what);
  }

  // The generic JSON rules, made on first use.
  uint32_t gen(Gen k) {
    if (gen_[k] != UINT32_MAX) return gen_[k];
    static const char* const kNames[] = {"ws",   "value",  "object",  "array",   "string",
                                         "char", "number", "integer", "boolean", "null"};
    uint32_t r = gen_[k] = g_.add_rule(kNames[k]);
    Expr ws = ref(r);
    if (k != kWs) ws = ref(gen(kWs));
    Expr comma = seq({ws, lit(","), ws});
    Expr hex = chars({{'0', '9'}, {'A', 'F'}, {'a', 'f'}});
    switch (k) {
      case kWs:
        g_.define(r, opt(alt({chars({{' ', ' '}, {'\t', '\t'}}),
                              seq({opt(lit("\r")), lit("\n"),
                                   repeat(chars({{' ', ' '}, {'\t', '\t'}}), 0, kMaxIndent)})})));
        break;
      case kValue:
        g_.define(r, alt({ref(gen(kObject)), ref(gen(kArray)), ref(gen(kString)), ref(gen(kNumber)),
                          lit("true"), lit("false"), lit("null")}));
        break;
      case kObject: {
        Expr member = seq({ref(gen(kString)), ws, lit(":"), ws, ref(gen(kValue))});
        g_.define(
            r, seq({lit("{"), ws, opt(seq({member, star(seq({comma, member})), ws})), lit("}")}));
        break;
      }
      case kArray: {
        Expr v = ref(gen(kValue));
        g_.define(r, seq({lit("["), ws, opt(seq({v, star(seq({comma, v})), ws})), lit("]")}));
        break;
      }
      case kString:
        g_.define(r, seq({lit("\""), star(ref(gen(kChar))), lit("\"")}));
        break;
      case kChar: {
        // \u escapes: never a lone surrogate (JSON parsers reject those), pairs in order.
        Expr u =
            alt({seq({chars({{'0', '9'}, {'A', 'C'}, {'E', 'F'}, {'a', 'c'}, {'e', 'f'}}), hex, hex,
                      hex}),
                 seq({chars({{'D', 'D'}, {'d', 'd'}}), chars({{'0', '7'}}), hex, hex}),
                 seq({chars({{'D', 'D'}, {'d', 'd'}}), chars({{'8', '9'}, {'A', 'B'}, {'a', 'b'}}),
                      hex, hex, lit("\\u"), chars({{'D', 'D'}, {'d', 'd'}}),
                      chars({{'C', 'F'}, {'c', 'f'}}), hex, hex})});
        g_.define(r, alt({chars({{0, 0x1F}, {'"', '"'}, {'\\', '\\'}}, true),
                          seq({lit("\\"), alt({chars({{'"', '"'},
                                                      {'\\', '\\'},
                                                      {'/', '/'},
                                                      {'b', 'b'},
                                                      {'f', 'f'},
                                                      {'n', 'n'},
                                                      {'r', 'r'},
                                                      {'t', 't'}}),
                                               seq({lit("u"), u})})})}));
        break;
      }
      case kNumber:
        g_.define(
            r, seq({ref(gen(kInteger)), json_fraction(),
                    opt(seq({chars({{'E', 'E'}, {'e', 'e'}}), opt(chars({{'+', '+'}, {'-', '-'}})),
                             json_digits(1, kMaxExpDigits)}))}));
        break;
      case kInteger:
        g_.define(
            r,
            seq({opt(lit("-")),
                 alt({lit("0"), seq({chars({{'1', '9'}}), json_digits(0, kMaxIntDigits - 1)})})}));
        break;
      case kBoolean:
        g_.define(r, alt({lit("true"), lit("false")}));
        break;
      case kNull:
        g_.define(r, lit("null"));
        break;
      case kGenCount:
        break;
    }
    return r;
  }

  static bool has_assertions(const Json& s, std::initializer_list<const char*> except) {
    for (const char* k : kAssertions) {
      if (!s.contains(k)) continue;
      if (std::none_of(except.begin(), except.end(),
                       [&](const char* e) { return std::string(e) == k; }))
        return true;
    }
    return false;
  }

  static Json without(const Json& s, const char* key) {
    Json out = s;
    out.erase(key);
    return out;
  }

  const Json& resolve(const Json& ref_value, const std::string& path) {
    if (!ref_value.is_string()) fail(path, "$ref must be a string");
    const std::string& p = ref_value.get_ref<const std::string&>();
    if (p.empty() || p[0] != '#')
      fail(path, "remote $ref \"" + p + "\" is not supported (only #...)");
    const Json* cur = &root_;
    size_t pos = 1;
    if (pos < p.size() && p[pos] != '/')
      fail(path, "$ref \"" + p + "\": anchors are not supported");
    while (pos < p.size()) {
      size_t next = p.find('/', pos + 1);
      std::string tok =
          p.substr(pos + 1, next == std::string::npos ? std::string::npos : next - pos - 1);
      std::string key;  // RFC 6901: ~1 is '/', ~0 is '~'
      for (size_t i = 0; i < tok.size(); ++i) {
        if (tok[i] == '~' && i + 1 < tok.size() && (tok[i + 1] == '0' || tok[i + 1] == '1')) {
          key += tok[i + 1] == '1' ? '/' : '~';
          ++i;
        } else {
          key += tok[i];
        }
      }
      if (cur->is_object() && cur->contains(key)) {
        cur = &(*cur)[key];
      } else if (cur->is_array() && !key.empty() &&
                 std::all_of(key.begin(), key.end(), [](char c) { return c >= '0' && c <= '9'; }) &&
                 std::stoull(key) < cur->size()) {
        cur = &(*cur)[std::stoull(key)];
      } else {
        fail(path, "$ref \"" + p + "\" does not point into the schema");
      }
      pos = next == std::string::npos ? p.size() : next;
    }
    return *cur;
  }

  uint32_t ref_rule(const Json& ref_value, const std::string& path, int depth) {
    const Json& target = resolve(ref_value, path);
    const std::string& p = ref_value.get_ref<const std::string&>();
    if (auto it = refs_.find(p); it != refs_.end()) return it->second;
    std::string name = "ref";
    for (char c : p.substr(p.rfind('/') == std::string::npos ? 1 : p.rfind('/') + 1)) {
      bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
      if (ok) name += c;
    }
    if (name == "ref") name = "ref-root";
    uint32_t r = g_.add_rule(name);
    refs_.emplace(p, r);  // before compiling the target: recursion refers to this rule
    g_.define(r, compile(target, p, depth + 1));
    return r;
  }

  // A schema as one plain object: its $ref and allOf merged in (for allOf/anyOf merging).
  Json flatten(const Json& s, const std::string& path, int depth) {
    if (depth > kMaxDepth) fail(path, "schema nested too deeply (over 64 levels)");
    if (s.is_boolean()) {
      if (s.get<bool>()) return Json::object();
      fail(path, "the schema false matches nothing");
    }
    if (!s.is_object()) fail(path, "a schema must be an object or a boolean");
    Json out = s;
    if (s.contains("$ref")) {
      out = merge(flatten(resolve(s["$ref"], path), path, depth + 1), without(s, "$ref"), path);
    }
    if (out.contains("allOf")) {
      const Json& all = out["allOf"];
      if (!all.is_array() || all.empty()) fail(path, "allOf must be a non-empty array");
      Json base = without(out, "allOf");
      for (size_t i = 0; i < all.size(); ++i) {
        std::string p = path + "/allOf/" + std::to_string(i);
        base = merge(base, flatten(all[i], p, depth + 1), p);
      }
      out = std::move(base);
    }
    return out;
  }

  static Json as_type_list(const Json& t) { return t.is_array() ? t : Json::array({t}); }

  // Both schemas must hold: one schema that means the same for the keywords we support.
  Json merge(const Json& a, const Json& b, const std::string& path) {
    Json out = a;
    for (auto it = b.begin(); it != b.end(); ++it) {
      const std::string& k = it.key();
      const Json& v = it.value();
      if (!out.contains(k)) {
        out[k] = v;
        continue;
      }
      Json& cur = out[k];
      if (cur == v) continue;
      if (k == "properties" && cur.is_object() && v.is_object()) {
        for (auto p = v.begin(); p != v.end(); ++p) {
          if (cur.contains(p.key())) {
            cur[p.key()] = Json{{"allOf", Json::array({cur[p.key()], p.value()})}};
          } else {
            cur[p.key()] = p.value();
          }
        }
      } else if (k == "required" && cur.is_array() && v.is_array()) {
        for (const Json& name : v) {
          if (std::find(cur.begin(), cur.end(), name) == cur.end()) cur.push_back(name);
        }
      } else if (k == "type") {
        Json both = Json::array();
        Json ta = as_type_list(cur), tb = as_type_list(v);
        for (const Json& x : ta) {
          for (const Json& y : tb) {
            if (x == y || (x == "number" && y == "integer"))
              both.push_back(y);
            else if (x == "integer" && y == "number")
              both.push_back(x);
          }
        }
        if (both.empty())
          fail(path, "allOf: the types " + cur.dump() + " and " + v.dump() + " exclude each other");
        cur = both.size() == 1 ? both[0] : both;
      } else if ((k == "minimum" || k == "minLength" || k == "minItems" || k == "minProperties") &&
                 cur.is_number() && v.is_number()) {
        if (v > cur) cur = v;
      } else if ((k == "maximum" || k == "maxLength" || k == "maxItems" || k == "maxProperties") &&
                 cur.is_number() && v.is_number()) {
        if (v < cur) cur = v;
      } else if (k == "additionalProperties" && (cur == false || v == false)) {
        cur = false;
      } else if (k == "enum" && cur.is_array() && v.is_array()) {
        Json both = Json::array();
        for (const Json& x : cur) {
          if (std::find(v.begin(), v.end(), x) != v.end()) both.push_back(x);
        }
        cur = std::move(both);  // empty: compile_enum reports it
      } else if (k == "items" && cur.is_object() && v.is_object()) {
        cur = Json{{"allOf", Json::array({cur, v})}};
      } else if (std::none_of(std::begin(kAssertions), std::end(kAssertions),
                              [&](const char* x) { return k == x; })) {
        // annotations: keep the first
      } else {
        fail(path, "allOf: merging two different '" + k + "' is not supported");
      }
    }
    return out;
  }

  Expr compile(const Json& s, const std::string& path, int depth) {
    if (depth > kMaxDepth) fail(path, "schema nested too deeply (over 64 levels)");
    if (s.is_boolean()) {
      if (s.get<bool>()) return ref(gen(kValue));
      fail(path, "the schema false matches nothing");
    }
    if (!s.is_object()) fail(path, "a schema must be an object or a boolean");
    for (const char* k : kUnsupported) {
      if (s.contains(k)) fail(path, std::string("the keyword '") + k + "' is not supported");
    }
    if (s.contains("uniqueItems") && s["uniqueItems"] == true) {
      fail(path, "the keyword 'uniqueItems' is not supported");
    }
    if (s.contains("$ref")) {
      if (!has_assertions(s, {"$ref"})) return ref(ref_rule(s["$ref"], path, depth));
      return compile(flatten(s, path, depth), path, depth + 1);
    }
    if (s.contains("allOf")) return compile(flatten(s, path, depth), path, depth + 1);
    if (s.contains("anyOf") || s.contains("oneOf")) {
      if (s.contains("anyOf") && s.contains("oneOf"))
        fail(path, "anyOf together with oneOf is not supported");
      const char* key = s.contains("anyOf") ? "anyOf" : "oneOf";
      const Json& branches = s[key];
      if (!branches.is_array() || branches.empty())
        fail(path, std::string(key) + " must be a non-empty array");
      Json rest = without(s, key);
      bool shared = has_assertions(rest, {});
      std::vector<Expr> alts;
      for (size_t i = 0; i < branches.size(); ++i) {
        std::string p = path + "/" + key + "/" + std::to_string(i);
        alts.push_back(
            shared ? compile(merge(rest, flatten(branches[i], p, depth + 1), p), p, depth + 1)
                   : compile(branches[i], p, depth + 1));
      }
      return alt(std::move(alts));
    }
    if (s.contains("nullable") && s["nullable"] == true) {
      return alt({compile(without(s, "nullable"), path, depth + 1), lit("null")});
    }
    if (s.contains("const") || s.contains("enum")) return compile_enum(s, path);

    std::vector<std::string> types;
    if (s.contains("type")) {
      for (const Json& t : as_type_list(s["type"])) {
        if (!t.is_string()) fail(path, "type must be a string or an array of strings");
        types.push_back(t.get<std::string>());
      }
      if (types.empty()) fail(path, "type must not be an empty array");
    } else {
      auto any = [&](std::initializer_list<const char*> keys) {
        return std::any_of(keys.begin(), keys.end(), [&](const char* k) { return s.contains(k); });
      };
      if (any({"properties", "required", "additionalProperties", "minProperties", "maxProperties"}))
        types.push_back("object");
      if (any({"items", "prefixItems", "additionalItems", "minItems", "maxItems"}))
        types.push_back("array");
      if (any({"minLength", "maxLength", "pattern", "format"})) types.push_back("string");
      if (any({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}))
        types.push_back("number");
      if (types.empty()) return ref(gen(kValue));
    }
    std::vector<Expr> alts;
    for (const std::string& t : types) alts.push_back(compile_type(s, t, path, depth));
    return alt(std::move(alts));
  }

  static bool type_matches(const Json& v, const Json& type) {
    if (type.is_null()) return true;
    for (const Json& t : as_type_list(type)) {
      if ((t == "null" && v.is_null()) || (t == "boolean" && v.is_boolean()) ||
          (t == "string" && v.is_string()) || (t == "array" && v.is_array()) ||
          (t == "object" && v.is_object()) || (t == "number" && v.is_number()) ||
          (t == "integer" &&
           (v.is_number_integer() ||
            (v.is_number_float() && std::floor(v.get<double>()) == v.get<double>()))))
        return true;
    }
    return false;
  }

  Expr compile_enum(const Json& s, const std::string& path) {
    Json values = Json::array();
    if (s.contains("const")) {
      values.push_back(s["const"]);
      if (s.contains("enum") &&
          (!s["enum"].is_array() ||
           std::find(s["enum"].begin(), s["enum"].end(), s["const"]) == s["enum"].end())) {
        fail(path, "const is not one of enum");
      }
    } else {
      if (!s["enum"].is_array()) fail(path, "enum must be an array");
      values = s["enum"];
    }
    Json type = s.contains("type") ? s["type"] : Json();
    std::vector<Expr> alts;
    for (const Json& v : values) {
      if (type_matches(v, type)) alts.push_back(lit(v.dump()));
    }
    if (alts.empty()) fail(path, "no enum/const value matches the schema's type");
    return alt(std::move(alts));
  }

  Expr compile_type(const Json& s, const std::string& t, const std::string& path, int depth) {
    if (t == "null") return ref(gen(kNull));
    if (t == "boolean") return ref(gen(kBoolean));
    if (t == "integer" || t == "number") return compile_number(s, t == "integer", path);
    if (t == "string") return compile_string(s, path);
    if (t == "array") return compile_array(s, path, depth);
    if (t == "object") return compile_object(s, path, depth);
    fail(path, "unknown type \"" + t + "\"");
  }

  static double number_of(const Json& s, const char* key, const std::string& path) {
    if (!s[key].is_number()) fail(path, std::string(key) + " must be a number");
    return s[key].get<double>();
  }

  static uint32_t count_of(const Json& s, const char* key, const std::string& path) {
    const Json& v = s[key];
    if (!v.is_number_integer() || v.get<int64_t>() < 0)
      fail(path, std::string(key) + " must be a non-negative integer");
    if (v.get<int64_t>() > 100000) fail(path, std::string(key) + " over 100000 is not supported");
    return static_cast<uint32_t>(v.get<int64_t>());
  }

  static Bounds read_bounds(const Json& s, const std::string& path) {
    Bounds b;
    if (s.contains("minimum")) b.lo = number_of(s, "minimum", path);
    if (s.contains("maximum")) b.hi = number_of(s, "maximum", path);
    if (s.contains("exclusiveMinimum")) {
      const Json& v = s["exclusiveMinimum"];
      if (v.is_boolean()) {  // draft 4: modifies minimum
        b.lo_ex = v.get<bool>() && b.lo;
      } else {
        double x = number_of(s, "exclusiveMinimum", path);
        if (!b.lo || x >= *b.lo) b.lo = x, b.lo_ex = true;
      }
    }
    if (s.contains("exclusiveMaximum")) {
      const Json& v = s["exclusiveMaximum"];
      if (v.is_boolean()) {
        b.hi_ex = v.get<bool>() && b.hi;
      } else {
        double x = number_of(s, "exclusiveMaximum", path);
        if (!b.hi || x <= *b.hi) b.hi = x, b.hi_ex = true;
      }
    }
    if (b.lo && std::fabs(*b.lo) > kMaxBound) b.lo.reset();
    if (b.hi && std::fabs(*b.hi) > kMaxBound) b.hi.reset();
    return b;
  }

  Expr compile_number(const Json& s, bool integer, const std::string& path) {
    Bounds b = read_bounds(s, path);
    if (!b.lo && !b.hi) return ref(gen(integer ? kInteger : kNumber));
    if (integer) {
      std::optional<int64_t> lo, hi;
      if (b.lo) lo = static_cast<int64_t>(b.lo_ex ? std::floor(*b.lo) + 1 : std::ceil(*b.lo));
      if (b.hi) hi = static_cast<int64_t>(b.hi_ex ? std::ceil(*b.hi) - 1 : std::floor(*b.hi));
      if (lo && hi && *lo > *hi) fail(path, "no integer lies between minimum and maximum");
      return json_int_range(lo, hi);
    }
    // Non-integral bounds are widened to integers (documented in the header).
    std::optional<int64_t> lo, hi;
    bool lo_ex = false, hi_ex = false;
    if (b.lo) {
      lo = static_cast<int64_t>(std::floor(*b.lo));
      lo_ex = b.lo_ex && std::floor(*b.lo) == *b.lo;
    }
    if (b.hi) {
      hi = static_cast<int64_t>(std::ceil(*b.hi));
      hi_ex = b.hi_ex && std::ceil(*b.hi) == *b.hi;
    }
    std::optional<Expr> e = json_number_range(lo, lo_ex, hi, hi_ex);
    if (!e) fail(path, "no number lies between minimum and maximum");
    return std::move(*e);
  }

  Expr compile_string(const Json& s, const std::string& path) {
    bool lengths = s.contains("minLength") || s.contains("maxLength");
    uint32_t min = s.contains("minLength") ? count_of(s, "minLength", path) : 0;
    uint32_t max = s.contains("maxLength") ? count_of(s, "maxLength", path) : kUnbounded;
    if (max < min) fail(path, "maxLength is below minLength");
    std::optional<Expr> format;
    if (s.contains("format") && s["format"].is_string())
      format = json_string_format(s["format"].get<std::string>());
    Expr body;
    if (s.contains("pattern")) {
      if (!s["pattern"].is_string()) fail(path, "pattern must be a string");
      if (lengths) fail(path, "pattern together with minLength/maxLength is not supported");
      if (format) fail(path, "pattern together with format is not supported");
      try {
        body = json_escape_expr(regex_to_expr(s["pattern"].get<std::string>()));
      } catch (const Error& e) {
        fail(path, e.what());
      }
    } else if (format) {
      if (lengths) fail(path, "format together with minLength/maxLength is not supported");
      body = std::move(*format);
    } else {
      if (!lengths) return ref(gen(kString));
      body = repeat(ref(gen(kChar)), min, max);
    }
    return seq({lit("\""), std::move(body), lit("\"")});
  }

  Expr compile_array(const Json& s, const std::string& path, int depth) {
    uint32_t min = s.contains("minItems") ? count_of(s, "minItems", path) : 0;
    uint32_t max = s.contains("maxItems") ? count_of(s, "maxItems", path) : kUnbounded;
    if (max < min) fail(path, "maxItems is below minItems");
    const Json* prefix = nullptr;
    const Json* rest = nullptr;  // the schema of the items after the prefix; null: none
    std::string prefix_path, rest_path;
    if (s.contains("prefixItems")) {
      prefix = &s["prefixItems"];
      prefix_path = path + "/prefixItems/";
      if (s.contains("items")) rest = &s["items"], rest_path = path + "/items";
    } else if (s.contains("items") && s["items"].is_array()) {  // draft 4-7 tuple
      prefix = &s["items"];
      prefix_path = path + "/items/";
      if (s.contains("additionalItems"))
        rest = &s["additionalItems"], rest_path = path + "/additionalItems";
    } else {
      static const Json kAny = true;
      rest = s.contains("items") ? &s["items"] : &kAny;
      rest_path = path + "/items";
    }
    if (prefix && !prefix->is_array()) fail(path, "prefixItems must be an array");
    if (rest && *rest == false) rest = nullptr;

    Expr ws = ref(gen(kWs));
    Expr comma = seq({ws, lit(","), ws});
    std::vector<Expr> items;  // the fixed part, commas included
    uint32_t k = prefix ? std::min<uint32_t>(static_cast<uint32_t>(prefix->size()), max) : 0;
    for (uint32_t i = 0; i < k; ++i) {
      if (i) items.push_back(comma);
      items.push_back(compile((*prefix)[i], prefix_path + std::to_string(i), depth + 1));
    }
    uint32_t emin = min > k ? min - k : 0;
    uint32_t emax = max == kUnbounded ? kUnbounded : max - k;
    if (!rest) emax = 0;
    if (emin > emax) fail(path, "minItems needs more items than the schema allows");
    if (emax > 0) {
      Expr item = compile(*rest, rest_path, depth + 1);
      if (k > 0) {
        items.push_back(repeat(seq({comma, item}), emin, emax));
      } else {
        uint32_t tail_max = emax == kUnbounded ? kUnbounded : emax - 1;
        Expr first = seq({item, repeat(seq({comma, item}), emin > 0 ? emin - 1 : 0, tail_max)});
        if (emin == 0) {
          return seq({lit("["), ws, opt(seq({first, ws})), lit("]")});
        }
        items.push_back(std::move(first));
      }
    }
    if (items.empty()) return seq({lit("["), ws, lit("]")});
    return seq({lit("["), ws, seq(std::move(items)), ws, lit("]")});
  }

  // The body of a key string that is none of the names in `cands` (all sharing their first
  // prefix_len bytes with the key so far): raw characters only, no escapes.
  Expr other_key(size_t prefix_len, const std::vector<const std::string*>& cands) {
    Expr keychar = chars({{0, 0x1F}, {'"', '"'}, {'\\', '\\'}}, true);
    std::vector<Expr> alts;
    bool is_name = false;
    std::vector<std::pair<uint32_t, std::vector<const std::string*>>> next;  // by next code point
    for (const std::string* n : cands) {
      if (n->size() == prefix_len) {
        is_name = true;
        continue;
      }
      unsigned char c = static_cast<unsigned char>((*n)[prefix_len]);
      size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : 4;
      uint32_t cp = len == 1 ? c : (c & (0x7F >> len));
      for (size_t i = 1; i < len && prefix_len + i < n->size(); ++i)
        cp = (cp << 6) | (static_cast<unsigned char>((*n)[prefix_len + i]) & 0x3F);
      auto it =
          std::find_if(next.begin(), next.end(), [&](const auto& x) { return x.first == cp; });
      if (it == next.end())
        next.push_back({cp, {n}});
      else
        it->second.push_back(n);
    }
    if (!is_name) alts.push_back(empty());  // the key may end here
    std::vector<CharRange> used;
    for (auto& [cp, group] : next) {
      used.push_back({cp, cp});
      size_t len = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
      std::string ch = group[0]->substr(prefix_len, len);
      alts.push_back(seq({lit(ch), other_key(prefix_len + len, group)}));
    }
    // A character no name continues with: any key from here on differs from every name.
    used.push_back({0, 0x1F});
    used.push_back({'"', '"'});
    used.push_back({'\\', '\\'});
    alts.push_back(seq({chars(used, true), star(keychar)}));
    return alt(std::move(alts));
  }

  Expr compile_object(const Json& s, const std::string& path, int depth) {
    std::vector<std::pair<std::string, Json>> props;
    if (s.contains("properties")) {
      const Json& p = s["properties"];
      if (!p.is_object()) fail(path, "properties must be an object");
      for (auto it = p.begin(); it != p.end(); ++it) props.push_back({it.key(), it.value()});
    }
    std::vector<bool> required(props.size(), opt_.strict);
    if (s.contains("required")) {
      if (!s["required"].is_array()) fail(path, "required must be an array of strings");
      for (const Json& r : s["required"]) {
        if (!r.is_string()) fail(path, "required must be an array of strings");
        const std::string name = r.get<std::string>();
        auto it = std::find_if(props.begin(), props.end(),
                               [&](const auto& x) { return x.first == name; });
        if (it == props.end()) {
          props.push_back({name, Json::object()});
          required.push_back(true);
        } else {
          required[static_cast<size_t>(it - props.begin())] = true;
        }
      }
    }
    // Extra keys: explicit true/schema; absent means "any" only for objects without
    // properties (generating undeclared keys next to declared ones helps nobody).
    const Json* extra = nullptr;
    std::string extra_path = path + "/additionalProperties";
    static const Json kAny = true;
    if (s.contains("additionalProperties")) {
      if (s["additionalProperties"] != false) extra = &s["additionalProperties"];
    } else if (props.empty()) {
      extra = &kAny;
    }
    if (opt_.strict) extra = nullptr;
    size_t n_required = static_cast<size_t>(std::count(required.begin(), required.end(), true));
    if (s.contains("minProperties") && count_of(s, "minProperties", path) > n_required) {
      fail(path, "minProperties above the number of required properties is not supported");
    }
    if (s.contains("maxProperties") &&
        (extra || count_of(s, "maxProperties", path) < props.size())) {
      fail(path, "maxProperties below the number of possible properties is not supported");
    }

    Expr ws = ref(gen(kWs));
    Expr comma = seq({ws, lit(","), ws});
    // Each value is referenced from two places below: give it a rule unless it is one.
    std::string base = "obj" + std::to_string(++n_objects_);
    auto as_rule = [&](Expr e, const std::string& name) {
      return e.kind == Expr::Kind::Ref ? e : ref(g_.add_rule(name, std::move(e)));
    };
    std::vector<Expr> kv;
    for (size_t i = 0; i < props.size(); ++i) {
      std::string p = path + "/properties/" + props[i].first;
      Expr value = as_rule(compile(props[i].second, p, depth + 1), base + "-v" + std::to_string(i));
      kv.push_back(seq({lit(Json(props[i].first).dump()), ws, lit(":"), ws, std::move(value)}));
    }
    std::optional<Expr> extra_kv;
    if (extra) {
      // Names that need escapes cannot be spelled by an escape-free key anyway.
      std::vector<const std::string*> cands;
      for (const auto& p : props) {
        bool plain = std::none_of(p.first.begin(), p.first.end(), [](char c) {
          return c == '"' || c == '\\' || static_cast<unsigned char>(c) < 0x20;
        });
        if (plain) cands.push_back(&p.first);
      }
      Expr key =
          props.empty() ? ref(gen(kString)) : seq({lit("\""), other_key(0, cands), lit("\"")});
      extra_kv = as_rule(seq({key, ws, lit(":"), ws, compile(*extra, extra_path, depth + 1)}),
                         base + "-extra");
    }
    // The properties in order, each present or (when optional) absent, with commas only
    // between present ones:
    //   after[i]: at least one property was written; continue from property i
    //   first[i]: none written yet; the first one written is property i or later
    size_t n = props.size();
    Expr after = extra_kv ? star(seq({comma, *extra_kv})) : empty();
    std::optional<Expr> first;  // nullopt: no way to write a first property from here
    if (extra_kv) first = seq({*extra_kv, after});
    for (size_t i = n; i-- > 0;) {
      Expr take_first = seq({kv[i], after});
      std::vector<Expr> f{std::move(take_first)};
      if (!required[i] && first) f.push_back(*first);
      Expr fi = alt(std::move(f));
      Expr take = seq({comma, kv[i], after});
      if (i == 0) {
        // after[0] is never used
      } else if (!required[i]) {
        after =
            ref(g_.add_rule(base + "-after" + std::to_string(i), alt({std::move(take), after})));
      } else {
        after = std::move(take);
      }
      first = required[i] ? std::move(fi)
                          : ref(g_.add_rule(base + "-first" + std::to_string(i), std::move(fi)));
    }
    if (!first) return seq({lit("{"), ws, lit("}")});
    if (n_required == 0) return seq({lit("{"), ws, opt(seq({std::move(*first), ws})), lit("}")});
    return seq({lit("{"), ws, std::move(*first), ws, lit("}")});
  }

  const Json& root_;
  JsonSchemaOptions opt_;
  Grammar g_;
  std::array<uint32_t, kGenCount> gen_;
  std::unordered_map<std::string, uint32_t> refs_;  // $ref pointer -> rule
  int n_objects_ = 0;
};

}  // namespace

Grammar json_schema_to_grammar(const nlohmann::ordered_json& schema, const JsonSchemaOptions& opt) {
  return SchemaCompiler(schema, opt).run();
}

Grammar json_object_grammar() {
  static const Json kEmpty = Json::object();
  return SchemaCompiler(kEmpty, {}).object_only();
}

}  // namespace llm
