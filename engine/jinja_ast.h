// The syntax tree of a Jinja template, as jinja2/parser.py builds it (nodes.py). One fat
// node struct per category keeps the evaluator a flat switch.
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/jinja_value.h"

namespace llm::jinja {

struct Expr;
struct Stmt;
using ExprPtr = std::unique_ptr<Expr>;
using StmtList = std::vector<std::unique_ptr<Stmt>>;

enum class ExprKind : uint8_t {
  Const,    // value
  Name,     // name
  Getattr,  // a.name
  Getitem,  // a[b]
  Slice,    // a:b:c inside [] (each may be null)
  Call,     // a(call)
  Filter,   // a|name(call); a is null inside {% filter %} / {% set x | f %}
  Test,     // a is name(call)
  Not,      // not a
  Neg,      // -a
  Pos,      // +a
  Binary,   // a op b with op in + - * / // % ** (Expr::op)
  And,
  Or,
  Concat,    // items joined with ~
  Compare,   // items[0] ops[0] items[1] ops[1] items[2] ... (chained)
  CondExpr,  // b if a else c (c may be null)
  List,
  Tuple,
  Dict,  // items are keys, values are values
};

// Binary and comparison operators.
enum class Op : uint8_t {
  Add,
  Sub,
  Mul,
  Div,
  FloorDiv,
  Mod,
  Pow,
  Eq,
  Ne,
  Lt,
  Le,
  Gt,
  Ge,
  In,
  NotIn
};
inline const char* op_symbol(Op op) {
  static const char* const kSymbols[] = {
      "+", "-", "*", "/", "//", "%", "**", "==", "!=", "<", "<=", ">", ">=", "in", "not in"};
  return kSymbols[static_cast<int>(op)];
}

struct CallSpec {
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  ExprPtr dyn_args;    // *args
  ExprPtr dyn_kwargs;  // **kwargs
};

struct Expr {
  ExprKind kind = ExprKind::Const;
  int line = 0;
  Value value;       // Const
  std::string name;  // Name, Getattr, Filter, Test
  Op op = Op::Add;   // Binary
  ExprPtr a, b, c;
  std::vector<ExprPtr> items;
  std::vector<ExprPtr> values;
  std::vector<Op> ops;  // Compare
  CallSpec call;        // Call, Filter, Test
  // No names and no calls below: jinja2's optimizer tries to fold it at compile time,
  // where slicing goes through the sandbox's getitem (an unsliceable object gives
  // Undefined, not the TypeError of a runtime slice). See Interp::eval.
  bool constant = false;
};

// Assignment target: a name, a tuple of targets, or namespace.attr (set only).
struct Target {
  enum class Kind : uint8_t { Name, Tuple, NsAttr } kind = Kind::Name;
  std::string name;
  std::string attr;
  std::vector<Target> items;
};

enum class StmtKind : uint8_t {
  Data,         // text
  Print,        // {{ expr }}
  If,           // branches (test, body), else_body
  For,          // target in expr [if test] body [else else_body]
  Set,          // target = expr
  SetBlock,     // {% set target [| filters] %}body{% endset %}; expr = filter chain or null
  Macro,        // name(params=defaults) body
  CallBlock,    // {% call(params) expr %}body{% endcall %}
  FilterBlock,  // {% filter chain %}body{% endfilter %}; expr = chain
  Scope,        // {% generation %}body / {% with targets=values %}body: body in a new scope
  Break,
  Continue,
};

struct Stmt {
  StmtKind kind = StmtKind::Data;
  int line = 0;
  std::string text;  // Data
  ExprPtr expr;
  ExprPtr test;
  Target target;
  std::vector<std::pair<ExprPtr, StmtList>> branches;
  StmtList body;
  StmtList else_body;
  // Macro and CallBlock signature; With bindings reuse params/defaults (all defaults set).
  std::string name;
  std::vector<std::string> params;
  std::vector<ExprPtr> defaults;  // aligned with params; null where no default
  bool uses_caller = false;
  bool uses_varargs = false;
  bool uses_kwargs = false;
  bool uses_loop = false;  // For: the body reads `loop` (else the loop object is not built)
  // Names the frame this statement opens (loop body, macro/caller body, filter/set block,
  // with/generation) starts with undefined, shadowing outer values; else_undefined for the
  // for-else frame. See analyze_scopes() in jinja_analysis.h.
  std::vector<std::string> frame_undefined;
  std::vector<std::string> else_undefined;
};

}  // namespace llm::jinja
