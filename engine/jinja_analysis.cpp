#include "engine/jinja_analysis.h"

#include <map>
#include <set>

#include "engine/jinja_builtins.h"

namespace llm::jinja {
namespace {

// Whether jinja2's Expr.as_const() may succeed: literals and operators over them, filters
// and tests that do not need the context; never names or calls. Only the branch taken by
// an inline if, and the right side of and/or when reached, count — so that is decided when
// the subtree is folded (Interp::eval), and here they only need to be possible.
bool is_contextual_filter(const std::string& name) {
  static const char* const kContextual[] = {"map",        "select",     "reject",
                                            "selectattr", "rejectattr", "random"};
  for (const char* c : kContextual)
    if (name == c) return true;
  return false;
}

bool is_const(const Expr* e) {
  if (!e) return true;
  switch (e->kind) {
    case ExprKind::Const:
      return true;
    case ExprKind::Name:
    case ExprKind::Call:
      return false;
    case ExprKind::CondExpr:
      return is_const(e->a.get()) && (is_const(e->b.get()) || (e->c && is_const(e->c.get())));
    case ExprKind::And:
    case ExprKind::Or:
      return is_const(e->a.get());
    case ExprKind::Filter:
    case ExprKind::Test: {
      if (!e->a || is_contextual_filter(e->name)) return false;
      if (e->kind == ExprKind::Filter ? !has_filter(e->name) : !has_test(e->name)) return false;
      if (e->call.dyn_args || e->call.dyn_kwargs) return false;
      for (const auto& x : e->call.args)
        if (!is_const(x.get())) return false;
      for (const auto& kv : e->call.kwargs)
        if (!is_const(kv.second.get())) return false;
      return is_const(e->a.get());
    }
    default:
      if (!is_const(e->a.get()) || !is_const(e->b.get()) || !is_const(e->c.get())) return false;
      for (const auto& x : e->items)
        if (!is_const(x.get())) return false;
      for (const auto& x : e->values)
        if (!is_const(x.get())) return false;
      return true;
  }
}

// Sets Expr::constant on every non-literal subtree that jinja2 would try to fold.
void mark_constants(Expr* e) {
  if (!e) return;
  mark_constants(e->a.get());
  mark_constants(e->b.get());
  mark_constants(e->c.get());
  for (auto& x : e->items) mark_constants(x.get());
  for (auto& x : e->values) mark_constants(x.get());
  for (auto& x : e->call.args) mark_constants(x.get());
  for (auto& kv : e->call.kwargs) mark_constants(kv.second.get());
  mark_constants(e->call.dyn_args.get());
  mark_constants(e->call.dyn_kwargs.get());
  e->constant = e->kind != ExprKind::Const && e->kind != ExprKind::Slice && is_const(e);
}

void mark_constants_in(StmtList& body) {
  for (auto& s : body) {
    mark_constants(s->expr.get());
    mark_constants(s->test.get());
    for (auto& br : s->branches) {
      mark_constants(br.first.get());
      mark_constants_in(br.second);
    }
    for (auto& d : s->defaults) mark_constants(d.get());
    mark_constants_in(s->body);
    mark_constants_in(s->else_body);
  }
}

// jinja2 rejects an unknown filter or test at compile time unless it sits inside an `if`
// statement or an inline if-expression (a "soft" frame), where it fails only when reached.
void check_names(const Expr* e, bool soft) {
  if (!e) return;
  if (e->kind == ExprKind::CondExpr) soft = true;
  if (!soft && e->kind == ExprKind::Filter && !has_filter(e->name))
    throw TemplateError("No filter named '" + e->name + "'.", e->line);
  if (!soft && e->kind == ExprKind::Test && !has_test(e->name))
    throw TemplateError("No test named '" + e->name + "'.", e->line);
  check_names(e->a.get(), soft);
  check_names(e->b.get(), soft);
  check_names(e->c.get(), soft);
  for (const auto& x : e->items) check_names(x.get(), soft);
  for (const auto& x : e->values) check_names(x.get(), soft);
  for (const auto& x : e->call.args) check_names(x.get(), soft);
  for (const auto& kv : e->call.kwargs) check_names(kv.second.get(), soft);
  check_names(e->call.dyn_args.get(), soft);
  check_names(e->call.dyn_kwargs.get(), soft);
}

void check_names_in(const StmtList& body, bool soft) {
  for (const auto& s : body) {
    switch (s->kind) {
      case StmtKind::If:
        for (const auto& br : s->branches) {
          check_names(br.first.get(), true);
          check_names_in(br.second, true);
        }
        check_names_in(s->else_body, true);
        break;
      case StmtKind::For:
        check_names(s->expr.get(), soft);
        check_names(s->test.get(), false);
        check_names_in(s->body, false);
        check_names_in(s->else_body, false);
        break;
      case StmtKind::Macro:
      case StmtKind::CallBlock:
      case StmtKind::FilterBlock:
      case StmtKind::SetBlock:
        check_names(s->expr.get(), s->kind == StmtKind::CallBlock && soft);
        for (const auto& d : s->defaults) check_names(d.get(), false);
        check_names_in(s->body, false);
        break;
      default:
        check_names(s->expr.get(), soft);
        for (const auto& d : s->defaults) check_names(d.get(), soft);
        check_names_in(s->body, s->kind == StmtKind::Scope ? false : soft);
        break;
    }
  }
}

// --- frames and names (jinja2/idtracking.py) ----------------------------------------------

enum class Load : uint8_t { Param, Resolve, Alias, Undefined };

// One frame's symbol table: for each name seen, how its slot is initialised.
struct Symbols {
  const Symbols* parent = nullptr;
  std::map<std::string, Load> refs;
  std::set<std::string> stores;

  bool has_ref(const std::string& n) const {
    return refs.count(n) || (parent && parent->has_ref(n));
  }
  void store(const std::string& n) {
    stores.insert(n);
    if (!refs.count(n)) refs[n] = parent && parent->has_ref(n) ? Load::Alias : Load::Undefined;
  }
  void param(const std::string& n) {
    stores.insert(n);
    refs[n] = Load::Param;
  }
  void load(const std::string& n) {
    if (!has_ref(n)) refs[n] = Load::Resolve;
  }
  // Merges the symbols of an if's three branches (body, elifs, else): a name assigned in
  // only some of them starts from the outer value instead of undefined.
  void branch_update(const std::vector<Symbols>& branches) {
    std::map<std::string, size_t> counts;
    for (const auto& b : branches)
      for (const auto& t : b.stores)
        if (!stores.count(t)) counts[t]++;
    for (const auto& b : branches) {
      for (const auto& kv : b.refs) refs[kv.first] = kv.second;
      stores.insert(b.stores.begin(), b.stores.end());
    }
    for (const auto& [name, count] : counts) {
      if (count == branches.size()) continue;
      refs[name] = parent && parent->has_ref(name) ? Load::Alias : Load::Resolve;
    }
  }
  std::vector<std::string> undefined_names() const {
    std::vector<std::string> out;
    for (const auto& kv : refs)
      if (kv.second == Load::Undefined) out.push_back(kv.first);
    return out;
  }
};

// FrameSymbolVisitor: what one frame sees of its statements (nested frames stop it).
class FrameVisitor {
 public:
  explicit FrameVisitor(Symbols& sym) : sym_(&sym) {}

  void expr(const Expr* e) {
    if (!e) return;
    if (e->kind == ExprKind::Name) sym_->load(e->name);
    expr(e->a.get());
    expr(e->b.get());
    expr(e->c.get());
    for (const auto& x : e->items) expr(x.get());
    for (const auto& x : e->values) expr(x.get());
    for (const auto& x : e->call.args) expr(x.get());
    for (const auto& kv : e->call.kwargs) expr(kv.second.get());
    expr(e->call.dyn_args.get());
    expr(e->call.dyn_kwargs.get());
  }

  void target(const Target& t, bool as_param) {
    switch (t.kind) {
      case Target::Kind::Name:
        as_param ? sym_->param(t.name) : sym_->store(t.name);
        break;
      case Target::Kind::Tuple:
        for (const auto& x : t.items) target(x, as_param);
        break;
      case Target::Kind::NsAttr:
        sym_->load(t.name);
        break;
    }
  }

  void stmts(const StmtList& body) {
    for (const auto& s : body) stmt(*s);
  }

  void stmt(const Stmt& s) {
    switch (s.kind) {
      case StmtKind::Data:
      case StmtKind::Break:
      case StmtKind::Continue:
        break;
      case StmtKind::Print:
        expr(s.expr.get());
        break;
      case StmtKind::If:
        if_branches(s.branches, 0, true, &s.else_body);
        break;
      case StmtKind::For:
        expr(s.expr.get());
        break;
      case StmtKind::Set:
        expr(s.expr.get());
        target(s.target, false);
        break;
      case StmtKind::SetBlock:
        target(s.target, false);
        break;
      case StmtKind::Macro:
        sym_->store(s.name);
        break;
      case StmtKind::CallBlock:
      case StmtKind::FilterBlock:
        expr(s.expr.get());
        break;
      case StmtKind::Scope:
        for (const auto& d : s.defaults) expr(d.get());
        break;
    }
  }

 private:
  // jinja2 keeps the elifs as If nodes (without elif or else of their own) in the elif
  // branch of the first one; `top` says whether this is that first one.
  void if_branches(const std::vector<std::pair<ExprPtr, StmtList>>& branches, size_t k, bool top,
                   const StmtList* else_body) {
    expr(branches[k].first.get());
    Symbols* original = sym_;
    auto visit_copy = [&](auto&& fn) {
      Symbols copy = *original;
      sym_ = &copy;
      fn();
      sym_ = original;
      return copy;
    };
    std::vector<Symbols> parts;
    parts.push_back(visit_copy([&] { stmts(branches[k].second); }));
    parts.push_back(visit_copy([&] {
      if (top)
        for (size_t j = 1; j < branches.size(); ++j) if_branches(branches, j, false, nullptr);
    }));
    parts.push_back(visit_copy([&] {
      if (top && else_body) stmts(*else_body);
    }));
    original->branch_update(parts);
  }

  Symbols* sym_;
};

void analyze_frames_in(StmtList& body, const Symbols& frame);

// Analyses the frame opened by one statement (RootVisitor) and the frames inside it.
std::vector<std::string> analyze_frame(const Symbols& parent,
                                       const std::vector<std::string>& params,
                                       const std::vector<const Expr*>& exprs, StmtList& body,
                                       const Target* target, bool exprs_after_body = false) {
  Symbols sym;
  sym.parent = &parent;
  FrameVisitor v(sym);
  if (target) v.target(*target, true);
  for (const auto& p : params) sym.param(p);
  if (!exprs_after_body)
    for (const Expr* e : exprs) v.expr(e);
  v.stmts(body);
  if (exprs_after_body)
    for (const Expr* e : exprs) v.expr(e);
  analyze_frames_in(body, sym);
  return sym.undefined_names();
}

void analyze_frames_in(StmtList& body, const Symbols& frame) {
  for (auto& sp : body) {
    Stmt& s = *sp;
    switch (s.kind) {
      case StmtKind::If:
        for (auto& br : s.branches) analyze_frames_in(br.second, frame);
        analyze_frames_in(s.else_body, frame);
        break;
      case StmtKind::For:
        s.frame_undefined = analyze_frame(frame, {}, {}, s.body, &s.target);
        s.else_undefined = analyze_frame(frame, {}, {}, s.else_body, nullptr);
        break;
      case StmtKind::Macro:
      case StmtKind::CallBlock: {
        std::vector<const Expr*> defaults;
        for (const auto& d : s.defaults) defaults.push_back(d.get());
        s.frame_undefined = analyze_frame(frame, s.params, defaults, s.body, nullptr);
        break;
      }
      case StmtKind::FilterBlock:  // jinja2 visits the body, then the filter
        s.frame_undefined = analyze_frame(frame, {}, {s.expr.get()}, s.body, nullptr, true);
        break;
      case StmtKind::SetBlock:
        s.frame_undefined = analyze_frame(frame, {}, {}, s.body, nullptr);
        break;
      case StmtKind::Scope:  // with: its names are parameters of the inner frame
        s.frame_undefined = analyze_frame(frame, s.params, {}, s.body, nullptr);
        break;
      default:
        break;
    }
  }
}

}  // namespace

void check_names(const StmtList& body) {
  check_names_in(body, false);
}

void mark_constants(StmtList& body) {
  mark_constants_in(body);
}

std::vector<std::string> analyze_scopes(StmtList& body) {
  Symbols root;
  FrameVisitor v(root);
  v.stmts(body);
  analyze_frames_in(body, root);
  return root.undefined_names();
}

}  // namespace llm::jinja
