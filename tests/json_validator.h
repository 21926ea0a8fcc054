// A small JSON Schema validator for the tests, written independently of
// engine/json_schema.cpp: it checks a parsed value against the keywords the tests use
// (type, enum, const, properties, required, additionalProperties, items, prefixItems,
// additionalItems, min/maxItems, min/maxLength, pattern (std::wregex), format, minimum,
// maximum, exclusiveMinimum/Maximum, anyOf, oneOf, allOf, $ref, nullable).
// strict: OpenAI strict mode (all properties required, no others).
#pragma once
#include <cmath>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>

namespace llm::test {

using OJson = nlohmann::ordered_json;

inline std::wstring utf32(const std::string& s) {
  std::wstring w;
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : 4;
    uint32_t cp = n == 1 ? c : (c & (0x7F >> n));
    for (int k = 1; k < n && i + k < s.size(); ++k) {
      cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
    }
    w += static_cast<wchar_t>(cp);
    i += static_cast<size_t>(n);
  }
  return w;
}

class Validator {
 public:
  Validator(const OJson& root, bool strict) : root_(root), strict_(strict) {}

  // Empty when valid, else the first violation with its path.
  std::string check(const OJson& v) { return check(v, root_, "#"); }

 private:
  const OJson& deref(const std::string& ref) {
    const OJson* cur = &root_;
    size_t pos = 1;
    while (pos < ref.size()) {
      size_t next = ref.find('/', pos + 1);
      std::string key =
          ref.substr(pos + 1, next == std::string::npos ? std::string::npos : next - pos - 1);
      cur = &(*cur)[key];
      pos = next == std::string::npos ? ref.size() : next;
    }
    return *cur;
  }

  static bool is_type(const OJson& v, const std::string& t) {
    if (t == "null") return v.is_null();
    if (t == "boolean") return v.is_boolean();
    if (t == "string") return v.is_string();
    if (t == "array") return v.is_array();
    if (t == "object") return v.is_object();
    if (t == "number") return v.is_number();
    if (t == "integer") return v.is_number_integer();
    return false;
  }

  static bool format_ok(const std::string& f, const std::string& s) {
    static const std::regex date(R"(\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01]))");
    static const std::regex time(
        R"(([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d+)?([Zz]|[+-]([01]\d|2[0-3]):[0-5]\d))");
    static const std::regex uuid(
        R"([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})");
    static const std::regex email(
        R"([A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)+)");
    static const std::regex ipv4(
        R"(((25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d))");
    if (f == "date") return std::regex_match(s, date);
    if (f == "time") return std::regex_match(s, time);
    if (f == "date-time") {
      size_t t = s.find_first_of("Tt");
      return t != std::string::npos && std::regex_match(s.substr(0, t), date) &&
             std::regex_match(s.substr(t + 1), time);
    }
    if (f == "uuid") return std::regex_match(s, uuid);
    if (f == "email") return std::regex_match(s, email);
    if (f == "ipv4") return std::regex_match(s, ipv4);
    return true;
  }

  std::string check(const OJson& v, const OJson& s, const std::string& path) {
    if (s.is_boolean()) return s.get<bool>() ? "" : path + ": false schema";
    if (s.contains("$ref")) {
      if (auto e = check(v, deref(s["$ref"].get<std::string>()), path); !e.empty()) return e;
    }
    if (s.contains("nullable") && s["nullable"] == true && v.is_null()) return "";
    if (s.contains("allOf")) {
      for (const OJson& sub : s["allOf"]) {
        if (auto e = check(v, sub, path); !e.empty()) return e;
      }
    }
    if (s.contains("anyOf") || s.contains("oneOf")) {
      const OJson& alts = s.contains("anyOf") ? s["anyOf"] : s["oneOf"];
      int n = 0;
      for (const OJson& sub : alts) n += check(v, sub, path).empty();
      if (n == 0) return path + ": no anyOf/oneOf branch matches";
      if (s.contains("oneOf") && n > 1) return path + ": several oneOf branches match";
    }
    if (s.contains("const") && v != s["const"]) return path + ": not the const";
    if (s.contains("enum") && std::find(s["enum"].begin(), s["enum"].end(), v) == s["enum"].end()) {
      return path + ": not in enum";
    }
    if (s.contains("type")) {
      bool ok = false;
      if (s["type"].is_array()) {
        for (const OJson& t : s["type"]) ok |= is_type(v, t.get<std::string>());
      } else {
        ok = is_type(v, s["type"].get<std::string>());
      }
      if (!ok) return path + ": wrong type " + std::string(v.type_name());
    }
    if (v.is_number()) {
      double x = v.get<double>();
      if (s.contains("minimum") && x < s["minimum"].get<double>()) return path + ": below minimum";
      if (s.contains("maximum") && x > s["maximum"].get<double>()) return path + ": above maximum";
      if (s.contains("exclusiveMinimum") && x <= s["exclusiveMinimum"].get<double>()) {
        return path + ": not above exclusiveMinimum";
      }
      if (s.contains("exclusiveMaximum") && x >= s["exclusiveMaximum"].get<double>()) {
        return path + ": not below exclusiveMaximum";
      }
    }
    if (v.is_string()) {
      const std::string& str = v.get_ref<const std::string&>();
      size_t n = utf32(str).size();
      if (s.contains("minLength") && n < s["minLength"].get<size_t>()) return path + ": too short";
      if (s.contains("maxLength") && n > s["maxLength"].get<size_t>()) return path + ": too long";
      if (s.contains("pattern")) {
        std::wregex re(utf32(s["pattern"].get<std::string>()), std::regex::ECMAScript);
        if (!std::regex_search(utf32(str), re)) return path + ": pattern mismatch";
      }
      if (s.contains("format") && !format_ok(s["format"].get<std::string>(), str)) {
        return path + ": bad " + s["format"].get<std::string>();
      }
    }
    if (v.is_array()) {
      if (s.contains("minItems") && v.size() < s["minItems"].get<size_t>())
        return path + ": too few items";
      if (s.contains("maxItems") && v.size() > s["maxItems"].get<size_t>())
        return path + ": too many items";
      size_t k = 0;
      const OJson* rest = s.contains("items") && !s["items"].is_array() ? &s["items"] : nullptr;
      const OJson* prefix = s.contains("prefixItems")                        ? &s["prefixItems"]
                            : (s.contains("items") && s["items"].is_array()) ? &s["items"]
                                                                             : nullptr;
      if (prefix) {
        if (s.contains("additionalItems")) rest = &s["additionalItems"];
        for (; k < prefix->size() && k < v.size(); ++k) {
          if (auto e = check(v[k], (*prefix)[k], path + "/" + std::to_string(k)); !e.empty())
            return e;
        }
      }
      for (; k < v.size(); ++k) {
        if (!rest) break;
        if (auto e = check(v[k], *rest, path + "/" + std::to_string(k)); !e.empty()) return e;
      }
    }
    if (v.is_object()) {
      const OJson empty = OJson::object();
      const OJson& props = s.contains("properties") ? s["properties"] : empty;
      for (auto it = props.begin(); it != props.end(); ++it) {
        bool req = strict_ ||
                   (s.contains("required") && std::find(s["required"].begin(), s["required"].end(),
                                                        it.key()) != s["required"].end());
        if (!v.contains(it.key())) {
          if (req) return path + ": missing " + it.key();
          continue;
        }
        if (auto e = check(v[it.key()], it.value(), path + "/" + it.key()); !e.empty()) return e;
      }
      if (s.contains("required")) {
        for (const OJson& r : s["required"]) {
          if (!v.contains(r.get<std::string>())) return path + ": missing " + r.get<std::string>();
        }
      }
      for (auto it = v.begin(); it != v.end(); ++it) {
        if (props.contains(it.key())) continue;
        bool listed_required =
            s.contains("required") &&
            std::find(s["required"].begin(), s["required"].end(), it.key()) != s["required"].end();
        if (listed_required) continue;
        if (strict_) return path + ": extra key " + it.key() + " in strict mode";
        if (s.contains("additionalProperties")) {
          if (auto e = check(it.value(), s["additionalProperties"], path + "/" + it.key());
              !e.empty()) {
            return e;
          }
        }
      }
    }
    return "";
  }

  const OJson& root_;
  bool strict_;
};

}  // namespace llm::test
