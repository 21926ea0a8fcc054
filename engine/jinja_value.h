// The value type of the Jinja engine: Python's objects as jinja2 sees them inside a chat
// template (None, bool, int, float, str, list, tuple, dict, jinja2's Undefined and
// Namespace, callables). Lists and dicts are shared by reference like Python objects, and
// a dict keeps insertion order like a Python dict (tool schemas must serialise in the order
// the client sent them).
//
// str() / repr() / == / < follow Python exactly for these types, because templates print
// dicts (`{{ tool_call.arguments }}` prints a Python repr) and compare mixed values.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/error.h"

namespace llm::jinja {

class Value;
class Interp;

// A template-level error (TypeError, UndefinedError, SecurityError ... in jinja2). The
// evaluator adds the line of the expression that raised it.
class TemplateError : public llm::Error {
 public:
  explicit TemplateError(const std::string& msg, int line = 0)
      : llm::Error(msg), message_(msg), line_(line) {}
  const std::string& message() const { return message_; }
  int line() const { return line_; }

 private:
  std::string message_;
  int line_;
};
[[noreturn]] void fail(const std::string& msg);

enum class Type : uint8_t {
  Undefined,
  None,
  Bool,
  Int,
  Float,
  String,
  List,  // list, tuple or a one-shot iterator (generator) — see ListKind
  Dict,
  Namespace,  // jinja2's namespace(): attribute-assignable, not a mapping
  Callable,
};

enum class ListKind : uint8_t { List, Tuple, Iterator };

struct ValueDict {
  std::vector<std::pair<Value, Value>> items;  // insertion order
  const Value* find(const Value& key) const;
  const Value* find(std::string_view key) const;
  void set(Value key, Value value);
};

struct CallArgs {
  std::vector<Value> pos;
  std::vector<std::pair<std::string, Value>> kw;
  const Value* kwarg(std::string_view name) const;
};

// A native function or a macro. `fn` gets the interpreter (to call filters, tests and
// other callables) and the arguments.
struct Callable {
  std::string name;
  bool is_macro = false;
  std::function<Value(Interp&, CallArgs&)> fn;
};

class Value {
 public:
  Value() = default;  // Undefined without a hint
  static Value undefined(std::string hint);
  // An Undefined whose every use raises `message` (jinja2's unsafe_undefined for
  // attributes the immutable sandbox forbids, e.g. list.append).
  static Value forbidden(std::string message);
  static Value none() { return scalar(Type::None); }
  static Value boolean(bool b) {
    Value v = scalar(Type::Bool);
    v.b_ = b;
    return v;
  }
  static Value integer(int64_t i) {
    Value v = scalar(Type::Int);
    v.i_ = i;
    return v;
  }
  static Value number(double f) {
    Value v = scalar(Type::Float);
    v.f_ = f;
    return v;
  }
  static Value string(std::string s, bool safe = false);
  static Value list(std::vector<Value> items, ListKind kind = ListKind::List);
  static Value dict_of(ValueDict d);
  static Value dict_ref(std::shared_ptr<ValueDict> d);
  static Value namespace_(std::shared_ptr<ValueDict> attrs);
  static Value callable(std::shared_ptr<const Callable> fn);

  Type type() const { return type_; }
  bool is_undefined() const { return type_ == Type::Undefined; }
  bool is_none() const { return type_ == Type::None; }
  bool is_string() const { return type_ == Type::String; }
  bool is_int() const { return type_ == Type::Int; }  // not bool
  bool is_number() const {
    return type_ == Type::Int || type_ == Type::Float || type_ == Type::Bool;
  }
  bool is_list() const { return type_ == Type::List; }
  bool is_dict() const { return type_ == Type::Dict; }
  bool is_callable() const { return type_ == Type::Callable; }

  bool as_bool() const { return b_; }
  int64_t as_int() const { return type_ == Type::Bool ? b_ : i_; }  // Int or Bool
  double as_float() const;                                          // any number
  const std::string& str() const { return text(); }                 // String
  bool is_safe() const { return safe_; }                            // markupsafe.Markup
  std::vector<Value>& items() const { return box().items; }         // List
  ListKind list_kind() const { return kind_; }
  ValueDict& dict() const { return *static_cast<ValueDict*>(ptr_.get()); }  // Dict, Namespace
  std::shared_ptr<ValueDict> dict_ptr() const { return std::static_pointer_cast<ValueDict>(ptr_); }
  const Callable& fn() const { return *static_cast<const Callable*>(ptr_.get()); }
  const void* identity() const;  // for `is sameas` and ==  on reference-only types

  // Undefined: the jinja2 message for using it, and whether it is a sandbox refusal.
  std::string undefined_message() const;
  bool is_forbidden() const { return safe_; }

  bool truthy() const;                   // Python bool(); raises nothing
  std::string to_str() const;            // Python str()
  std::string repr() const;              // Python repr()
  std::string type_name() const;         // Python type(x).__name__
  std::optional<size_t> length() const;  // Python len(), nullopt when unsized

 private:
  static Value scalar(Type t) {
    Value v;
    v.type_ = t;
    return v;
  }
  struct ListBox {
    std::vector<Value> items;
  };
  void repr_into(std::string& out, int depth) const;
  const std::string& text() const { return *static_cast<const std::string*>(ptr_.get()); }
  ListBox& box() const { return *static_cast<ListBox*>(ptr_.get()); }

  // 32 bytes: a tag, the scalar payload, and one shared pointer to the heap payload
  // (std::string for String and an Undefined's message, ListBox, ValueDict, Callable).
  Type type_ = Type::Undefined;
  bool safe_ = false;  // String: Markup; Undefined: forbidden (sandbox)
  ListKind kind_ = ListKind::List;
  union {
    bool b_;
    int64_t i_ = 0;
    double f_;
  };
  std::shared_ptr<void> ptr_;
};

// Python ==, and the ordering comparisons (raise TemplateError like Python's TypeError).
bool equals(const Value& a, const Value& b);
int compare(const Value& a, const Value& b);  // <0, 0, >0; raises on unorderable types
// `needle in haystack` (str in str, item in list, key in dict).
bool contains(const Value& haystack, const Value& needle);

struct JsonOptions {
  std::optional<std::string> indent;  // nullopt: single line
  bool ensure_ascii = false;
  bool sort_keys = false;
  std::string item_sep = ", ";  // Python's defaults: ", " without indent, "," with indent
  std::string key_sep = ": ";
};
// json.dumps(value, ...) as transformers' tojson override calls it.
std::string to_json(const Value& v, const JsonOptions& opt);

}  // namespace llm::jinja
