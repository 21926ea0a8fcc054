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
  const char* example = "";  // a valid document the grammar must accept
};

inline std::vector<SchemaCase> schema_cases() {
  return {
      {"json_object", "", false, R"({"a": [1, 2.5e-3, {"b": null}], "c": "é😀\n", "d": {}})"},
      {"nested objects", R"({"type": "object", "properties": {
          "name": {"type": "string", "maxLength": 12},
          "age": {"type": "integer", "minimum": 0, "maximum": 150},
          "address": {"type": "object", "properties": {
              "street": {"type": "string"}, "zip": {"type": "string", "pattern": "^[0-9]{5}$"},
              "geo": {"type": "object", "properties": {"lat": {"type": "number"}, "lon": {"type": "number"}},
                      "required": ["lat", "lon"]}},
            "required": ["zip", "geo"]},
          "nick": {"type": ["string", "null"]}},
        "required": ["name", "address"]})",
       false,
       R"({"name": "Zoë", "age": 42, "address": {"zip": "12345", "geo": {"lat": 1.5e-7, "lon": -2E+30}}, "nick": null})"},
      {"arrays", R"({"type": "object", "properties": {
          "ints": {"type": "array", "items": {"type": "integer", "minimum": -5, "maximum": 300},
                   "minItems": 1, "maxItems": 4},
          "matrix": {"type": "array", "items": {"type": "array", "items": {"type": "number"}, "maxItems": 3},
                     "maxItems": 3},
          "tuple": {"type": "array", "prefixItems": [{"type": "string", "maxLength": 4}, {"type": "boolean"}],
                    "items": {"type": "null"}, "maxItems": 4}},
        "required": ["ints", "matrix", "tuple"]})",
       false, R"({"ints": [1, 300, -5], "matrix": [[1.5, 2], []], "tuple": ["ab", true, null]})"},
      {"enums", R"({"type": "object", "properties": {
          "color": {"enum": ["red", "green", "blue \"dark\"", null, 42, {"rgb": [1, 2]}]},
          "size": {"const": "XL"},
          "level": {"type": "string", "enum": ["low", "high", 3]}},
        "required": ["color", "size", "level"], "additionalProperties": false})",
       false, R"({"color": {"rgb":[1,2]}, "size": "XL", "level": "high"})"},
      {"anyOf", R"({"type": "array", "minItems": 2, "maxItems": 5, "items": {"anyOf": [
          {"type": "string", "maxLength": 5},
          {"type": "number", "exclusiveMinimum": 0, "maximum": 10},
          {"type": "object", "properties": {"k": {"type": "boolean"}}, "required": ["k"],
           "additionalProperties": false},
          {"type": "null"}]}})",
       false, R"(["abc", 10, {"k": true}, null])"},
      {"$ref recursion", R"({"$defs": {"node": {"type": "object", "properties": {
            "value": {"type": "integer"},
            "children": {"type": "array", "items": {"$ref": "#/$defs/node"}, "maxItems": 2}},
          "required": ["value", "children"], "additionalProperties": false}},
        "$ref": "#/$defs/node"})",
       false,
       R"({"value": 1, "children": [{"value": 2, "children": []}, {"value": 3, "children": [{"value": 4, "children": []}]}]})"},
      {"strings", R"({"type": "object", "properties": {
          "text": {"type": "string", "minLength": 3, "maxLength": 30},
          "quoted": {"type": "string", "pattern": "^[a-c]+ ?\"[0-9]{2}\\\\[\\n\\t]$"},
          "greek": {"type": "string", "pattern": "^[α-ω]{2,4}(€|\\u00e9)$"},
          "free": {"type": "string"}},
        "required": ["text", "quoted", "greek", "free"]})",
       false,
       R"({"text": "h\u00e9llo \"x\"", "quoted": "abc \"42\\\t", "greek": "αβγ€", "free": "日本語 \\ \/ \ud83d\ude00"})"},
      {"numbers", R"({"type": "object", "properties": {
          "any": {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 8},
          "unit": {"type": "number", "minimum": 0, "maximum": 1},
          "neg": {"type": "number", "exclusiveMaximum": -2},
          "small": {"type": "integer", "exclusiveMinimum": -20, "exclusiveMaximum": 20}},
        "required": ["any", "unit", "neg", "small"]})",
       false, R"({"any": [1.5e-7, -2E+30, 0.5, 3], "unit": 0.25, "neg": -3.5, "small": -19})"},
      {"formats", R"({"type": "object", "properties": {
          "d": {"type": "string", "format": "date"}, "dt": {"type": "string", "format": "date-time"},
          "u": {"type": "string", "format": "uuid"}, "e": {"type": "string", "format": "email"},
          "ip": {"type": "string", "format": "ipv4"}},
        "required": ["d", "dt", "u", "e", "ip"]})",
       false,
       R"({"d": "2024-02-29", "dt": "2024-02-29T12:00:00.5+01:00", "u": "123e4567-e89b-12d3-a456-426614174000", "e": "john.doe@example.com", "ip": "10.0.0.255"})"},
      {"allOf + definitions", R"({"definitions": {"base": {"type": "object",
            "properties": {"id": {"type": "integer", "minimum": 1}}, "required": ["id"]}},
        "allOf": [{"$ref": "#/definitions/base"},
                  {"properties": {"ok": {"type": "boolean"}, "note": {"type": "string", "maxLength": 8}},
                   "required": ["ok"]}]})",
       false, R"({"id": 7, "ok": true, "note": "hi"})"},
      {"additionalProperties",
       R"({"type": "object", "properties": {"a": {"type": "integer"}, "ab": {"type": "null"}},
        "additionalProperties": {"type": "string", "maxLength": 3}})",
       false, R"({"a": 1, "b": "xyz", "abc": "q"})"},
      {"strict", R"({"type": "object", "properties": {
          "x": {"type": "string", "maxLength": 6}, "y": {"type": "integer"},
          "z": {"type": "object", "properties": {"w": {"type": "boolean"}}}}})",
       true, R"({"x": "short", "y": -4, "z": {"w": false}})"},
  };
}

}  // namespace llm::test
