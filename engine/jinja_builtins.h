// The filters, tests, global functions and str/dict/list methods a chat template can call,
// with the semantics of jinja2's defaults (filters.py, tests.py) running inside
// transformers' ImmutableSandboxedEnvironment, plus transformers' own additions:
// tojson (json.dumps with ensure_ascii=False), raise_exception and strftime_now.
#pragma once
#include <initializer_list>
#include <optional>
#include <string_view>

#include "engine/jinja_value.h"

namespace llm::jinja {

bool has_filter(std::string_view name);
bool has_test(std::string_view name);

// Calls filter `name` on `value`; raises TemplateError for an unknown filter.
Value call_filter(Interp& in, std::string_view name, const Value& value, CallArgs& args);
// Runs test `name`; raises TemplateError for an unknown test.
bool call_test(Interp& in, std::string_view name, const Value& value, CallArgs& args);
// `obj.name` for str, dict and list methods (a bound Callable), or nullopt when `obj` has
// no such method. Methods the immutable sandbox forbids (list.append, dict.update ...)
// come back as a forbidden Undefined, as in jinja2.
std::optional<Value> method(const Value& obj, std::string_view name);
// The global functions: range (capped at 100000 items like the sandbox), dict, namespace,
// raise_exception, strftime_now; nullopt when `name` is not one. (jinja2's lipsum, cycler
// and joiner are not provided: no chat template uses them.)
std::optional<Value> global_function(std::string_view name);

// --- helpers shared by the built-in files ----------------------------------------------

// Python-style binding of call arguments to named parameters: positionals first, then
// keywords; raises for too many positionals or an unknown keyword.
class Params {
 public:
  Params(const CallArgs& args, std::string_view func, std::initializer_list<const char*> names,
         bool extra_positional = false);
  const Value* get(size_t i) const { return vals_[i]; }
  Value get_or(size_t i, Value dflt) const { return vals_[i] ? *vals_[i] : std::move(dflt); }
  bool flag(size_t i, bool dflt) const { return vals_[i] ? vals_[i]->truthy() : dflt; }
  std::optional<int64_t> int_arg(size_t i) const;  // int/bool argument or nullopt if absent

 private:
  std::string func_;
  std::vector<const Value*> vals_;
};

// soft_str(): str() that keeps Markup marked safe.
Value soft_str(const Value& v);
// str.format(*args, **kwargs) with Python's format-spec mini-language.
std::string py_format(Interp& in, const std::string& fmt, const CallArgs& args);
// Python's `fmt % arg` (%s %r %d %i %f %e %g %%; a tuple supplies several arguments).
std::string percent_format(const std::string& fmt, const Value& arg);
// format(value, spec) for one replacement field.
std::string format_value(const Value& v, const std::string& spec);

}  // namespace llm::jinja
