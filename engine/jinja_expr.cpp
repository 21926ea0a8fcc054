// Expression evaluation for Interp (jinja_eval.h): names, attribute and item access as the
// sandbox does them, Python arithmetic and comparisons, slicing, calls.
#include <climits>
#include <cmath>

#include "engine/jinja_builtins.h"
#include "engine/jinja_eval.h"
#include "engine/jinja_text.h"

namespace llm::jinja {

namespace {

// jinja2's object_type_repr, for Undefined hints.
std::string type_repr(const Value& v) {
  if (v.is_none()) return "None";
  return v.type_name() + " object";
}

Value missing_attr(const Value& obj, const std::string& name) {
  return Value::undefined("'" + type_repr(obj) + "' has no attribute '" + name + "'");
}

// Python's PySlice_AdjustIndices.
std::vector<int64_t> slice_indices(int64_t len, std::optional<int64_t> start,
                                   std::optional<int64_t> stop, int64_t step) {
  auto adjust = [&](std::optional<int64_t> v, int64_t dflt) {
    if (!v) return dflt;
    int64_t x = *v;
    if (x < 0) {
      x += len;
      if (x < 0) x = step < 0 ? -1 : 0;
    } else if (x >= len) {
      x = step < 0 ? len - 1 : len;
    }
    return x;
  };
  int64_t b = adjust(start, step < 0 ? len - 1 : 0);
  int64_t e = adjust(stop, step < 0 ? -1 : len);
  std::vector<int64_t> idx;
  if (step > 0)
    for (int64_t i = b; i < e; i += step) idx.push_back(i);
  else
    for (int64_t i = b; i > e; i += step) idx.push_back(i);
  return idx;
}

// CPython's float_divmod: (floor quotient, remainder with the divisor's sign), b != 0.
std::pair<double, double> py_float_divmod(double a, double b) {
  double mod = std::fmod(a, b);
  double div = (a - mod) / b;
  if (mod != 0) {
    if ((b < 0) != (mod < 0)) {
      mod += b;
      div -= 1.0;
    }
  } else {
    mod = std::copysign(0.0, b);
  }
  double floordiv;
  if (div != 0) {
    floordiv = std::floor(div);
    if (div - floordiv > 0.5) floordiv += 1.0;
  } else {
    floordiv = std::copysign(0.0, a / b);
  }
  return {floordiv, mod};
}

int64_t checked(bool overflow, int64_t v) {
  if (overflow) fail("integer overflow (values beyond 64 bits are not supported)");
  return v;
}

}  // namespace

std::string percent_format(const std::string& fmt, const Value& arg) {
  std::vector<Value> args =
      arg.is_list() && arg.list_kind() == ListKind::Tuple ? arg.items() : std::vector<Value>{arg};
  std::string out;
  size_t next = 0;
  for (size_t i = 0; i < fmt.size(); ++i) {
    if (fmt[i] != '%') {
      out.push_back(fmt[i]);
      continue;
    }
    if (++i >= fmt.size()) fail("incomplete format");
    if (fmt[i] == '%') {
      out.push_back('%');
      continue;
    }
    std::string spec = "%";
    while (i < fmt.size() && std::string("-+ #0123456789.").find(fmt[i]) != std::string::npos)
      spec.push_back(fmt[i++]);
    if (i >= fmt.size()) fail("incomplete format");
    if (next >= args.size()) fail("not enough arguments for format string");
    const Value& v = args[next++];
    char conv = fmt[i];
    if (v.is_undefined() && conv != 's' && conv != 'r') fail(v.undefined_message());
    char buf[512];
    if (conv == 's' || conv == 'r') {
      std::string s = conv == 's' ? v.to_str() : v.repr();
      std::snprintf(buf, sizeof buf, (spec + "s").c_str(), s.c_str());
      out += spec == "%" ? s : std::string(buf);
    } else if (conv == 'd' || conv == 'i') {
      if (!v.is_number()) fail("%d format: a real number is required, not " + v.type_name());
      if (v.type() == Type::Float && !(std::fabs(v.as_float()) < 9223372036854775808.0))
        fail("integer overflow (values beyond 64 bits are not supported)");
      std::snprintf(
          buf, sizeof buf, (spec + "lld").c_str(),
          static_cast<long long>(v.type() == Type::Float ? std::trunc(v.as_float()) : v.as_int()));
      out += buf;
    } else if (conv == 'f' || conv == 'e' || conv == 'g') {
      if (!v.is_number()) fail("must be real number, not " + v.type_name());
      std::snprintf(buf, sizeof buf, (spec + conv).c_str(), v.as_float());
      out += buf;
    } else {
      fail(std::string("unsupported format character '") + conv + "'");
    }
  }
  // Python skips this check when the argument could be a mapping (anything subscriptable
  // but a tuple or str: a list, a dict, jinja2's Undefined).
  bool mapping_like =
      (arg.is_list() && arg.list_kind() == ListKind::List) || arg.is_dict() || arg.is_undefined();
  if (next < args.size() && !mapping_like)
    fail("not all arguments converted during string formatting");
  return out;
}

Value Interp::lookup(const std::string& name, const Scope& scope) {
  for (const Scope* s = &scope; s; s = s->parent.get()) {
    for (const auto& kv : s->vars)
      if (kv.first == name) return kv.second;
  }
  if (auto g = global_function(name)) return *g;
  return Value::undefined("'" + name + "' is undefined");
}

Value Interp::getattr(const Value& obj, const std::string& name) {
  if (obj.is_undefined()) fail(obj.undefined_message());
  if (name.size() >= 2 && name[0] == '_' && name[1] == '_')
    return Value::forbidden("access to attribute '" + name + "' of '" + obj.type_name() +
                            "' object is unsafe.");
  if (obj.type() == Type::Namespace) {
    if (const Value* v = obj.dict().find(std::string_view(name))) return *v;
    return missing_attr(obj, name);
  }
  if (auto m = method(obj, name)) return *m;
  if (obj.is_dict())
    if (const Value* v = obj.dict().find(std::string_view(name))) return *v;
  return missing_attr(obj, name);
}

Value Interp::getitem(const Value& obj, const Value& key) {
  switch (obj.type()) {
    case Type::Undefined:
      fail(obj.undefined_message());
    case Type::Dict:
      if (!key.is_list() && !key.is_dict())
        if (const Value* v = obj.dict().find(key)) return *v;
      break;
    case Type::List:
    case Type::String:
      if (key.is_int() || key.type() == Type::Bool) {
        if (obj.is_list() && obj.list_kind() == ListKind::Iterator) break;
        int64_t i = key.as_int();
        if (obj.is_list()) {
          int64_t n = static_cast<int64_t>(obj.items().size());
          if (i < 0) i += n;
          if (i >= 0 && i < n) return obj.items()[i];
        } else {
          std::u32string u = to_u32(obj.str());
          int64_t n = static_cast<int64_t>(u.size());
          if (i < 0) i += n;
          if (i >= 0 && i < n) return Value::string(to_utf8(u.substr(i, 1)));
        }
      }
      break;
    default:
      break;
  }
  if (key.is_string()) {  // obj[name] failed: the sandbox falls back to getattr
    const std::string& name = key.str();
    if (obj.type() == Type::Namespace)
      if (const Value* v = obj.dict().find(std::string_view(name))) return *v;
    if (name.rfind("__", 0) != 0)
      if (auto m = method(obj, name)) return *m;
    return missing_attr(obj, name);
  }
  return Value::undefined(type_repr(obj) + " has no element " + key.repr());
}

// jinja2 compiles a slice as a plain Python subscript (not through the sandbox's getitem),
// so slicing something unsliceable raises instead of giving Undefined.
Value Interp::slice(const Value& obj, const Expr& getitem, const std::shared_ptr<Scope>& scope) {
  const Expr& s = *getitem.b;
  std::optional<int64_t> bounds[3];
  const Expr* parts[3] = {s.a.get(), s.b.get(), s.c.get()};
  bool ok = true;
  for (int k = 0; k < 3; ++k) {
    if (!parts[k]) continue;
    Value v = eval(*parts[k], scope);
    if (v.is_int() || v.type() == Type::Bool)
      bounds[k] = v.as_int();
    else if (!v.is_none())
      ok = false;
  }
  if (obj.is_undefined()) fail(obj.undefined_message());
  bool sliceable = obj.is_string() || (obj.is_list() && obj.list_kind() != ListKind::Iterator);
  if (folding_ && (!ok || !sliceable))
    return Value::undefined(type_repr(obj) + " has no element slice");
  if (obj.is_dict()) fail("unhashable type: 'slice'");
  if (!sliceable) fail("'" + obj.type_name() + "' object is not subscriptable");
  if (!ok) fail("slice indices must be integers or None or have an __index__ method");
  int64_t step = bounds[2].value_or(1);
  if (step == 0) fail("slice step cannot be zero");
  if (obj.is_string()) {
    std::u32string u = to_u32(obj.str());
    std::u32string r;
    for (int64_t i : slice_indices(static_cast<int64_t>(u.size()), bounds[0], bounds[1], step))
      r.push_back(u[i]);
    charge_bytes(r.size());
    return Value::string(to_utf8(r));
  }
  const auto& items = obj.items();
  std::vector<Value> r;
  for (int64_t i : slice_indices(static_cast<int64_t>(items.size()), bounds[0], bounds[1], step))
    r.push_back(items[i]);
  charge_bytes(r.size() * 32);
  return Value::list(std::move(r), obj.list_kind());
}

bool Interp::compare_op(Op op, const Value& a, const Value& b) {
  if ((op == Op::In || op == Op::NotIn) && (b.is_list() || b.is_dict()))
    charge_bytes((b.is_list() ? b.items().size() : b.dict().items.size()) * 32);  // linear scan
  switch (op) {
    case Op::Eq:
      return equals(a, b);
    case Op::Ne:
      return !equals(a, b);
    case Op::In:
      return contains(b, a);
    case Op::NotIn:
      return !contains(b, a);
    case Op::Lt:
      return compare(a, b) < 0;
    case Op::Le:
      return compare(a, b) <= 0;
    case Op::Gt:
      return compare(a, b) > 0;
    default:
      return compare(a, b) >= 0;
  }
}

Value Interp::binary(Op op, const Value& a, const Value& b) {
  if (a.is_undefined()) fail(a.undefined_message());
  if (op == Op::Mod && a.is_string()) return Value::string(percent_format(a.str(), b));
  if (b.is_undefined()) fail(b.undefined_message());
  const bool nums = a.is_number() && b.is_number();
  const bool floats = nums && (a.type() == Type::Float || b.type() == Type::Float);
  auto unsupported = [&]() {
    fail(std::string("unsupported operand type(s) for ") + op_symbol(op) + ": '" + a.type_name() +
         "' and '" + b.type_name() + "'");
  };
  auto repeat = [&](const Value& seq, int64_t count) -> Value {
    if (count < 0) count = 0;
    size_t unit = seq.is_string() ? seq.str().size() : seq.items().size() * 16;
    if (unit && static_cast<uint64_t>(count) > limits_.max_string / unit) check_size(SIZE_MAX);
    charge_bytes(unit * count);
    if (seq.is_string()) {
      std::string r;
      for (int64_t i = 0; i < count; ++i) r += seq.str();
      return Value::string(std::move(r));
    }
    std::vector<Value> r;
    for (int64_t i = 0; i < count; ++i) r.insert(r.end(), seq.items().begin(), seq.items().end());
    return Value::list(std::move(r), seq.list_kind());
  };

  if (op == Op::Add) {
    if (floats) return Value::number(a.as_float() + b.as_float());
    if (nums) {
      int64_t r = 0;
      bool overflow = __builtin_add_overflow(a.as_int(), b.as_int(), &r);
      return Value::integer(checked(overflow, r));
    }
    if (a.is_string() && b.is_string()) {
      // markupsafe: Markup + str escapes the str and stays Markup (either side).
      bool safe = a.is_safe() || b.is_safe();
      if (safe && !(a.is_safe() && b.is_safe())) {
        std::string l = a.is_safe() ? a.str() : html_escape(a.str());
        std::string r = b.is_safe() ? b.str() : html_escape(b.str());
        return binary(op, Value::string(std::move(l), true), Value::string(std::move(r), true));
      }
      check_size(a.str().size() + b.str().size());
      charge_bytes(a.str().size() + b.str().size());
      std::string r;
      r.reserve(a.str().size() + b.str().size());
      r.append(a.str()).append(b.str());
      return Value::string(std::move(r), safe);
    }
    if (a.is_list() && b.is_list() && a.list_kind() == b.list_kind() &&
        a.list_kind() != ListKind::Iterator) {
      std::vector<Value> r = a.items();
      r.insert(r.end(), b.items().begin(), b.items().end());
      charge_bytes(r.size() * 32);
      return Value::list(std::move(r), a.list_kind());
    }
    if (a.is_string() || (a.is_list() && a.list_kind() != ListKind::Iterator))
      fail("can only concatenate " + a.type_name() + " (not \"" + b.type_name() + "\") to " +
           a.type_name());
    unsupported();
  }
  if (op == Op::Sub) {
    if (floats) return Value::number(a.as_float() - b.as_float());
    if (nums) {
      int64_t r = 0;
      bool overflow = __builtin_sub_overflow(a.as_int(), b.as_int(), &r);
      return Value::integer(checked(overflow, r));
    }
    unsupported();
  }
  if (op == Op::Mul) {
    if (floats) return Value::number(a.as_float() * b.as_float());
    if (nums) {
      int64_t r = 0;
      bool overflow = __builtin_mul_overflow(a.as_int(), b.as_int(), &r);
      return Value::integer(checked(overflow, r));
    }
    bool a_seq = a.is_string() || (a.is_list() && a.list_kind() != ListKind::Iterator);
    bool b_seq = b.is_string() || (b.is_list() && b.list_kind() != ListKind::Iterator);
    if (a_seq && (b.is_int() || b.type() == Type::Bool)) return repeat(a, b.as_int());
    if (b_seq && (a.is_int() || a.type() == Type::Bool)) return repeat(b, a.as_int());
    unsupported();
  }
  if (op == Op::Div) {
    if (!nums) unsupported();
    if (b.as_float() == 0) fail("division by zero");
    return Value::number(a.as_float() / b.as_float());
  }
  if (op == Op::FloorDiv) {
    if (!nums) unsupported();
    if (b.as_float() == 0) fail("integer division or modulo by zero");
    if (floats) return Value::number(py_float_divmod(a.as_float(), b.as_float()).first);
    int64_t x = a.as_int(), y = b.as_int();
    if (x == INT64_MIN && y == -1) checked(true, 0);
    int64_t q = x / y;
    if ((x % y != 0) && ((x < 0) != (y < 0))) --q;
    return Value::integer(q);
  }
  if (op == Op::Mod) {
    if (a.is_string()) return Value::string(percent_format(a.str(), b));
    if (!nums) unsupported();
    if (b.as_float() == 0) fail("integer modulo by zero");
    if (floats) return Value::number(py_float_divmod(a.as_float(), b.as_float()).second);
    int64_t x = a.as_int(), y = b.as_int();
    if (y == -1) return Value::integer(0);
    int64_t m = x % y;
    if (m != 0 && ((m < 0) != (y < 0))) m += y;
    return Value::integer(m);
  }
  if (op == Op::Pow) {
    if (!nums) unsupported();
    if (floats || b.as_int() < 0) {
      double x = a.as_float(), y = b.as_float();
      if (x == 0 && y < 0) fail("0.0 cannot be raised to a negative power");
      double r = std::pow(x, y);
      if (std::isinf(r) && std::isfinite(x) && std::isfinite(y))
        fail("(34, 'Numerical result out of range')");
      if (std::isnan(r) && !std::isnan(x) && !std::isnan(y))
        fail("complex results (negative number to a fractional power) are not supported");
      return Value::number(r);
    }
    int64_t base = a.as_int(), e = b.as_int(), r = 1;
    while (e > 0) {
      if (e & 1) checked(__builtin_mul_overflow(r, base, &r), 0);
      e >>= 1;
      if (e) checked(__builtin_mul_overflow(base, base, &base), 0);
    }
    return Value::integer(r);
  }
  fail(std::string("unknown operator ") + op_symbol(op));
}

void Interp::eval_args(const CallSpec& spec, const std::shared_ptr<Scope>& scope, CallArgs& out) {
  for (const auto& a : spec.args) out.pos.push_back(eval(*a, scope));
  for (const auto& kv : spec.kwargs) out.kw.emplace_back(kv.first, eval(*kv.second, scope));
  if (spec.dyn_args) {
    for (auto& v : iterate(eval(*spec.dyn_args, scope))) out.pos.push_back(std::move(v));
  }
  if (spec.dyn_kwargs) {
    Value d = eval(*spec.dyn_kwargs, scope);
    if (!d.is_dict()) fail("argument after ** must be a mapping, not " + d.type_name());
    for (const auto& kv : d.dict().items) {
      if (!kv.first.is_string()) fail("keywords must be strings");
      out.kw.emplace_back(kv.first.str(), kv.second);
    }
  }
}

namespace {
// jinja2's has_safe_repr: what constant folding may turn into a literal.
bool safe_repr(const Value& v) {
  switch (v.type()) {
    case Type::None:
    case Type::Bool:
    case Type::Int:
    case Type::Float:
    case Type::String:
      return true;
    case Type::List:
      if (v.list_kind() == ListKind::Iterator) return false;
      for (const auto& x : v.items())
        if (!safe_repr(x)) return false;
      return true;
    case Type::Dict:
      for (const auto& kv : v.dict().items)
        if (!safe_repr(kv.first) || !safe_repr(kv.second)) return false;
      return true;
    default:
      return false;
  }
}
}  // namespace

// jinja2's optimizer evaluates constant subtrees at compile time, with the sandbox's getitem
// for slices; a subtree whose evaluation raises is left to run time. nullopt: not folded.
std::optional<Value> Interp::try_fold(const Expr& e, const std::shared_ptr<Scope>& scope) {
  if (!e.constant || folding_) return std::nullopt;
  folding_ = true;
  std::optional<Value> folded;
  try {
    folded = eval_inner(e, scope);
  } catch (const TemplateError&) {
  }
  folding_ = false;
  return folded;
}

// {{ expr }}: the code generator folds a constant output expression whatever its value (an
// Undefined from a failed constant slice prints as ""), not only safe literals.
std::string Interp::print_value(const Expr& e, const std::shared_ptr<Scope>& scope) {
  if (auto folded = try_fold(e, scope)) return folded->to_str();
  return eval(e, scope).to_str();
}

Value Interp::eval(const Expr& e, const std::shared_ptr<Scope>& scope) {
  step();
  DepthGuard guard(*this);
  try {
    // Elsewhere the optimizer keeps a folded value only if it has a safe repr; otherwise
    // this node runs at run time (its constant children get the same treatment).
    if (auto folded = try_fold(e, scope); folded && safe_repr(*folded)) return *folded;
    return eval_inner(e, scope);
  } catch (const TemplateError& err) {
    if (err.line() == 0 && !dynamic_cast<const RaisedError*>(&err))
      throw TemplateError(err.message(), e.line);
    throw;
  }
}

Value Interp::eval_inner(const Expr& e, const std::shared_ptr<Scope>& scope) {
  switch (e.kind) {
    case ExprKind::Const:
      return e.value;
    case ExprKind::Name:
      if (folding_) fail("not constant");  // jinja2's Impossible
      return lookup(e.name, *scope);
    case ExprKind::Getattr:
      return getattr(eval(*e.a, scope), e.name);
    case ExprKind::Getitem: {
      Value obj = eval(*e.a, scope);
      if (e.b->kind == ExprKind::Slice) return slice(obj, e, scope);
      return getitem(obj, eval(*e.b, scope));
    }
    case ExprKind::Slice:
      fail("slice outside of []");
    case ExprKind::Call: {
      if (folding_) fail("not constant");
      Value callee = eval(*e.a, scope);
      CallArgs args;
      eval_args(e.call, scope, args);
      return call(callee, args);
    }
    case ExprKind::Filter: {
      if (folding_ && (e.call.dyn_args || e.name == "map" || e.name == "select" ||
                       e.name == "reject" || e.name == "selectattr" || e.name == "rejectattr"))
        fail("not constant");  // filters that need the context are never folded
      Value v = e.a ? eval(*e.a, scope) : Value();
      CallArgs args;
      eval_args(e.call, scope, args);
      return call_filter(*this, e.name, v, args);
    }
    case ExprKind::Test: {
      Value v = eval(*e.a, scope);
      CallArgs args;
      eval_args(e.call, scope, args);
      return Value::boolean(call_test(*this, e.name, v, args));
    }
    case ExprKind::Not:
      return Value::boolean(!eval(*e.a, scope).truthy());
    case ExprKind::Neg:
    case ExprKind::Pos: {
      Value v = eval(*e.a, scope);
      if (v.is_undefined()) fail(v.undefined_message());
      bool neg = e.kind == ExprKind::Neg;
      if (v.type() == Type::Float) return Value::number(neg ? -v.as_float() : v.as_float());
      if (v.is_number()) {
        if (neg && v.as_int() == INT64_MIN) checked(true, 0);
        return Value::integer(neg ? -v.as_int() : v.as_int());
      }
      fail(std::string("bad operand type for unary ") + (neg ? "-" : "+") + ": '" + v.type_name() +
           "'");
    }
    case ExprKind::Binary: {
      Value a = eval(*e.a, scope);
      return binary(e.op, a, eval(*e.b, scope));
    }
    case ExprKind::And: {
      Value l = eval(*e.a, scope);
      return l.truthy() ? eval(*e.b, scope) : l;
    }
    case ExprKind::Or: {
      Value l = eval(*e.a, scope);
      return l.truthy() ? l : eval(*e.b, scope);
    }
    case ExprKind::Concat: {
      std::string s;
      for (const auto& x : e.items) {
        s += eval(*x, scope).to_str();
        check_size(s.size());
      }
      charge_bytes(s.size());
      return Value::string(std::move(s));
    }
    case ExprKind::Compare: {
      Value left = eval(*e.items[0], scope);
      for (size_t i = 0; i < e.ops.size(); ++i) {
        Value right = eval(*e.items[i + 1], scope);
        if (!compare_op(e.ops[i], left, right)) return Value::boolean(false);
        left = std::move(right);
      }
      return Value::boolean(true);
    }
    case ExprKind::CondExpr:
      if (eval(*e.a, scope).truthy()) return eval(*e.b, scope);
      if (e.c) return eval(*e.c, scope);
      if (folding_) fail("not constant");  // jinja2 leaves an else-less if to run time
      return Value::undefined("the inline if-expression on line " + std::to_string(e.line) +
                              " evaluated to false and no else section was defined.");
    case ExprKind::List:
    case ExprKind::Tuple: {
      std::vector<Value> items;
      items.reserve(e.items.size());
      for (const auto& x : e.items) items.push_back(eval(*x, scope));
      return Value::list(std::move(items),
                         e.kind == ExprKind::List ? ListKind::List : ListKind::Tuple);
    }
    case ExprKind::Dict: {
      ValueDict d;
      for (size_t i = 0; i < e.items.size(); ++i) {
        Value k = eval(*e.items[i], scope);
        if ((k.is_list() && k.list_kind() == ListKind::List) || k.is_dict())
          fail("unhashable type: '" + k.type_name() + "'");
        d.set(std::move(k), eval(*e.values[i], scope));
      }
      return Value::dict_of(std::move(d));
    }
  }
  fail("unknown expression");
}

}  // namespace llm::jinja
