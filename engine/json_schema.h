// JSON Schema -> Grammar, for OpenAI's response_format (json_object / json_schema).
//
// The grammar generates JSON text that parses and validates against the schema:
//   - type: object, array, string, number, integer, boolean, null, and lists of types;
//     without "type" the type is inferred from the keywords present (else any value).
//   - object: properties in the schema's order; a property is optional unless listed in
//     "required" (strict: all are required); required names missing from "properties"
//     take any value. Other keys only when "additionalProperties" is true or a schema,
//     or when the object lists no properties at all (then any keys, as JSON Schema's
//     default); extra keys come after the listed ones, are spelled without escapes and
//     never repeat a listed name. strict: never any extra key.
//     minProperties/maxProperties only when the listed properties already satisfy them.
//   - array: items, prefixItems (and draft-4 tuple "items" + additionalItems), minItems,
//     maxItems. All prefix items are generated; after them, more items only per "items".
//   - enum, const (any JSON values, written compactly), anyOf, oneOf (as anyOf), allOf
//     (merged into one schema: properties united, required united, types intersected,
//     bounds tightened), $ref to any JSON pointer in the document (#, #/$defs/X,
//     #/definitions/X ...; recursion allowed), nullable (OpenAPI).
//   - string: minLength/maxLength (in code points; an escape is one), pattern (see
//     regex_grammar.h), format date, time (RFC 3339 full-time, offset required),
//     date-time, uuid, email (a practical dot-atom subset), ipv4, hostname. Other formats
//     are annotations: ignored.
//   - integer: minimum/maximum/exclusiveMinimum/exclusiveMaximum exactly (bounds beyond
//     +-1e18 are ignored). number: the same for integral bounds (no exponent is then
//     generated); a non-integral bound is widened to the enclosing integer, so e.g.
//     minimum 0.5 only guarantees >= 0.
// Bounded for generation (a model cannot run on forever inside one token class):
// whitespace between tokens (one space/tab, or a newline plus up to 24 spaces/tabs),
// integer parts up to 18 digits, fractions up to 20 digits, exponents up to 2 digits.
//
// Unsupported, reported as llm::Error "json_schema <path>: ...": not, if/then/else,
// dependentSchemas, dependentRequired, dependencies, patternProperties, propertyNames,
// unevaluated*, contains, multipleOf, uniqueItems: true, $dynamicRef, remote $ref,
// pattern or format combined with minLength/maxLength, anyOf together with oneOf,
// allOf members whose keywords conflict in ways not listed above, and unsatisfiable
// schemas (false, empty enum, minimum > maximum ...).
#pragma once
#include <nlohmann/json.hpp>

#include "engine/grammar.h"

namespace llm {

struct JsonSchemaOptions {
  bool strict = false;  // OpenAI json_schema.strict: every property required, no others
};

// Throws llm::Error naming the schema path of the first unsupported or invalid part.
Grammar json_schema_to_grammar(const nlohmann::ordered_json& schema,
                               const JsonSchemaOptions& opt = {});

// Any JSON object (response_format {"type": "json_object"}).
Grammar json_object_grammar();

}  // namespace llm
