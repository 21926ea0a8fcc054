// Schemas that the JSON Schema and token-constraint tests generate from (random walks)
// and validate against (tests/json_validator.h).
#pragma once
#include <string>
#include <vector>

namespace llm::test {

struct SchemaCase {
  const char* name;
  const char* schema;  // JSON text; "" = json_object mode (any object)
  bool strict = false;
};

inline std::vector<SchemaCase> schema_cases() {
  return {
      {"json_object", ""},
      {"nested objects", R"({"type": "object", "properties": {
          "name": {"type": "string", "maxLength": 12},
          "age": {"type": "integer", "minimum": 0, "maximum": 150},
          "address": {"type": "object", "properties": {
              "street": {"type": "string"}, "zip": {"type": "string", "pattern": "^[0-9]{5}$"},
              "geo": {"type": "object", "properties": {"lat": {"type": "number"}, "lon": {"type": "number"}},
                      "required": ["lat", "lon"]}},
            "required": ["zip", "geo"]},
          "nick": {"type": ["string", "null"]}},
        "required": ["name", "address"]})"},
      {"arrays", R"({"type": "object", "properties": {
          "ints": {"type": "array", "items": {"type": "integer", "minimum": -5, "maximum": 300},
                   "minItems": 1, "maxItems": 4},
          "matrix": {"type": "array", "items": {"type": "array", "items": {"type": "number"}, "maxItems": 3},
                     "maxItems": 3},
          "tuple": {"type": "array", "prefixItems": [{"type": "string", "maxLength": 4}, {"type": "boolean"}],
                    "items": {"type": "null"}, "maxItems": 4}},
        "required": ["ints", "matrix", "tuple"]})"},
      {"enums", R"({"type": "object", "properties": {
          "color": {"enum": ["red", "green", "blue \"dark\"", null, 42, {"rgb": [1, 2]}]},
          "size": {"const": "XL"},
          "level": {"type": "string", "enum": ["low", "high", 3]}},
        "required": ["color", "size", "level"], "additionalProperties": false})"},
      {"anyOf", R"({"type": "array", "minItems": 2, "maxItems": 5, "items": {"anyOf": [
          {"type": "string", "maxLength": 5},
          {"type": "number", "exclusiveMinimum": 0, "maximum": 10},
          {"type": "object", "properties": {"k": {"type": "boolean"}}, "required": ["k"],
           "additionalProperties": false},
          {"type": "null"}]}})"},
      {"$ref recursion", R"({"$defs": {"node": {"type": "object", "properties": {
            "value": {"type": "integer"},
            "children": {"type": "array", "items": {"$ref": "#/$defs/node"}, "maxItems": 2}},
          "required": ["value", "children"], "additionalProperties": false}},
        "$ref": "#/$defs/node"})"},
      {"strings", R"({"type": "object", "properties": {
          "text": {"type": "string", "minLength": 3, "maxLength": 30},
          "quoted": {"type": "string", "pattern": "^[a-c]+ ?\"[0-9]{2}\\\\[\\n\\t]$"},
          "greek": {"type": "string", "pattern": "^[α-ω]{2,4}(€|\\u00e9)$"},
          "free": {"type": "string"}},
        "required": ["text", "quoted", "greek", "free"]})"},
      {"numbers", R"({"type": "object", "properties": {
          "any": {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 8},
          "unit": {"type": "number", "minimum": 0, "maximum": 1},
          "neg": {"type": "number", "exclusiveMaximum": -2},
          "small": {"type": "integer", "exclusiveMinimum": -20, "exclusiveMaximum": 20}},
        "required": ["any", "unit", "neg", "small"]})"},
      {"formats", R"({"type": "object", "properties": {
          "d": {"type": "string", "format": "date"}, "dt": {"type": "string", "format": "date-time"},
          "u": {"type": "string", "format": "uuid"}, "e": {"type": "string", "format": "email"},
          "ip": {"type": "string", "format": "ipv4"}},
        "required": ["d", "dt", "u", "e", "ip"]})"},
      {"allOf + definitions", R"({"definitions": {"base": {"type": "object",
            "properties": {"id": {"type": "integer", "minimum": 1}}, "required": ["id"]}},
        "allOf": [{"$ref": "#/definitions/base"},
                  {"properties": {"ok": {"type": "boolean"}, "note": {"type": "string", "maxLength": 8}},
                   "required": ["ok"]}]})"},
      {"additionalProperties",
       R"({"type": "object", "properties": {"a": {"type": "integer"}, "ab": {"type": "null"}},
        "additionalProperties": {"type": "string", "maxLength": 3}})"},
      {"strict", R"({"type": "object", "properties": {
          "x": {"type": "string", "maxLength": 6}, "y": {"type": "integer"},
          "z": {"type": "object", "properties": {"w": {"type": "boolean"}}}}})",
       true},
  };
}

}  // namespace llm::test
