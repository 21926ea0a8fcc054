// Filters and tests (jinja2/filters.py, jinja2/tests.py) with transformers' tojson.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <unordered_map>

#include "engine/jinja_builtins.h"
#include "engine/jinja_eval.h"
#include "engine/jinja_text.h"

namespace llm::jinja {

Params::Params(const CallArgs& args, std::string_view func,
               std::initializer_list<const char*> names, bool extra_positional)
    : func_(func), vals_(names.size(), nullptr) {
  if (args.pos.size() > names.size() && !extra_positional)
    fail(func_ + "() takes at most " + std::to_string(names.size()) + " argument(s) (" +
         std::to_string(args.pos.size()) + " given)");
  for (size_t i = 0; i < args.pos.size() && i < names.size(); ++i) vals_[i] = &args.pos[i];
  for (const auto& kv : args.kw) {
    size_t i = 0;
    for (const char* n : names) {
      if (kv.first == n) break;
      ++i;
    }
    if (i == names.size()) fail(func_ + "() got an unexpected keyword argument '" + kv.first + "'");
    if (vals_[i]) fail(func_ + "() got multiple values for argument '" + kv.first + "'");
    vals_[i] = &kv.second;
  }
}

std::optional<int64_t> Params::int_arg(size_t i) const {
  if (!vals_[i] || vals_[i]->is_none()) return std::nullopt;
  if (!vals_[i]->is_int() && vals_[i]->type() != Type::Bool)
    fail(func_ + "(): expected an integer, got " + vals_[i]->type_name());
  return vals_[i]->as_int();
}

Value soft_str(const Value& v) {
  return v.is_string() ? v : Value::string(v.to_str());
}

namespace {

using FilterFn = Value (*)(Interp&, const Value&, const CallArgs&);
using TestFn = bool (*)(Interp&, const Value&, const CallArgs&);

// make_attrgetter: "a.b.0" walks getitem per dotted part (digits as integers).
Value get_attribute_path(Interp& in, const Value& item, const Value& attribute) {
  if (!attribute.is_string()) return in.getitem(item, attribute);
  Value cur = item;
  for (const std::string& part : py_split(attribute.str(), std::string("."), -1)) {
    bool digits = !part.empty() && std::all_of(part.begin(), part.end(), ::isdigit);
    cur = in.getitem(cur, digits ? Value::integer(std::atoll(part.c_str())) : Value::string(part));
  }
  return cur;
}

Value lower_if_string(const Value& v) {
  return v.is_string() ? Value::string(py_lower(v.str())) : v;
}

size_t require_length(const Value& v) {
  if (auto n = v.length()) return *n;
  fail("object of type '" + v.type_name() + "' has no len()");
}

Value f_tojson(Interp&, const Value& v, const CallArgs& a) {
  Params p(a, "tojson", {"ensure_ascii", "indent", "separators", "sort_keys"});
  JsonOptions opt;
  opt.ensure_ascii = p.flag(0, false);
  opt.sort_keys = p.flag(3, false);
  if (const Value* ind = p.get(1); ind && !ind->is_none()) {
    if (ind->is_string())
      opt.indent = ind->str();
    else if (ind->is_number() && ind->type() != Type::Float)
      opt.indent = std::string(static_cast<size_t>(std::max<int64_t>(0, ind->as_int())), ' ');
    else
      fail("tojson: indent must be an integer or a string");
    opt.item_sep = ",";
  }
  if (const Value* sep = p.get(2); sep && !sep->is_none()) {
    std::vector<Value> parts = iterate(*sep);
    if (parts.size() != 2 || !parts[0].is_string() || !parts[1].is_string())
      fail("tojson: separators must be a pair of strings");
    opt.item_sep = parts[0].str();
    opt.key_sep = parts[1].str();
  }
  return Value::string(to_json(v, opt));
}

Value f_length(Interp&, const Value& v, const CallArgs& a) {
  Params p(a, "length", {});
  return Value::integer(static_cast<int64_t>(require_length(v)));
}

Value f_string(Interp&, const Value& v, const CallArgs& a) {
  Params p(a, "string", {});
  return soft_str(v);
}

Value f_trim(Interp&, const Value& v, const CallArgs& a) {
  Params p(a, "trim", {"chars"});
  std::optional<std::string> chars;
  if (const Value* c = p.get(0); c && !c->is_none()) chars = c->to_str();
  Value s = soft_str(v);
  return Value::string(py_strip(s.str(), chars, true, true), s.is_safe());
}

Value f_upper(Interp&, const Value& v, const CallArgs&) {
  Value s = soft_str(v);
  return Value::string(py_upper(s.str()), s.is_safe());
}
Value f_lower(Interp&, const Value& v, const CallArgs&) {
  Value s = soft_str(v);
  return Value::string(py_lower(s.str()), s.is_safe());
}
Value f_capitalize(Interp&, const Value& v, const CallArgs&) {
  return Value::string(py_capitalize(soft_str(v).str()));
}
Value f_title(Interp&, const Value& v, const CallArgs&) {
  // jinja2's do_title: split on runs of [-\s({\[<]; each piece: first char upper, rest lower.
  std::u32string u = to_u32(soft_str(v).str());
  auto is_sep = [](char32_t c) {
    return c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || is_py_space(c);
  };
  std::string out;
  for (size_t i = 0; i < u.size();) {
    size_t j = i;
    bool sep = is_sep(u[i]);
    while (j < u.size() && is_sep(u[j]) == sep) ++j;
    std::string piece = to_utf8(std::u32string_view(u).substr(i, j - i));
    if (sep) {
      out += piece;
    } else {
      out += py_upper(to_utf8(std::u32string_view(u).substr(i, 1)));
      out += py_lower(to_utf8(std::u32string_view(u).substr(i + 1, j - i - 1)));
    }
    i = j;
  }
  return Value::string(out);
}

Value f_default(Interp&, const Value& v, const CallArgs& a) {
  Params p(a, "default", {"default_value", "boolean"});
  if (v.is_undefined() || (p.flag(1, false) && !v.truthy())) return p.get_or(0, Value::string(""));
  return v;
}

Value f_join(Interp& in, const Value& v, const CallArgs& a) {
  Params p(a, "join", {"d", "attribute"});
  std::string sep = p.get_or(0, Value::string("")).to_str();
  std::string out;
  bool first = true;
  for (const Value& item : iterate(v)) {
    if (!first) out += sep;
    first = false;
    out += (p.get(1) ? get_attribute_path(in, item, *p.get(1)) : item).to_str();
    in.check_size(out.size());
  }
  in.charge_bytes(out.size());
  return Value::string(std::move(out));
}

Value f_first(Interp&, const Value& v, const CallArgs&) {
  std::vector<Value> items = iterate(v);
  if (items.empty()) return Value::undefined("No first item, sequence was empty.");
  return items.front();
}

Value f_last(Interp&, const Value& v, const CallArgs&) {
  if (v.is_list() && v.list_kind() == ListKind::Iterator)
    fail("'generator' object is not reversible");
  std::vector<Value> items = iterate(v);
  if (items.empty()) return Value::undefined("No last item, sequence was empty.");
  return items.back();
}

Value f_list(Interp&, const Value& v, const CallArgs&) {
  return Value::list(iterate(v));
}

Value f_items(Interp&, const Value& v, const CallArgs&) {
  if (v.is_undefined()) return Value::list({}, ListKind::Iterator);
  if (!v.is_dict()) fail("Can only get item pairs from a mapping.");
  std::vector<Value> out;
  for (const auto& kv : v.dict().items)
    out.push_back(Value::list({kv.first, kv.second}, ListKind::Tuple));
  return Value::list(std::move(out), ListKind::Iterator);
}

Value f_dictsort(Interp&, const Value& v, const CallArgs& a) {
  Params p(a, "dictsort", {"case_sensitive", "by", "reverse"});
  if (!v.is_dict()) fail("dictsort: expected a mapping, got " + v.type_name());
  std::string by = p.get_or(1, Value::string("key")).to_str();
  if (by != "key" && by != "value") fail("You can only sort by either \"key\" or \"value\"");
  size_t pos = by == "key" ? 0 : 1;
  bool cs = p.flag(0, false), rev = p.flag(2, false);
  std::vector<Value> items;
  for (const auto& kv : v.dict().items)
    items.push_back(Value::list({kv.first, kv.second}, ListKind::Tuple));
  std::stable_sort(items.begin(), items.end(), [&](const Value& x, const Value& y) {
    Value kx = x.items()[pos], ky = y.items()[pos];
    if (!cs) kx = lower_if_string(kx), ky = lower_if_string(ky);
    return rev ? compare(ky, kx) < 0 : compare(kx, ky) < 0;
  });
  return Value::list(std::move(items));
}

Value f_sort(Interp& in, const Value& v, const CallArgs& a) {
  Params p(a, "sort", {"reverse", "case_sensitive", "attribute"});
  bool rev = p.flag(0, false), cs = p.flag(1, false);
  std::vector<Value> items = iterate(v);
  std::vector<std::vector<Value>> keys;  // one key per comma-separated attribute
  std::vector<Value> attrs;
  if (const Value* at = p.get(2); at && !at->is_none()) {
    if (at->is_string())
      for (const auto& s : py_split(at->str(), std::string(","), -1))
        attrs.push_back(Value::string(s));
    else
      attrs.push_back(*at);
  }
  std::vector<size_t> order(items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    order[i] = i;
    std::vector<Value> k;
    if (attrs.empty()) k.push_back(items[i]);
    for (const Value& at : attrs) k.push_back(get_attribute_path(in, items[i], at));
    if (!cs)
      for (auto& x : k) x = lower_if_string(x);
    keys.push_back(std::move(k));
  }
  auto less = [&](size_t x, size_t y) {
    for (size_t j = 0; j < keys[x].size(); ++j) {
      int c = compare(keys[x][j], keys[y][j]);
      if (c) return rev ? c > 0 : c < 0;
    }
    return false;
  };
  std::stable_sort(order.begin(), order.end(), less);
  std::vector<Value> out;
  for (size_t i : order) out.push_back(items[i]);
  return Value::list(std::move(out));
}

Value f_unique(Interp& in, const Value& v, const CallArgs& a) {
  Params p(a, "unique", {"case_sensitive", "attribute"});
  bool cs = p.flag(0, false);
  std::vector<Value> seen, out;
  for (const Value& item : iterate(v)) {
    Value key = p.get(1) ? get_attribute_path(in, item, *p.get(1)) : item;
    if (!cs) key = lower_if_string(key);
    if (std::none_of(seen.begin(), seen.end(), [&](const Value& s) { return equals(s, key); })) {
      seen.push_back(key);
      out.push_back(item);
    }
  }
  return Value::list(std::move(out), ListKind::Iterator);
}

Value min_max(Interp& in, const Value& v, const CallArgs& a, bool want_max) {
  Params p(a, want_max ? "max" : "min", {"case_sensitive", "attribute"});
  std::vector<Value> items = iterate(v);
  if (items.empty()) return Value::undefined("No aggregated item, sequence was empty.");
  auto key = [&](const Value& x) {
    Value k = p.get(1) ? get_attribute_path(in, x, *p.get(1)) : x;
    return p.flag(0, false) ? k : lower_if_string(k);
  };
  size_t best = 0;
  for (size_t i = 1; i < items.size(); ++i) {
    int c = compare(key(items[i]), key(items[best]));
    if (want_max ? c > 0 : c < 0) best = i;
  }
  return items[best];
}
Value f_min(Interp& in, const Value& v, const CallArgs& a) {
  return min_max(in, v, a, false);
}
Value f_max(Interp& in, const Value& v, const CallArgs& a) {
  return min_max(in, v, a, true);
}

Value f_map(Interp& in, const Value& v, const CallArgs& a) {
  std::vector<Value> out;
  if (!v.truthy()) return Value::list({}, ListKind::Iterator);
  std::vector<Value> items = iterate(v);
  if (a.pos.empty() && a.kwarg("attribute")) {
    const Value* dflt = a.kwarg("default");
    for (const auto& kv : a.kw)
      if (kv.first != "attribute" && kv.first != "default")
        fail("Unexpected keyword argument '" + kv.first + "'");
    for (const Value& item : items) {
      Value r = get_attribute_path(in, item, *a.kwarg("attribute"));
      out.push_back(dflt && r.is_undefined() ? *dflt : r);
    }
  } else {
    if (a.pos.empty()) fail("map requires a filter argument");
    CallArgs rest;
    rest.pos.assign(a.pos.begin() + 1, a.pos.end());
    rest.kw = a.kw;
    std::string name = a.pos[0].to_str();
    for (const Value& item : items) out.push_back(call_filter(in, name, item, rest));
  }
  return Value::list(std::move(out), ListKind::Iterator);
}

Value select_reject(Interp& in, const Value& v, const CallArgs& a, bool select, bool attr) {
  if (!v.truthy()) return Value::list({}, ListKind::Iterator);
  size_t off = attr ? 1 : 0;
  if (attr && a.pos.empty()) fail("Missing parameter for attribute name");
  std::vector<Value> out;
  for (const Value& item : iterate(v)) {
    Value x = attr ? get_attribute_path(in, item, a.pos[0]) : item;
    bool ok;
    if (a.pos.size() > off) {
      CallArgs rest;
      rest.pos.assign(a.pos.begin() + off + 1, a.pos.end());
      rest.kw = a.kw;
      ok = call_test(in, a.pos[off].to_str(), x, rest);
    } else {
      ok = x.truthy();
    }
    if (ok == select) out.push_back(item);
  }
  return Value::list(std::move(out), ListKind::Iterator);
}
Value f_select(Interp& in, const Value& v, const CallArgs& a) {
  return select_reject(in, v, a, true, false);
}
Value f_reject(Interp& in, const Value& v, const CallArgs& a) {
  return select_reject(in, v, a, false, false);
}
Value f_selectattr(Interp& in, const Value& v, const CallArgs& a) {
  return select_reject(in, v, a, true, true);
}
Value f_rejectattr(Interp& in, const Value& v, const CallArgs& a) {
  return select_reject(in, v, a, false, true);
}

// Python float(str): strip whitespace, underscores between digits, inf/nan.
std::optional<double> parse_py_float(const std::string& s) {
  std::string t = py_strip(s, std::nullopt, true, true);
  std::string clean;
  for (size_t i = 0; i < t.size(); ++i) {
    if (t[i] == '_' && i > 0 && i + 1 < t.size() && isdigit(t[i - 1]) && isdigit(t[i + 1]))
      continue;
    clean.push_back(t[i]);
  }
  if (clean.empty() || clean.find_first_of("xXpP") != std::string::npos) return std::nullopt;
  char* end = nullptr;
  double d = std::strtod(clean.c_str(), &end);
  if (end != clean.c_str() + clean.size()) return std::nullopt;
  return d;
}

Value f_int(Interp&, const Value& v, const CallArgs& a) {
  Params p(a, "int", {"default", "base"});
  if (v.is_undefined()) fail(v.undefined_message());  // int(Undefined) raises
  Value dflt = p.get_or(0, Value::integer(0));
  int64_t base = p.int_arg(1).value_or(10);
  auto from_double = [](double d) {
    if (std::fabs(d) >= 9223372036854775808.0)
      fail("integer overflow (values beyond 64 bits are not supported)");
    return Value::integer(static_cast<int64_t>(std::trunc(d)));
  };
  if (v.type() == Type::Float) {
    if (!std::isfinite(v.as_float())) return dflt;
    return from_double(v.as_float());
  }
  if (v.is_number()) return Value::integer(v.as_int());
  if (v.is_string()) {
    std::string t = py_strip(v.str(), std::nullopt, true, true);
    std::string clean;
    for (char c : t)
      if (c != '_') clean.push_back(c);
    if (!clean.empty()) {
      errno = 0;
      char* end = nullptr;
      long long r = std::strtoll(clean.c_str(), &end, static_cast<int>(base));
      if (!errno && end == clean.c_str() + clean.size()) return Value::integer(r);
    }
    if (auto d = parse_py_float(v.str()); d && std::isfinite(*d))  // "42.23"|int gives 42
      return from_double(*d);
  }
  return dflt;
}

Value f_float(Interp&, const Value& v, const CallArgs& a) {
  Params p(a, "float", {"default"});
  if (v.is_undefined()) fail(v.undefined_message());  // float(Undefined) raises
  if (v.is_number()) return Value::number(v.as_float());
  if (v.is_string())
    if (auto d = parse_py_float(v.str())) return Value::number(*d);
  return p.get_or(0, Value::number(0.0));
}

Value f_abs(Interp&, const Value& v, const CallArgs&) {
  if (v.type() == Type::Float) return Value::number(std::fabs(v.as_float()));
  if (v.is_number()) {
    if (v.as_int() == INT64_MIN) fail("integer overflow");
    return Value::integer(std::llabs(v.as_int()));
  }
  fail("bad operand type for abs(): '" + v.type_name() + "'");
}

Value f_round(Interp&, const Value& v, const CallArgs& a) {
  Params p(a, "round", {"precision", "method"});
  int64_t prec = p.int_arg(0).value_or(0);
  std::string method = p.get_or(1, Value::string("common")).to_str();
  if (method != "common" && method != "ceil" && method != "floor")
    fail("method must be common, ceil or floor");
  if (!v.is_number()) fail("type " + v.type_name() + " doesn't define __round__ method");
  if (method == "common" && v.type() != Type::Float) return Value::integer(v.as_int());
  double x = v.as_float();
  if (method == "common" && prec >= 0) {
    // Python's round() rounds the exact binary value half-to-even, as printf does.
    if (prec > 300 || !std::isfinite(x)) return Value::number(x);
    char buf[512];
    std::snprintf(buf, sizeof buf, "%.*f", static_cast<int>(prec), x);
    return Value::number(std::strtod(buf, nullptr));
  }
  double scale = std::pow(10.0, static_cast<double>(prec));
  double y = x * scale;
  double r = method == "ceil"    ? std::ceil(y)
             : method == "floor" ? std::floor(y)
                                 : std::nearbyint(y);
  return Value::number(r / scale);
}

Value f_replace(Interp& in, const Value& v, const CallArgs& a) {
  Params p(a, "replace", {"old", "new", "count"});
  if (!p.get(0) || !p.get(1)) fail("replace() missing required arguments");
  std::string r =
      py_replace(v.to_str(), p.get(0)->to_str(), p.get(1)->to_str(), p.int_arg(2).value_or(-1));
  in.check_size(r.size());
  in.charge_bytes(r.size());
  return Value::string(std::move(r));
}

Value f_safe(Interp&, const Value& v, const CallArgs&) {
  return Value::string(v.to_str(), true);
}
Value f_escape(Interp&, const Value& v, const CallArgs&) {
  if (v.is_string() && v.is_safe()) return v;
  return Value::string(html_escape(v.to_str()), true);
}
Value f_forceescape(Interp&, const Value& v, const CallArgs&) {
  return Value::string(html_escape(v.to_str()), true);
}

Value f_indent(Interp&, const Value& v, const CallArgs& a) {
  Params p(a, "indent", {"width", "first", "blank"});
  if (!v.is_string())  // jinja2 does `s += "\n"` on the value itself
    fail("unsupported operand type(s) for +=: '" + v.type_name() + "' and 'str'");
  std::string ind = " ";
  const Value* w = p.get(0);
  if (w && w->is_string())
    ind = w->str();
  else
    ind = std::string(static_cast<size_t>(std::max<int64_t>(0, w ? w->as_int() : 4)), ' ');
  std::vector<std::string> lines = py_splitlines(v.to_str() + "\n");
  std::string out;
  if (p.flag(2, false)) {
    for (size_t i = 0; i < lines.size(); ++i) out += (i ? "\n" + ind : "") + lines[i];
  } else {
    out = lines.empty() ? "" : lines[0];
    for (size_t i = 1; i < lines.size(); ++i)
      out += "\n" + (lines[i].empty() ? lines[i] : ind + lines[i]);
  }
  if (p.flag(1, false)) out = ind + out;
  return Value::string(out);
}

Value f_reverse(Interp&, const Value& v, const CallArgs&) {
  if (v.is_string()) {
    std::u32string u = to_u32(v.str());
    return Value::string(to_utf8(std::u32string(u.rbegin(), u.rend())));
  }
  std::vector<Value> items = iterate(v);
  return Value::list({items.rbegin(), items.rend()}, ListKind::Iterator);
}

Value f_sum(Interp& in, const Value& v, const CallArgs& a) {
  Params p(a, "sum", {"attribute", "start"});
  Value total = p.get_or(1, Value::integer(0));
  for (const Value& item : iterate(v)) {
    Value x = p.get(0) ? get_attribute_path(in, item, *p.get(0)) : item;
    if (!total.is_number() || !x.is_number()) fail("unsupported operand type(s) for +");
    if (total.type() == Type::Float || x.type() == Type::Float)
      total = Value::number(total.as_float() + x.as_float());
    else
      total = Value::integer(total.as_int() + x.as_int());
  }
  return total;
}

Value f_wordcount(Interp&, const Value& v, const CallArgs&) {
  int64_t n = 0;
  bool in_word = false;
  std::string s = v.to_str();
  for (size_t i = 0; i < s.size();) {
    char32_t c = utf8_next(s, i);
    bool w = c == '_' || (c < 0x80 ? isalnum(static_cast<int>(c)) != 0 : !is_py_space(c));
    if (w && !in_word) ++n;
    in_word = w;
  }
  return Value::integer(n);
}

Value f_center(Interp&, const Value& v, const CallArgs& a) {
  Params p(a, "center", {"width"});
  std::string s = v.to_str();
  int64_t width = p.int_arg(0).value_or(80), len = static_cast<int64_t>(utf8_length(s));
  if (width <= len) return Value::string(s);
  int64_t pad = width - len, left = pad / 2 + (pad & width & 1);
  return Value::string(std::string(left, ' ') + s + std::string(pad - left, ' '));
}

Value f_format(Interp&, const Value& v, const CallArgs& a) {
  // jinja2's do_format: soft_str(value) % (kwargs or args)
  if (!a.kw.empty()) fail("format filter: keyword arguments are not supported");
  return Value::string(percent_format(soft_str(v).str(), Value::list(a.pos, ListKind::Tuple)));
}

Value f_attr(Interp& in, const Value& v, const CallArgs& a) {
  Params p(a, "attr", {"name"});
  if (!p.get(0)) fail("attr() missing required argument 'name'");
  return in.getattr(v, p.get(0)->to_str());
}

const std::unordered_map<std::string_view, FilterFn>& filters() {
  static const std::unordered_map<std::string_view, FilterFn> table = {
      {"abs", f_abs},
      {"attr", f_attr},
      {"capitalize", f_capitalize},
      {"center", f_center},
      {"count", f_length},
      {"d", f_default},
      {"default", f_default},
      {"dictsort", f_dictsort},
      {"e", f_escape},
      {"escape", f_escape},
      {"first", f_first},
      {"float", f_float},
      {"forceescape", f_forceescape},
      {"format", f_format},
      {"indent", f_indent},
      {"int", f_int},
      {"items", f_items},
      {"join", f_join},
      {"last", f_last},
      {"length", f_length},
      {"list", f_list},
      {"lower", f_lower},
      {"map", f_map},
      {"max", f_max},
      {"min", f_min},
      {"reject", f_reject},
      {"rejectattr", f_rejectattr},
      {"replace", f_replace},
      {"reverse", f_reverse},
      {"round", f_round},
      {"safe", f_safe},
      {"select", f_select},
      {"selectattr", f_selectattr},
      {"sort", f_sort},
      {"string", f_string},
      {"sum", f_sum},
      {"title", f_title},
      {"tojson", f_tojson},
      {"trim", f_trim},
      {"unique", f_unique},
      {"upper", f_upper},
      {"wordcount", f_wordcount},
  };
  return table;
}

// --- tests ------------------------------------------------------------------------------

const Value& arg0(const CallArgs& a, const char* test) {
  if (a.pos.empty()) fail(std::string("test '") + test + "' requires an argument");
  return a.pos[0];
}

// Python's `value % m` for the odd/even/divisibleby tests (floats keep their fraction).
double py_mod(const Value& v, double m, const char* test) {
  if (!v.is_number()) {
    if (v.is_undefined()) fail(v.undefined_message());
    fail(std::string("test '") + test + "': unsupported operand type(s) for %: '" + v.type_name() +
         "' and 'int'");
  }
  if (m == 0) fail("integer division or modulo by zero");
  if (v.type() != Type::Float && std::trunc(m) == m) {
    int64_t mm = static_cast<int64_t>(m), r = v.as_int() % mm;
    return static_cast<double>(r != 0 && ((r < 0) != (mm < 0)) ? r + mm : r);
  }
  double r = std::fmod(v.as_float(), m);
  return r != 0 && ((r < 0) != (m < 0)) ? r + m : r;
}

bool t_sameas(Interp&, const Value& v, const CallArgs& a) {
  const Value& o = arg0(a, "sameas");
  if (v.type() != o.type()) return false;
  switch (v.type()) {
    case Type::None:
    case Type::Undefined:
      return v.identity() == o.identity();
    case Type::Bool:
      return v.as_bool() == o.as_bool();
    case Type::Int:
      return v.as_int() == o.as_int() && v.as_int() >= -5 && v.as_int() <= 256;
    default:
      return v.identity() && v.identity() == o.identity();
  }
}

const std::unordered_map<std::string_view, TestFn>& tests() {
  static const std::unordered_map<std::string_view, TestFn> table = {
      {"odd", [](Interp&, const Value& v, const CallArgs&) { return py_mod(v, 2, "odd") == 1; }},
      {"even", [](Interp&, const Value& v, const CallArgs&) { return py_mod(v, 2, "even") == 0; }},
      {"divisibleby",
       [](Interp&, const Value& v, const CallArgs& a) {
         const Value& n = arg0(a, "divisibleby");
         if (!n.is_number()) fail("divisibleby: the divisor must be a number");
         return py_mod(v, n.as_float(), "divisibleby") == 0;
       }},
      {"defined", [](Interp&, const Value& v, const CallArgs&) { return !v.is_undefined(); }},
      {"undefined", [](Interp&, const Value& v, const CallArgs&) { return v.is_undefined(); }},
      {"filter", [](Interp&, const Value& v,
                    const CallArgs&) { return v.is_string() && has_filter(v.str()); }},
      {"test",
       [](Interp&, const Value& v, const CallArgs&) { return v.is_string() && has_test(v.str()); }},
      {"none", [](Interp&, const Value& v, const CallArgs&) { return v.is_none(); }},
      {"boolean", [](Interp&, const Value& v, const CallArgs&) { return v.type() == Type::Bool; }},
      {"false", [](Interp&, const Value& v,
                   const CallArgs&) { return v.type() == Type::Bool && !v.as_bool(); }},
      {"true", [](Interp&, const Value& v,
                  const CallArgs&) { return v.type() == Type::Bool && v.as_bool(); }},
      {"integer", [](Interp&, const Value& v, const CallArgs&) { return v.is_int(); }},
      {"float", [](Interp&, const Value& v, const CallArgs&) { return v.type() == Type::Float; }},
      {"lower", [](Interp&, const Value& v, const CallArgs&) { return py_is_lower(v.to_str()); }},
      {"upper", [](Interp&, const Value& v, const CallArgs&) { return py_is_upper(v.to_str()); }},
      {"string", [](Interp&, const Value& v, const CallArgs&) { return v.is_string(); }},
      {"mapping", [](Interp&, const Value& v, const CallArgs&) { return v.is_dict(); }},
      {"number", [](Interp&, const Value& v, const CallArgs&) { return v.is_number(); }},
      {"sequence",
       [](Interp&, const Value& v, const CallArgs&) {
         return v.is_undefined() || v.is_string() || v.is_dict() ||
                (v.is_list() && v.list_kind() != ListKind::Iterator);
       }},
      {"iterable",
       [](Interp&, const Value& v, const CallArgs&) {
         return v.is_undefined() || v.is_string() || v.is_dict() || v.is_list();
       }},
      {"callable", [](Interp&, const Value& v,
                      const CallArgs&) { return v.is_callable() || v.is_undefined(); }},
      {"sameas", t_sameas},
      {"escaped",
       [](Interp&, const Value& v, const CallArgs&) { return v.is_string() && v.is_safe(); }},
      {"in", [](Interp&, const Value& v, const CallArgs& a) { return contains(arg0(a, "in"), v); }},
      {"==", [](Interp&, const Value& v, const CallArgs& a) { return equals(v, arg0(a, "==")); }},
      {"eq", [](Interp&, const Value& v, const CallArgs& a) { return equals(v, arg0(a, "eq")); }},
      {"equalto",
       [](Interp&, const Value& v, const CallArgs& a) { return equals(v, arg0(a, "equalto")); }},
      {"!=", [](Interp&, const Value& v, const CallArgs& a) { return !equals(v, arg0(a, "!=")); }},
      {"ne", [](Interp&, const Value& v, const CallArgs& a) { return !equals(v, arg0(a, "ne")); }},
      {">",
       [](Interp&, const Value& v, const CallArgs& a) { return compare(v, arg0(a, ">")) > 0; }},
      {"gt",
       [](Interp&, const Value& v, const CallArgs& a) { return compare(v, arg0(a, "gt")) > 0; }},
      {"greaterthan", [](Interp&, const Value& v,
                         const CallArgs& a) { return compare(v, arg0(a, "greaterthan")) > 0; }},
      {">=",
       [](Interp&, const Value& v, const CallArgs& a) { return compare(v, arg0(a, ">=")) >= 0; }},
      {"ge",
       [](Interp&, const Value& v, const CallArgs& a) { return compare(v, arg0(a, "ge")) >= 0; }},
      {"<",
       [](Interp&, const Value& v, const CallArgs& a) { return compare(v, arg0(a, "<")) < 0; }},
      {"lt",
       [](Interp&, const Value& v, const CallArgs& a) { return compare(v, arg0(a, "lt")) < 0; }},
      {"lessthan", [](Interp&, const Value& v,
                      const CallArgs& a) { return compare(v, arg0(a, "lessthan")) < 0; }},
      {"<=",
       [](Interp&, const Value& v, const CallArgs& a) { return compare(v, arg0(a, "<=")) <= 0; }},
      {"le",
       [](Interp&, const Value& v, const CallArgs& a) { return compare(v, arg0(a, "le")) <= 0; }},
  };
  return table;
}

}  // namespace

bool has_filter(std::string_view name) {
  return filters().count(name) != 0;
}
bool has_test(std::string_view name) {
  return tests().count(name) != 0;
}

Value call_filter(Interp& in, std::string_view name, const Value& value, CallArgs& args) {
  auto it = filters().find(name);
  if (it == filters().end()) fail("No filter named '" + std::string(name) + "'.");
  Value r = it->second(in, value, args);
  in.charge_value(r);
  return r;
}

bool call_test(Interp& in, std::string_view name, const Value& value, CallArgs& args) {
  auto it = tests().find(name);
  if (it == tests().end()) fail("No test named '" + std::string(name) + "'.");
  return it->second(in, value, args);
}

}  // namespace llm::jinja
