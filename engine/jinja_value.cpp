#include "engine/jinja_value.h"

#include <algorithm>
#include <cmath>

#include "engine/jinja_text.h"

namespace llm::jinja {

namespace {
constexpr int kMaxNesting = 256;  // repr / json / == depth; deeper means a cycle or abuse
}

void fail(const std::string& msg) {
  throw TemplateError(msg);
}

const Value* ValueDict::find(const Value& key) const {
  if (key.is_string()) return find(std::string_view(key.str()));
  for (const auto& kv : items)
    if (equals(kv.first, key)) return &kv.second;
  return nullptr;
}

const Value* ValueDict::find(std::string_view key) const {
  for (const auto& kv : items)
    if (kv.first.is_string() && kv.first.str() == key) return &kv.second;
  return nullptr;
}

void ValueDict::set(Value key, Value value) {
  for (auto& kv : items) {
    if (equals(kv.first, key)) {
      kv.second = std::move(value);
      return;
    }
  }
  items.emplace_back(std::move(key), std::move(value));
}

const Value* CallArgs::kwarg(std::string_view name) const {
  for (const auto& kv : kw)
    if (kv.first == name) return &kv.second;
  return nullptr;
}

Value Value::undefined(std::string hint) {
  Value v;
  if (!hint.empty()) v.ptr_ = std::make_shared<std::string>(std::move(hint));
  return v;
}

Value Value::forbidden(std::string message) {
  Value v = undefined(std::move(message));
  v.safe_ = true;
  return v;
}

Value Value::string(std::string s, bool safe) {
  Value v;
  v.type_ = Type::String;
  v.safe_ = safe;
  v.ptr_ = std::make_shared<std::string>(std::move(s));
  return v;
}

Value Value::list(std::vector<Value> items, ListKind kind) {
  Value v;
  v.type_ = Type::List;
  v.kind_ = kind;
  auto box = std::make_shared<ListBox>();
  box->items = std::move(items);
  v.ptr_ = std::move(box);
  return v;
}

Value Value::dict_of(ValueDict d) {
  return dict_ref(std::make_shared<ValueDict>(std::move(d)));
}

Value Value::dict_ref(std::shared_ptr<ValueDict> d) {
  Value v;
  v.type_ = Type::Dict;
  v.ptr_ = std::move(d);
  return v;
}

Value Value::namespace_(std::shared_ptr<ValueDict> attrs) {
  Value v = dict_ref(std::move(attrs));
  v.type_ = Type::Namespace;
  return v;
}

Value Value::callable(std::shared_ptr<const Callable> fn) {
  Value v;
  v.type_ = Type::Callable;
  v.ptr_ = std::const_pointer_cast<Callable>(std::move(fn));
  return v;
}

double Value::as_float() const {
  switch (type_) {
    case Type::Float:
      return f_;
    case Type::Int:
      return static_cast<double>(i_);
    case Type::Bool:
      return b_ ? 1.0 : 0.0;
    default:
      return 0;
  }
}

const void* Value::identity() const {
  switch (type_) {
    case Type::List:
    case Type::Dict:
    case Type::Namespace:
    case Type::Callable:
    case Type::String:
      return ptr_.get();
    default:
      return nullptr;
  }
}

std::string Value::undefined_message() const {
  return ptr_ ? text() : std::string("value is undefined");
}

bool Value::truthy() const {
  switch (type_) {
    case Type::Undefined:
    case Type::None:
      return false;
    case Type::Bool:
      return b_;
    case Type::Int:
      return i_ != 0;
    case Type::Float:
      return f_ != 0;
    case Type::String:
      return !text().empty();
    case Type::List:
      return kind_ == ListKind::Iterator || !box().items.empty();
    case Type::Dict:
      return !dict().items.empty();
    case Type::Namespace:
    case Type::Callable:
      return true;
  }
  return false;
}

std::optional<size_t> Value::length() const {
  switch (type_) {
    case Type::Undefined:
      return 0;
    case Type::String:
      return utf8_length(text());
    case Type::List:
      if (kind_ == ListKind::Iterator) return std::nullopt;
      return box().items.size();
    case Type::Dict:
      return dict().items.size();
    default:
      return std::nullopt;
  }
}

std::string Value::type_name() const {
  switch (type_) {
    case Type::Undefined:
      return "Undefined";
    case Type::None:
      return "NoneType";
    case Type::Bool:
      return "bool";
    case Type::Int:
      return "int";
    case Type::Float:
      return "float";
    case Type::String:
      return safe_ ? "Markup" : "str";
    case Type::List:
      return kind_ == ListKind::List ? "list" : kind_ == ListKind::Tuple ? "tuple" : "generator";
    case Type::Dict:
      return "dict";
    case Type::Namespace:
      return "Namespace";
    case Type::Callable:
      return fn().is_macro ? "Macro" : "builtin_function_or_method";
  }
  return "object";
}

std::string Value::to_str() const {
  switch (type_) {
    case Type::Undefined:
      return "";
    case Type::String:
      return text();
    default: {
      std::string out;
      repr_into(out, 0);
      return out;
    }
  }
}

std::string Value::repr() const {
  std::string out;
  repr_into(out, 0);
  return out;
}

void Value::repr_into(std::string& out, int depth) const {
  if (depth > kMaxNesting) fail("value nested too deeply (or a cycle) to print");
  switch (type_) {
    case Type::Undefined:
      out += "Undefined";
      return;
    case Type::None:
      out += "None";
      return;
    case Type::Bool:
      out += b_ ? "True" : "False";
      return;
    case Type::Int:
      out += std::to_string(i_);
      return;
    case Type::Float:
      out += py_float_repr(f_);
      return;
    case Type::String:
      if (safe_) out += "Markup(";
      out += py_repr_string(text());
      if (safe_) out += ")";
      return;
    case Type::List: {
      if (kind_ == ListKind::Iterator) {
        out += "<generator object>";
        return;
      }
      bool tuple = kind_ == ListKind::Tuple;
      out += tuple ? "(" : "[";
      const auto& items = box().items;
      for (size_t k = 0; k < items.size(); ++k) {
        if (k) out += ", ";
        items[k].repr_into(out, depth + 1);
      }
      if (tuple && items.size() == 1) out += ",";
      out += tuple ? ")" : "]";
      return;
    }
    case Type::Dict:
    case Type::Namespace: {
      if (type_ == Type::Namespace) out += "<Namespace ";
      out += "{";
      bool first = true;
      for (const auto& kv : dict().items) {
        if (!first) out += ", ";
        first = false;
        kv.first.repr_into(out, depth + 1);
        out += ": ";
        kv.second.repr_into(out, depth + 1);
      }
      out += "}";
      if (type_ == Type::Namespace) out += ">";
      return;
    }
    case Type::Callable:
      if (!fn().is_macro)
        out += "<built-in method " + fn().name + ">";
      else if (fn().name.empty())
        out += "<Macro anonymous>";
      else
        out += "<Macro '" + fn().name + "'>";
      return;
  }
}

namespace {

bool equals_at(const Value& a, const Value& b, int depth) {
  if (depth > kMaxNesting) fail("value nested too deeply (or a cycle) to compare");
  if (a.is_number() && b.is_number()) {
    if (a.type() == Type::Float || b.type() == Type::Float) return a.as_float() == b.as_float();
    return a.as_int() == b.as_int();
  }
  if (a.type() != b.type()) return false;
  switch (a.type()) {
    case Type::Undefined:
    case Type::None:
      return true;
    case Type::String:
      return a.str() == b.str();
    case Type::List: {
      if (a.list_kind() != b.list_kind() || a.list_kind() == ListKind::Iterator)
        return a.identity() == b.identity();
      const auto &x = a.items(), &y = b.items();
      if (x.size() != y.size()) return false;
      for (size_t i = 0; i < x.size(); ++i)
        if (!equals_at(x[i], y[i], depth + 1)) return false;
      return true;
    }
    case Type::Dict: {
      const auto &x = a.dict().items, &y = b.dict().items;
      if (x.size() != y.size()) return false;
      for (const auto& kv : x) {
        const Value* other = b.dict().find(kv.first);
        if (!other || !equals_at(kv.second, *other, depth + 1)) return false;
      }
      return true;
    }
    default:
      return a.identity() == b.identity();
  }
}

int compare_at(const Value& a, const Value& b, int depth) {
  if (depth > kMaxNesting) fail("value nested too deeply (or a cycle) to compare");
  if (a.is_number() && b.is_number()) {
    if (a.type() == Type::Float || b.type() == Type::Float) {
      double x = a.as_float(), y = b.as_float();
      return x < y ? -1 : x > y ? 1 : 0;
    }
    int64_t x = a.as_int(), y = b.as_int();
    return x < y ? -1 : x > y ? 1 : 0;
  }
  if (a.is_string() && b.is_string()) {
    int c = a.str().compare(b.str());  // UTF-8 byte order is code point order
    return c < 0 ? -1 : c > 0 ? 1 : 0;
  }
  if (a.is_list() && b.is_list() && a.list_kind() == b.list_kind() &&
      a.list_kind() != ListKind::Iterator) {
    const auto &x = a.items(), &y = b.items();
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (equals_at(x[i], y[i], depth + 1)) continue;
      return compare_at(x[i], y[i], depth + 1);
    }
    return x.size() < y.size() ? -1 : x.size() > y.size() ? 1 : 0;
  }
  if (a.is_undefined() || b.is_undefined()) fail((a.is_undefined() ? a : b).undefined_message());
  fail("'<' not supported between instances of '" + a.type_name() + "' and '" + b.type_name() +
       "'");
}

}  // namespace

bool equals(const Value& a, const Value& b) {
  return equals_at(a, b, 0);
}
int compare(const Value& a, const Value& b) {
  return compare_at(a, b, 0);
}

bool contains(const Value& haystack, const Value& needle) {
  switch (haystack.type()) {
    case Type::String:
      if (!needle.is_string())
        fail("'in <string>' requires string as left operand, not " + needle.type_name());
      return haystack.str().find(needle.str()) != std::string::npos;
    case Type::List:
      for (const auto& v : haystack.items())
        if (equals(v, needle)) return true;
      return false;
    case Type::Dict:
      if ((needle.is_list() && needle.list_kind() != ListKind::Tuple) || needle.is_dict())
        fail("unhashable type: '" + needle.type_name() + "'");
      return haystack.dict().find(needle) != nullptr;
    case Type::Undefined:
      if (haystack.is_forbidden()) fail(haystack.undefined_message());
      return false;  // Undefined iterates as empty
    default:
      fail("argument of type '" + haystack.type_name() + "' is not iterable");
  }
}

namespace {

void json_number_float(std::string& out, double f) {
  if (std::isnan(f))
    out += "NaN";
  else if (std::isinf(f))
    out += f > 0 ? "Infinity" : "-Infinity";
  else
    out += py_float_repr(f);
}

std::string json_key(const Value& k) {
  switch (k.type()) {
    case Type::String:
      return k.str();
    case Type::Int:
      return std::to_string(k.as_int());
    case Type::Bool:
      return k.as_bool() ? "true" : "false";
    case Type::None:
      return "null";
    case Type::Float: {
      std::string s;
      json_number_float(s, k.as_float());
      return s;
    }
    default:
      fail("keys must be str, int, float, bool or None, not " + k.type_name());
  }
}

void json_into(std::string& out, const Value& v, const JsonOptions& opt, int depth) {
  if (depth > kMaxNesting) fail("Circular reference detected");
  auto newline = [&](int level) {
    out.push_back('\n');
    for (int i = 0; i < level; ++i) out += *opt.indent;
  };
  switch (v.type()) {
    case Type::None:
      out += "null";
      return;
    case Type::Bool:
      out += v.as_bool() ? "true" : "false";
      return;
    case Type::Int:
      out += std::to_string(v.as_int());
      return;
    case Type::Float:
      json_number_float(out, v.as_float());
      return;
    case Type::String:
      json_escape_string(out, v.str(), opt.ensure_ascii);
      return;
    case Type::List: {
      if (v.list_kind() == ListKind::Iterator) break;
      const auto& items = v.items();
      if (items.empty()) {
        out += "[]";
        return;
      }
      out.push_back('[');
      for (size_t i = 0; i < items.size(); ++i) {
        if (i) out += opt.item_sep;
        if (opt.indent) newline(depth + 1);
        json_into(out, items[i], opt, depth + 1);
      }
      if (opt.indent) newline(depth);
      out.push_back(']');
      return;
    }
    case Type::Dict: {
      const auto& items = v.dict().items;
      if (items.empty()) {
        out += "{}";
        return;
      }
      std::vector<std::pair<std::string, const Value*>> kvs;
      kvs.reserve(items.size());
      for (const auto& kv : items) kvs.emplace_back(json_key(kv.first), &kv.second);
      if (opt.sort_keys) {
        for (const auto& kv : items)
          if (!kv.first.is_string()) fail("'<' not supported between dict keys of mixed types");
        std::stable_sort(kvs.begin(), kvs.end(),
                         [](const auto& a, const auto& b) { return a.first < b.first; });
      }
      out.push_back('{');
      for (size_t i = 0; i < kvs.size(); ++i) {
        if (i) out += opt.item_sep;
        if (opt.indent) newline(depth + 1);
        json_escape_string(out, kvs[i].first, opt.ensure_ascii);
        out += opt.key_sep;
        json_into(out, *kvs[i].second, opt, depth + 1);
      }
      if (opt.indent) newline(depth);
      out.push_back('}');
      return;
    }
    default:
      break;
  }
  if (v.is_undefined() && v.is_forbidden()) fail(v.undefined_message());
  fail("Object of type " + v.type_name() + " is not JSON serializable");
}

}  // namespace

std::string to_json(const Value& v, const JsonOptions& opt) {
  std::string out;
  json_into(out, v, opt, 0);
  return out;
}

}  // namespace llm::jinja
