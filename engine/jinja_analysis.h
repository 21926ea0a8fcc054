// Static passes over a parsed template that reproduce decisions jinja2's compiler makes
// ahead of time, and that change what a template renders:
//  - unknown filters/tests are compile errors unless inside an `if` (check_names);
//  - constant subexpressions are folded, which changes how a failed slice behaves
//    (mark_constants);
//  - every name has one slot per frame, initialised when the frame is entered
//    (analyze_scopes; jinja2/idtracking.py).
#pragma once
#include <string>
#include <vector>

#include "engine/jinja_ast.h"

namespace llm::jinja {

// Throws TemplateError for an unknown filter or test outside a "soft" frame.
void check_names(const StmtList& body);

// Sets Expr::constant on the subtrees jinja2's optimizer tries to fold.
void mark_constants(StmtList& body);

// jinja2 resolves a name, per frame (the template, a loop body, a macro body, a block), to
// one variable whose initial value is decided by the name's first occurrence in that frame:
// a read makes it the outer value, but an assignment makes it *undefined* until assigned —
// also for reads from nested loops and macros that run before the assignment, and even when
// the caller passed a variable of that name. (An assignment in only some branches of an `if`
// falls back to the outer value.) Fills Stmt::frame_undefined / else_undefined for every
// frame-opening statement and returns the list for the template's top level.
std::vector<std::string> analyze_scopes(StmtList& body);

}  // namespace llm::jinja
