#include "engine/jinja_eval.h"

#include <cmath>
#include <cstdio>

#include "engine/jinja_builtins.h"
#include "engine/jinja_text.h"

namespace llm::jinja {

namespace {

std::shared_ptr<Interp::Scope> child_of(const std::shared_ptr<Interp::Scope>& parent);

}  // namespace

Interp::DepthGuard::DepthGuard(Interp& in) : in_(in) {
  if (++in_.depth_ > in_.limits_.max_depth) {
    --in_.depth_;
    fail("template recursion or nesting too deep (limit " + std::to_string(in_.limits_.max_depth) +
         ")");
  }
}

Interp::Interp(const Limits& limits, std::function<std::tm()> now)
    : limits_(limits), now_(std::move(now)) {}
Interp::~Interp() = default;

void Interp::step() {
  if (++steps_ > max_steps_) fail("template exceeded its evaluation budget (endless loop?)");
}

void Interp::charge_bytes(size_t bytes) {
  steps_ += bytes / 256;  // ~ the time of one step, at memcpy speed
  if (steps_ > max_steps_) fail("template exceeded its evaluation budget (endless loop?)");
}

void Interp::charge_value(const Value& v) {
  switch (v.type()) {
    case Type::String:
      charge_bytes(v.str().size());
      break;
    case Type::List:
      charge_bytes(v.items().size() * 32);
      break;
    case Type::Dict:
      charge_bytes(v.dict().items.size() * 64);
      break;
    default:
      break;
  }
}

void Interp::check_size(size_t bytes) const {
  if (bytes > limits_.max_string)
    fail("template built a value larger than " + std::to_string(limits_.max_string) + " bytes");
}

void Interp::emit(std::string& out, std::string_view text) const {
  check_size(out.size() + text.size());
  out.append(text);
}

std::string Interp::render(const Template& tmpl, const ValueDict& vars, size_t input_bytes) {
  steps_ = 0;
  max_steps_ = limits_.max_steps + limits_.steps_per_input_byte * input_bytes;
  auto root = std::make_shared<Scope>();
  for (const auto& kv : vars.items) root->set(kv.first.str(), kv.second);
  root->declare_undefined(tmpl.undefined);  // even over a variable the caller passed
  std::string out;
  exec(tmpl.body, root, out);
  return out;
}

namespace {
std::shared_ptr<Interp::Scope> child_of(const std::shared_ptr<Interp::Scope>& parent) {
  auto s = std::make_shared<Interp::Scope>();
  s->parent = parent;
  return s;
}
}  // namespace

// --- statements -------------------------------------------------------------------------

Interp::Flow Interp::exec(const StmtList& body, const std::shared_ptr<Scope>& scope,
                          std::string& out) {
  DepthGuard guard(*this);
  for (const auto& s : body) {
    Flow f = exec_stmt(*s, scope, out);
    if (f != Flow::Normal) return f;
  }
  return Flow::Normal;
}

// The output of a block body rendered in its own scope. A break/continue inside (allowed:
// jinja2 compiles set and filter blocks inline) abandons the block and is passed on.
Interp::Flow Interp::capture(const Stmt& block, const std::shared_ptr<Scope>& parent,
                             std::string& out) {
  auto scope = child_of(parent);
  scope->declare_undefined(block.frame_undefined);
  return exec(block.body, scope, out);
}

Interp::Flow Interp::exec_stmt(const Stmt& s, const std::shared_ptr<Scope>& scope,
                               std::string& out) {
  step();
  try {
    switch (s.kind) {
      case StmtKind::Data:
        emit(out, s.text);
        break;
      case StmtKind::Print:
        emit(out, print_value(*s.expr, scope));
        break;
      case StmtKind::If:
        for (const auto& br : s.branches)
          if (eval(*br.first, scope).truthy()) return exec(br.second, scope, out);
        return exec(s.else_body, scope, out);
      case StmtKind::For:
        return exec_for(s, scope, out);
      case StmtKind::Set:
      case StmtKind::SetBlock:
        return exec_set(s, scope);
      case StmtKind::Macro:
        scope->set(s.name, make_macro(s, scope));
        break;
      case StmtKind::CallBlock: {
        auto caller = std::make_shared<Callable>();
        caller->is_macro = true;  // nameless: prints as <Macro anonymous>
        const Stmt* sp = &s;
        std::weak_ptr<Scope> weak = scope;
        caller->fn = [sp, weak](Interp& in, CallArgs& a) { return in.invoke_macro(*sp, weak, a); };
        Value callee = eval(*s.expr->a, scope);
        CallArgs args;
        eval_args(s.expr->call, scope, args);
        args.kw.emplace_back("caller", Value::callable(caller));
        emit(out, call(callee, args).to_str());
        break;
      }
      case StmtKind::FilterBlock: {
        std::string body;
        if (Flow f = capture(s, scope, body); f != Flow::Normal) return f;
        emit(out, apply_filter_chain(s.expr.get(), scope, Value::string(std::move(body))).to_str());
        break;
      }
      case StmtKind::Scope: {
        auto inner = child_of(scope);
        inner->declare_undefined(s.frame_undefined);
        for (size_t i = 0; i < s.params.size(); ++i)
          inner->set(s.params[i], eval(*s.defaults[i], scope));
        return exec(s.body, inner, out);
      }
      case StmtKind::Break:
        return Flow::Break;
      case StmtKind::Continue:
        return Flow::Continue;
    }
  } catch (const TemplateError& e) {
    if (e.line() == 0 && !dynamic_cast<const RaisedError*>(&e))
      throw TemplateError(e.message(), s.line);
    throw;
  }
  return Flow::Normal;
}

std::vector<Value> iterate(const Value& v) {
  switch (v.type()) {
    case Type::List:
      return v.items();
    case Type::Dict: {
      std::vector<Value> keys;
      keys.reserve(v.dict().items.size());
      for (const auto& kv : v.dict().items) keys.push_back(kv.first);
      return keys;
    }
    case Type::String: {
      std::vector<Value> chars;
      const std::string& s = v.str();
      for (size_t i = 0; i < s.size();) {
        size_t b = i;
        utf8_next(s, i);
        chars.push_back(Value::string(s.substr(b, i - b)));
      }
      return chars;
    }
    case Type::Undefined:
      if (v.is_forbidden()) fail(v.undefined_message());
      return {};
    default:
      fail("'" + v.type_name() + "' object is not iterable");
  }
}

Interp::Flow Interp::exec_for(const Stmt& s, const std::shared_ptr<Scope>& scope,
                              std::string& out) {
  std::vector<Value> items = iterate(eval(*s.expr, scope));
  auto inner = child_of(scope);
  if (s.test) {  // `for x in xs if cond`: loop.* counts the filtered items only
    std::vector<Value> kept;
    for (auto& item : items) {
      step();
      assign(s.target, item, *inner);
      if (eval(*s.test, inner).truthy()) kept.push_back(std::move(item));
    }
    items = std::move(kept);
  }
  // jinja2 runs the else block unless some iteration reached the end of the body: an empty
  // loop, but also one whose every pass ended in continue, or that broke in its first pass.
  bool completed = false;
  auto run_body = [&]() {
    Flow f = exec(s.body, inner, out);
    completed |= f == Flow::Normal;
    return f != Flow::Break;
  };
  auto finish = [&]() {
    if (completed || s.else_body.empty()) return Flow::Normal;
    auto else_scope = child_of(scope);
    else_scope->declare_undefined(s.else_undefined);
    return exec(s.else_body, else_scope, out);
  };

  const int64_t n = static_cast<int64_t>(items.size());
  if (!s.uses_loop) {
    for (int64_t i = 0; i < n; ++i) {
      step();
      // Every iteration starts from the enclosing values: a `set` in one iteration is not
      // seen by the next (jinja2 re-binds the body's names per iteration).
      inner->vars.clear();
      inner->declare_undefined(s.frame_undefined);
      assign(s.target, items[i], *inner);
      if (!run_body()) break;
    }
    return finish();
  }

  // jinja2's LoopContext as a dict; the fields are rewritten in place every iteration.
  auto loop = std::make_shared<ValueDict>();
  static const char* const kFields[] = {"index0",   "index",    "first",     "last",
                                        "length",   "revindex", "revindex0", "previtem",
                                        "nextitem", "depth",    "depth0",    "cycle"};
  for (const char* f : kFields) loop->items.emplace_back(Value::string(f), Value());
  auto& field = loop->items;
  field[4].second = Value::integer(n);
  field[9].second = Value::integer(1);
  field[10].second = Value::integer(0);
  auto cycle = std::make_shared<Callable>();
  cycle->name = "cycle";
  std::weak_ptr<ValueDict> weak_loop = loop;
  cycle->fn = [weak_loop](Interp&, CallArgs& a) -> Value {
    auto l = weak_loop.lock();
    if (!l || a.pos.empty()) fail("no items for cycling given");
    int64_t i = l->items[0].second.as_int();
    return a.pos[static_cast<size_t>(i) % a.pos.size()];
  };
  field[11].second = Value::callable(cycle);
  const Value no_prev = Value::undefined("there is no previous item");
  const Value no_next = Value::undefined("there is no next item");
  inner->vars.clear();
  inner->vars.emplace_back("loop", Value::dict_ref(loop));

  for (int64_t i = 0; i < n; ++i) {
    step();
    inner->vars.resize(1);  // keep `loop`, drop what the previous iteration set
    inner->declare_undefined(s.frame_undefined);
    assign(s.target, items[i], *inner);
    field[0].second = Value::integer(i);
    field[1].second = Value::integer(i + 1);
    field[2].second = Value::boolean(i == 0);
    field[3].second = Value::boolean(i == n - 1);
    field[5].second = Value::integer(n - i);
    field[6].second = Value::integer(n - i - 1);
    field[7].second = i > 0 ? items[i - 1] : no_prev;
    field[8].second = i + 1 < n ? items[i + 1] : no_next;
    if (!run_body()) break;
  }
  return finish();
}

void Interp::assign(const Target& t, const Value& v, Scope& scope) {
  switch (t.kind) {
    case Target::Kind::Name:
      scope.set(t.name, v);
      return;
    case Target::Kind::Tuple: {
      std::vector<Value> parts = iterate(v);
      if (parts.size() != t.items.size()) {
        if (parts.size() > t.items.size())
          fail("too many values to unpack (expected " + std::to_string(t.items.size()) + ")");
        fail("not enough values to unpack (expected " + std::to_string(t.items.size()) + ", got " +
             std::to_string(parts.size()) + ")");
      }
      for (size_t i = 0; i < parts.size(); ++i) assign(t.items[i], parts[i], scope);
      return;
    }
    case Target::Kind::NsAttr: {
      Value ns = lookup(t.name, scope);
      if (ns.type() != Type::Namespace) fail("cannot assign attribute on non-namespace object");
      ns.dict().set(Value::string(t.attr), v);
      return;
    }
  }
}

Interp::Flow Interp::exec_set(const Stmt& s, const std::shared_ptr<Scope>& scope) {
  Value v;
  if (s.kind == StmtKind::Set) {
    v = eval(*s.expr, scope);
  } else {
    std::string body;
    if (Flow f = capture(s, scope, body); f != Flow::Normal) return f;
    v = Value::string(std::move(body));
    if (s.expr) v = apply_filter_chain(s.expr.get(), scope, v);
  }
  assign(s.target, v, *scope);
  return Flow::Normal;
}

Value Interp::apply_filter_chain(const Expr* chain, const std::shared_ptr<Scope>& scope,
                                 Value hole) {
  Value v = chain->a ? apply_filter_chain(chain->a.get(), scope, std::move(hole)) : std::move(hole);
  CallArgs args;
  eval_args(chain->call, scope, args);
  return call_filter(*this, chain->name, v, args);
}

// --- macros -------------------------------------------------------------------------------

Value Interp::make_macro(const Stmt& m, const std::shared_ptr<Scope>& scope) {
  auto c = std::make_shared<Callable>();
  c->name = m.name;
  c->is_macro = true;
  const Stmt* mp = &m;
  // Weak: the macro lives in the scope it captures; a strong pointer would be a cycle.
  std::weak_ptr<Scope> weak = scope;
  c->fn = [mp, weak](Interp& in, CallArgs& a) { return in.invoke_macro(*mp, weak, a); };
  return Value::callable(c);
}

// Argument binding as jinja2's Macro.__call__: positionals, then keywords for the rest,
// `caller`, `kwargs` and `varargs` when the body uses them, then defaults.
Value Interp::invoke_macro(const Stmt& m, const std::weak_ptr<Scope>& def_scope, CallArgs& args) {
  auto def = def_scope.lock();
  if (!def) fail("macro '" + m.name + "' called after the scope that defined it ended");
  if (++call_depth_ > limits_.max_call_depth) {
    --call_depth_;
    fail("macro recursion too deep (limit " + std::to_string(limits_.max_call_depth) + ")");
  }
  struct Unwind {
    int& d;
    ~Unwind() { --d; }
  } unwind{call_depth_};

  const std::string name = m.kind == StmtKind::Macro ? m.name : "caller";
  const size_t n = m.params.size();
  auto kw = args.kw;
  auto take_kw = [&](const std::string& key) -> std::optional<Value> {
    for (auto it = kw.begin(); it != kw.end(); ++it) {
      if (it->first == key) {
        Value v = std::move(it->second);
        kw.erase(it);
        return v;
      }
    }
    return std::nullopt;
  };
  std::vector<std::optional<Value>> vals(n);
  const size_t npos = std::min(args.pos.size(), n);
  for (size_t i = 0; i < npos; ++i) vals[i] = args.pos[i];
  bool found_caller = false;
  if (npos != n) {
    for (size_t i = npos; i < n; ++i) {
      vals[i] = take_kw(m.params[i]);
      found_caller |= m.params[i] == "caller";
    }
  } else {
    for (const auto& p : m.params) found_caller |= p == "caller";
  }
  auto scope = child_of(def);
  scope->declare_undefined(m.frame_undefined);
  if (m.uses_caller && !found_caller) {
    std::optional<Value> c = take_kw("caller");
    scope->set("caller", c ? *c : Value::undefined("No caller defined"));
  }
  if (m.uses_kwargs) {
    ValueDict d;
    for (auto& kv : kw) d.set(Value::string(kv.first), kv.second);
    scope->set("kwargs", Value::dict_of(std::move(d)));
  } else if (!kw.empty()) {
    if (kw.front().first == "caller")
      fail("macro '" + name + "' was invoked with two values for the special caller argument.");
    fail("macro '" + name + "' takes no keyword argument '" + kw.front().first + "'");
  }
  if (m.uses_varargs) {
    std::vector<Value> rest;
    for (size_t i = n; i < args.pos.size(); ++i) rest.push_back(args.pos[i]);
    scope->set("varargs", Value::list(std::move(rest), ListKind::Tuple));
  } else if (args.pos.size() > n) {
    fail("macro '" + name + "' takes not more than " + std::to_string(n) + " argument(s)");
  }
  for (size_t i = 0; i < n; ++i)
    if (vals[i]) scope->set(m.params[i], *vals[i]);
  for (size_t i = 0; i < n; ++i) {
    if (vals[i]) continue;
    scope->set(m.params[i], m.defaults[i] ? eval(*m.defaults[i], scope)
                                          : Value::undefined("parameter '" + m.params[i] +
                                                             "' was not provided"));
  }
  std::string out;
  exec(m.body, scope, out);
  charge_bytes(out.size());
  return Value::string(std::move(out));
}

Value Interp::call(const Value& callee, CallArgs& args) {
  switch (callee.type()) {
    case Type::Callable: {
      Value r = callee.fn().fn(*this, args);
      if (!callee.fn().is_macro) charge_value(r);  // macros charged their output already
      return r;
    }
    case Type::Undefined:
      fail(callee.undefined_message());
    default:
      fail("'" + callee.type_name() + "' object is not callable");
  }
}

}  // namespace llm::jinja
