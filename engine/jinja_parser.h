// Jinja tokens -> syntax tree, following jinja2/parser.py (operator precedence, tuples,
// filters and tests, call arguments, statements) with the tags transformers enables:
// the built-ins plus `break`/`continue` (loopcontrols) and `generation`.
#pragma once
#include <string_view>

#include "engine/jinja_ast.h"

namespace llm::jinja {

// A parsed template: its statements and the names its top level starts with undefined
// (see analyze_scopes).
struct Template {
  StmtList body;
  std::vector<std::string> undefined;
};

// Throws TemplateError with the line on a syntax error, on an unknown filter or test used
// outside an `if` (jinja2 reports those at compile time) and on nesting deeper than
// kMaxParseDepth (so that a hostile template cannot overflow the stack).
Template parse_template(std::string_view source);

constexpr int kMaxParseDepth = 200;

}  // namespace llm::jinja
