// A practical subset of ECMAScript regular expressions (the dialect of JSON Schema's
// "pattern") compiled into a grammar expression over code points.
//
// Supported: literals; escapes \d \D \w \W \s \S \t \n \r \v \f \0 \xHH \uHHHH (surrogate
// pairs combined) \u{H...}, \p{..} / \P{..} with a general category (L, Lu, Nd ...) and
// escaped punctuation; `.` (any character but line terminators); classes [...] / [^...]
// with ranges and class escapes; groups (...), (?:...), (?<name>...); alternation |;
// quantifiers * + ? {n} {n,} {n,m} and their lazy forms (same language); ^ and $ at the
// start and end of the pattern or of its top-level alternatives.
// An alternative without ^ (or $) may have anything before (or after) it: JSON Schema
// patterns search, they are not anchored.
//
// Unsupported, reported by name through llm::Error: backreferences (\1, \k<name>),
// lookaround ((?=, (?!, (?<=, (?<!), word boundaries (\b, \B), \c control escapes, octal
// escapes, properties other than general categories (\p{Script=..}), and ^ or $ anywhere
// else.
#pragma once
#include <string_view>

#include "engine/grammar.h"

namespace llm {

// The language of strings the pattern matches (search semantics, as above).
Expr regex_to_expr(std::string_view pattern);

// Rewrites an expression over decoded characters into one over the characters of a JSON
// string's body: `"` and `\` and control characters become their escapes (one spelling
// each), everything else stays raw UTF-8.
Expr json_escape_expr(const Expr& e);

}  // namespace llm
