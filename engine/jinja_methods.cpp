// Methods of str / dict / list values, str.format, and the global functions, as a template
// sees them through jinja2's ImmutableSandboxedEnvironment.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "engine/jinja_builtins.h"
#include "engine/jinja_eval.h"
#include "engine/jinja_text.h"

namespace llm::jinja {
namespace {

Value bound(std::string name, std::function<Value(Interp&, CallArgs&)> fn) {
  auto c = std::make_shared<Callable>();
  c->name = std::move(name);
  c->fn = std::move(fn);
  return Value::callable(std::move(c));
}

Value forbidden_method(const Value& obj, std::string_view name) {
  return Value::forbidden("access to attribute '" + std::string(name) + "' of '" + obj.type_name() +
                          "' object is unsafe.");
}

std::optional<std::string> opt_str(const Value* v) {
  if (!v || v->is_none()) return std::nullopt;
  if (!v->is_string()) fail("expected a string argument, got " + v->type_name());
  return v->str();
}

const std::string& str_arg(const Value* v, const char* what) {
  if (!v || !v->is_string()) fail(std::string(what) + ": expected a string argument");
  return v->str();
}

// Code-point index of byte offset `pos` (or -1).
int64_t cp_index(const std::string& s, size_t pos) {
  return pos == std::string::npos ? -1 : static_cast<int64_t>(utf8_length(s.substr(0, pos)));
}

// Python's slice-style [start, end) for find/count/startswith, as byte offsets.
std::pair<size_t, size_t> byte_range(const std::string& s, const Params& p, size_t first) {
  std::u32string u = to_u32(s);
  int64_t n = static_cast<int64_t>(u.size());
  auto clamp = [&](std::optional<int64_t> v, int64_t dflt) {
    if (!v) return dflt;
    int64_t x = *v < 0 ? *v + n : *v;
    return std::clamp<int64_t>(x, 0, n);
  };
  int64_t b = clamp(p.int_arg(first), 0), e = clamp(p.int_arg(first + 1), n);
  if (e < b) e = b;
  size_t bb = to_utf8(u.substr(0, b)).size();
  size_t eb = bb + to_utf8(u.substr(b, e - b)).size();
  return {bb, eb};
}

// Markup's methods return Markup pieces: `safe` carries that over.
Value strings_list(const std::vector<std::string>& parts, bool safe = false) {
  std::vector<Value> out;
  out.reserve(parts.size());
  for (const auto& s : parts) out.push_back(Value::string(s, safe));
  return Value::list(std::move(out));
}

std::string pad_to(const std::string& s, int64_t width, char32_t fill, char align) {
  int64_t len = static_cast<int64_t>(utf8_length(s));
  if (width <= len) return s;
  std::string f;
  utf8_append(f, fill);
  int64_t pad = width - len, left = align == '<' ? 0 : align == '>' ? pad : pad / 2;
  std::string out;
  for (int64_t i = 0; i < left; ++i) out += f;
  out += s;
  for (int64_t i = 0; i < pad - left; ++i) out += f;
  return out;
}

bool all_cp(const std::string& s, bool (*pred)(char32_t)) {
  if (s.empty()) return false;
  for (size_t i = 0; i < s.size();)
    if (!pred(utf8_next(s, i))) return false;
  return true;
}

std::optional<Value> str_method(const Value& obj, std::string_view name) {
  const bool safe = obj.is_safe();
  std::string n(name);
  if (n == "strip" || n == "lstrip" || n == "rstrip") {
    return bound(n, [obj, n, safe](Interp&, CallArgs& a) {
      const std::string& s = obj.str();
      Params p(a, n, {"chars"});
      return Value::string(py_strip(s, opt_str(p.get(0)), n != "rstrip", n != "lstrip"), safe);
    });
  }
  if (n == "split" || n == "rsplit") {
    return bound(n, [obj, n, safe](Interp&, CallArgs& a) {
      const std::string& s = obj.str();
      Params p(a, n, {"sep", "maxsplit"});
      std::optional<std::string> sep = opt_str(p.get(0));
      if (sep && sep->empty()) fail("empty separator");
      int64_t maxsplit = p.int_arg(1).value_or(-1);
      return strings_list(n == "split" ? py_split(s, sep, maxsplit) : py_rsplit(s, sep, maxsplit),
                          safe);
    });
  }
  if (n == "splitlines") {
    return bound(n, [obj, safe](Interp&, CallArgs& a) {
      const std::string& s = obj.str();
      Params p(a, "splitlines", {"keepends"});
      if (p.flag(0, false)) fail("splitlines(keepends=True) is not supported");
      return strings_list(py_splitlines(s), safe);
    });
  }
  if (n == "startswith" || n == "endswith") {
    return bound(n, [obj, n](Interp&, CallArgs& a) {
      const std::string& s = obj.str();
      Params p(a, n, {"prefix", "start", "end"});
      if (!p.get(0)) fail(n + "() takes at least 1 argument");
      auto [b, e] = byte_range(s, p, 1);
      std::string_view view(s.data() + b, e - b);
      std::vector<Value> cands =
          p.get(0)->is_list() ? p.get(0)->items() : std::vector<Value>{*p.get(0)};
      for (const Value& c : cands) {
        const std::string& x = str_arg(&c, n.c_str());
        if (x.size() > view.size()) continue;
        if (n == "startswith" ? view.substr(0, x.size()) == x
                              : view.substr(view.size() - x.size()) == x)
          return Value::boolean(true);
      }
      return Value::boolean(false);
    });
  }
  if (n == "replace") {
    return bound(n, [obj](Interp& in, CallArgs& a) {
      const std::string& s = obj.str();
      Params p(a, "replace", {"old", "new", "count"});
      std::string r = py_replace(s, str_arg(p.get(0), "replace"), str_arg(p.get(1), "replace"),
                                 p.int_arg(2).value_or(-1));
      in.check_size(r.size());
      in.charge_bytes(r.size());
      return Value::string(std::move(r));
    });
  }
  if (n == "upper" || n == "lower" || n == "title" || n == "capitalize" || n == "casefold") {
    return bound(n, [obj, n, safe](Interp&, CallArgs& a) {
      const std::string& s = obj.str();
      Params p(a, n, {});
      std::string r = n == "upper"        ? py_upper(s)
                      : n == "title"      ? py_title(s)
                      : n == "capitalize" ? py_capitalize(s)
                                          : py_lower(s);
      return Value::string(std::move(r), safe);
    });
  }
  if (n == "format") {
    return bound(n, [obj](Interp& in, CallArgs& a) {
      const std::string& s = obj.str();
      return Value::string(py_format(in, s, a));
    });
  }
  if (n == "join") {
    return bound(n, [obj](Interp& in, CallArgs& a) {
      const std::string& s = obj.str();
      Params p(a, "join", {"iterable"});
      if (!p.get(0)) fail("join() takes exactly one argument");
      std::string out;
      bool first = true;
      for (const Value& v : iterate(*p.get(0))) {
        if (!v.is_string())
          fail("sequence item: expected str instance, " + v.type_name() + " found");
        if (!first) out += s;
        first = false;
        out += v.str();
        in.check_size(out.size());
      }
      in.charge_bytes(out.size());
      return Value::string(std::move(out));
    });
  }
  if (n == "find" || n == "rfind" || n == "index" || n == "rindex" || n == "count") {
    return bound(n, [obj, n](Interp&, CallArgs& a) {
      const std::string& s = obj.str();
      Params p(a, n, {"sub", "start", "end"});
      const std::string& sub = str_arg(p.get(0), n.c_str());
      auto [b, e] = byte_range(s, p, 1);
      std::string_view view(s.data() + b, e - b);
      if (n == "count") {
        if (sub.empty()) return Value::integer(static_cast<int64_t>(utf8_length(view)) + 1);
        int64_t c = 0;
        for (size_t q = view.find(sub); q != std::string_view::npos;
             q = view.find(sub, q + sub.size()))
          ++c;
        return Value::integer(c);
      }
      size_t q = (n == "find" || n == "index") ? view.find(sub) : view.rfind(sub);
      if (q == std::string_view::npos) {
        if (n == "index" || n == "rindex") fail("substring not found");
        return Value::integer(-1);
      }
      return Value::integer(cp_index(s, b + q));
    });
  }
  if (n == "isdigit" || n == "isdecimal" || n == "isnumeric" || n == "isalpha" || n == "isalnum" ||
      n == "isspace" || n == "isupper" || n == "islower") {
    return bound(n, [obj, n](Interp&, CallArgs& a) {
      const std::string& s = obj.str();
      Params p(a, n, {});
      bool r;
      if (n == "isspace")
        r = all_cp(s, is_py_space);
      else if (n == "isupper")
        r = py_is_upper(s);
      else if (n == "islower")
        r = py_is_lower(s);
      else if (n == "isalpha")
        r = all_cp(s, [](char32_t c) {
          return c >= 0x80 ? !is_py_space(c) : isalpha(static_cast<int>(c)) != 0;
        });
      else if (n == "isalnum")
        r = all_cp(s, [](char32_t c) {
          return c >= 0x80 ? !is_py_space(c) : isalnum(static_cast<int>(c)) != 0;
        });
      else
        r = all_cp(s, [](char32_t c) { return c >= '0' && c <= '9'; });
      return Value::boolean(r);
    });
  }
  if (n == "center" || n == "ljust" || n == "rjust") {
    return bound(n, [obj, n](Interp& in, CallArgs& a) {
      const std::string& s = obj.str();
      Params p(a, n, {"width", "fillchar"});
      int64_t w = p.int_arg(0).value_or(0);
      in.check_size(static_cast<size_t>(std::max<int64_t>(w, 0)));
      std::u32string fill = to_u32(p.get(1) ? str_arg(p.get(1), n.c_str()) : " ");
      if (fill.size() != 1) fail("The fill character must be exactly one character long");
      int64_t len = static_cast<int64_t>(utf8_length(s));
      if (n == "center" && w > len) {  // CPython: left = pad/2 + (pad & width & 1)
        int64_t pad = w - len, left = pad / 2 + (pad & w & 1);
        return Value::string(pad_to(pad_to(s, len + left, fill[0], '>'), w, fill[0], '<'));
      }
      return Value::string(pad_to(s, w, fill[0], n == "ljust" ? '<' : '>'));
    });
  }
  if (n == "removeprefix" || n == "removesuffix") {
    return bound(n, [obj, n](Interp&, CallArgs& a) {
      const std::string& s = obj.str();
      Params p(a, n, {"affix"});
      const std::string& x = str_arg(p.get(0), n.c_str());
      bool pre = n == "removeprefix";
      if (x.size() <= s.size() &&
          (pre ? s.compare(0, x.size(), x) == 0 : s.compare(s.size() - x.size(), x.size(), x) == 0))
        return Value::string(pre ? s.substr(x.size()) : s.substr(0, s.size() - x.size()));
      return Value::string(s);
    });
  }
  if (n == "partition" || n == "rpartition") {
    return bound(n, [obj, n, safe](Interp&, CallArgs& a) {
      const std::string& s = obj.str();
      Params p(a, n, {"sep"});
      const std::string& sep = str_arg(p.get(0), n.c_str());
      if (sep.empty()) fail("empty separator");
      size_t q = n == "partition" ? s.find(sep) : s.rfind(sep);
      std::vector<Value> parts;
      if (q == std::string::npos) {
        parts = n == "partition"
                    ? std::vector<Value>{Value::string(s, safe), Value::string("", safe),
                                         Value::string("", safe)}
                    : std::vector<Value>{Value::string("", safe), Value::string("", safe),
                                         Value::string(s, safe)};
      } else {
        parts = {Value::string(s.substr(0, q), safe), Value::string(sep, safe),
                 Value::string(s.substr(q + sep.size()), safe)};
      }
      return Value::list(std::move(parts), ListKind::Tuple);
    });
  }
  static const char* const kOtherStrMethods[] = {
      "encode",  "expandtabs", "format_map", "isascii",   "isidentifier", "isprintable",
      "istitle", "maketrans",  "swapcase",   "translate", "zfill"};
  for (const char* m : kOtherStrMethods)
    if (n == m)
      return bound(n,
                   [n](Interp&, CallArgs&) -> Value { fail("str." + n + "() is not supported"); });
  return std::nullopt;
}

bool is_dict_method(std::string_view n) {
  switch (n.size()) {
    case 3:
      return n == "get" || n == "pop";
    case 4:
      return n == "copy" || n == "keys";
    case 5:
      return n == "items" || n == "clear";
    case 6:
      return n == "values" || n == "update";
    case 7:
      return n == "popitem";
    case 8:
      return n == "fromkeys";
    case 10:
      return n == "setdefault";
    default:
      return false;
  }
}

std::optional<Value> dict_method(const Value& obj, std::string_view name) {
  if (!is_dict_method(name)) return std::nullopt;
  auto d = obj.dict_ptr();
  std::string n(name);
  if (n == "get") {
    return bound(n, [d](Interp&, CallArgs& a) {
      Params p(a, "get", {"key", "default"});
      if (!p.get(0)) fail("get expected at least 1 argument, got 0");
      const Value* v = p.get(0)->is_list() && p.get(0)->list_kind() == ListKind::List
                           ? nullptr
                           : d->find(*p.get(0));
      return v ? *v : p.get_or(1, Value::none());
    });
  }
  if (n == "items" || n == "keys" || n == "values") {
    return bound(n, [d, n](Interp&, CallArgs& a) {
      Params p(a, n, {});
      std::vector<Value> out;
      for (const auto& kv : d->items) {
        if (n == "items")
          out.push_back(Value::list({kv.first, kv.second}, ListKind::Tuple));
        else
          out.push_back(n == "keys" ? kv.first : kv.second);
      }
      return Value::list(std::move(out));
    });
  }
  if (n == "copy") return bound(n, [d](Interp&, CallArgs&) { return Value::dict_of(*d); });
  if (n == "clear" || n == "pop" || n == "popitem" || n == "setdefault" || n == "update")
    return forbidden_method(obj, name);
  if (n == "fromkeys")
    return bound(n, [](Interp&, CallArgs&) -> Value { fail("dict.fromkeys() is not supported"); });
  return std::nullopt;
}

std::optional<Value> list_method(const Value& obj, std::string_view name) {
  std::string n(name);
  const bool is_list = obj.list_kind() == ListKind::List;
  if (n == "index" || n == "count") {
    return bound(n, [obj, n](Interp&, CallArgs& a) {
      Params p(a, n, {"value"});
      if (!p.get(0)) fail(n + "() takes exactly one argument");
      int64_t c = 0;
      const auto& items = obj.items();
      for (size_t i = 0; i < items.size(); ++i) {
        if (!equals(items[i], *p.get(0))) continue;
        if (n == "index") return Value::integer(static_cast<int64_t>(i));
        ++c;
      }
      if (n == "index") fail("x not in list");
      return Value::integer(c);
    });
  }
  if (!is_list) return std::nullopt;
  // jinja2 3.1.2 (Debian bookworm's python3-jinja2, our reference) lets pop and clear through
  // the immutable sandbox; 3.1.5 and later refuse them too.
  if (n == "pop") {
    return bound(n, [obj](Interp&, CallArgs& a) {
      Params p(a, "pop", {"index"});
      auto& items = obj.items();
      if (items.empty()) fail("pop from empty list");
      int64_t size = static_cast<int64_t>(items.size());
      int64_t i = p.int_arg(0).value_or(-1);
      if (i < 0) i += size;
      if (i < 0 || i >= size) fail("pop index out of range");
      Value v = items[i];
      items.erase(items.begin() + i);
      return v;
    });
  }
  if (n == "clear") {
    return bound(n, [obj](Interp&, CallArgs&) {
      obj.items().clear();
      return Value::none();
    });
  }
  if (n == "copy") return bound(n, [obj](Interp&, CallArgs&) { return Value::list(obj.items()); });
  if (n == "append" || n == "extend" || n == "insert" || n == "remove" || n == "reverse" ||
      n == "sort")
    return forbidden_method(obj, name);
  return std::nullopt;
}

// A field name: arg_name ("." attr | "[" key "]")*
Value resolve_field(Interp& in, const std::string& field, const CallArgs& args, size_t& auto_idx,
                    int& numbering) {
  size_t i = 0;
  while (i < field.size() && field[i] != '.' && field[i] != '[') ++i;
  std::string head = field.substr(0, i);
  Value v;
  if (head.empty() || std::all_of(head.begin(), head.end(), ::isdigit)) {
    int mode = head.empty() ? 1 : 2;
    if (numbering && numbering != mode)
      fail("cannot switch between automatic field numbering and manual field specification");
    numbering = mode;
    size_t idx = head.empty() ? auto_idx++ : std::stoul(head);
    if (idx >= args.pos.size())
      fail("Replacement index " + std::to_string(idx) + " out of range for positional args tuple");
    v = args.pos[idx];
  } else {
    const Value* kv = args.kwarg(head);
    if (!kv) fail("KeyError: '" + head + "'");
    v = *kv;
  }
  while (i < field.size()) {
    if (field[i] == '.') {
      size_t j = ++i;
      while (j < field.size() && field[j] != '.' && field[j] != '[') ++j;
      v = in.getattr(v, field.substr(i, j - i));
      i = j;
    } else {
      size_t j = field.find(']', i);
      if (j == std::string::npos) fail("Missing ']' in format string");
      std::string key = field.substr(i + 1, j - i - 1);
      bool digits = !key.empty() && std::all_of(key.begin(), key.end(), ::isdigit);
      v = in.getitem(v, digits ? Value::integer(std::stoll(key)) : Value::string(key));
      i = j + 1;
    }
  }
  return v;
}

std::string strftime_py(const std::tm& tm, const std::string& fmt) {
  // datetime.strftime on a naive datetime: %f is microseconds, %z and %Z are empty.
  std::string c_fmt;
  for (size_t i = 0; i < fmt.size(); ++i) {
    if (fmt[i] == '%' && i + 1 < fmt.size()) {
      char d = fmt[i + 1];
      if (d == 'f')
        c_fmt += "000000";
      else if (d == 'z' || d == 'Z') {
      } else
        c_fmt += fmt.substr(i, 2);
      ++i;
    } else {
      c_fmt.push_back(fmt[i]);
    }
  }
  if (c_fmt.empty()) return "";
  for (size_t cap = 256; cap <= (1u << 20); cap *= 4) {
    std::string buf(cap, '\0');
    size_t n = std::strftime(buf.data(), cap, c_fmt.c_str(), &tm);
    if (n > 0) return buf.substr(0, n);
  }
  return "";
}

Value make_dict_from(const CallArgs& a, const char* func) {
  ValueDict d;
  if (a.pos.size() > 1) fail(std::string(func) + " expected at most 1 argument");
  if (!a.pos.empty()) {
    const Value& src = a.pos[0];
    if (src.is_dict() || src.type() == Type::Namespace) {
      d = src.dict();
    } else {
      for (const Value& pair : iterate(src)) {
        std::vector<Value> kv = iterate(pair);
        if (kv.size() != 2) fail("dictionary update sequence element has wrong length");
        d.set(kv[0], kv[1]);
      }
    }
  }
  for (const auto& kv : a.kw) d.set(Value::string(kv.first), kv.second);
  return Value::dict_of(std::move(d));
}

}  // namespace

std::optional<Value> method(const Value& obj, std::string_view name) {
  switch (obj.type()) {
    case Type::String:
      return str_method(obj, name);
    case Type::Dict:
      return dict_method(obj, name);
    case Type::List:
      return obj.list_kind() == ListKind::Iterator ? std::nullopt : list_method(obj, name);
    default:
      return std::nullopt;
  }
}

std::string py_format(Interp& in, const std::string& fmt, const CallArgs& args) {
  std::string out;
  size_t auto_idx = 0;
  int numbering = 0;
  for (size_t i = 0; i < fmt.size(); ++i) {
    char c = fmt[i];
    if (c == '}') {
      if (i + 1 < fmt.size() && fmt[i + 1] == '}') {
        out.push_back('}');
        ++i;
        continue;
      }
      fail("Single '}' encountered in format string");
    }
    if (c != '{') {
      out.push_back(c);
      continue;
    }
    if (i + 1 < fmt.size() && fmt[i + 1] == '{') {
      out.push_back('{');
      ++i;
      continue;
    }
    size_t j = i + 1;
    int depth = 1;
    while (j < fmt.size() && depth) {
      if (fmt[j] == '{')
        ++depth;
      else if (fmt[j] == '}')
        --depth;
      if (depth) ++j;
    }
    if (j >= fmt.size()) fail("Single '{' encountered in format string");
    std::string field = fmt.substr(i + 1, j - i - 1);
    std::string spec, conv;
    size_t colon = std::string::npos;
    for (size_t k = 0, br = 0; k < field.size(); ++k) {
      if (field[k] == '[')
        ++br;
      else if (field[k] == ']' && br)
        --br;
      else if (!br && field[k] == ':') {
        colon = k;
        break;
      }
    }
    if (colon != std::string::npos) {
      spec = field.substr(colon + 1);
      field = field.substr(0, colon);
    }
    if (size_t bang = field.find('!'); bang != std::string::npos) {
      conv = field.substr(bang + 1);
      field = field.substr(0, bang);
    }
    if (spec.find('{') != std::string::npos) fail("nested format specifications are not supported");
    Value v = resolve_field(in, field, args, auto_idx, numbering);
    if (conv == "r" || conv == "a")
      v = Value::string(v.repr());
    else if (conv == "s")
      v = Value::string(v.to_str());
    else if (!conv.empty())
      fail("Unknown conversion specifier " + conv);
    out += format_value(v, spec);
    in.check_size(out.size());
    i = j;
  }
  return out;
}

std::string format_value(const Value& v, const std::string& spec) {
  if (spec.empty()) return v.to_str();
  // [[fill]align][sign][#][0][width][,|_][.precision][type]
  std::u32string s = to_u32(spec);
  size_t i = 0;
  char32_t fill = ' ';
  char align = 0;
  auto is_align = [](char32_t c) { return c == '<' || c == '>' || c == '^' || c == '='; };
  if (s.size() >= 2 && is_align(s[1]))
    fill = s[0], align = static_cast<char>(s[1]), i = 2;
  else if (!s.empty() && is_align(s[0]))
    align = static_cast<char>(s[0]), i = 1;
  char sign = '-';
  if (i < s.size() && (s[i] == '+' || s[i] == '-' || s[i] == ' ')) sign = static_cast<char>(s[i++]);
  bool alt = i < s.size() && s[i] == '#' && ++i;
  if (i < s.size() && s[i] == '0') {
    if (!align) fill = '0', align = '=';
    ++i;
  }
  int64_t width = 0;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') width = width * 10 + (s[i++] - '0');
  char group = 0;
  if (i < s.size() && (s[i] == ',' || s[i] == '_')) group = static_cast<char>(s[i++]);
  int precision = -1;
  if (i < s.size() && s[i] == '.') {
    precision = 0;
    while (++i < s.size() && s[i] >= '0' && s[i] <= '9') precision = precision * 10 + (s[i] - '0');
  }
  char type = i < s.size() ? static_cast<char>(s[i++]) : 0;
  if (i != s.size() || width > (1 << 20)) fail("Invalid format specifier '" + spec + "'");

  std::string body, prefix;
  if (v.is_string()) {
    if (type && type != 's')
      fail(std::string("Unknown format code '") + type + "' for object of type 'str'");
    if (sign != '-' || group || alt) fail("Sign not allowed in string format specifier");
    body = v.str();
    if (precision >= 0) body = to_utf8(to_u32(body).substr(0, precision));
    return pad_to(body, width, fill, align ? (align == '=' ? '<' : align) : '<');
  }
  if (!v.is_number()) fail("unsupported format string passed to " + v.type_name() + ".__format__");
  bool as_float = v.type() == Type::Float || (type && std::strchr("eEfFgG%", type));
  if (!type && v.type() == Type::Bool && !as_float)
    return pad_to(v.to_str(), width, fill, align ? align : '<');
  char buf[512];
  if (!as_float) {
    int64_t x = v.as_int();
    uint64_t mag = x < 0 ? 0 - static_cast<uint64_t>(x) : static_cast<uint64_t>(x);
    if (x < 0)
      prefix = "-";
    else if (sign == '+')
      prefix = "+";
    else if (sign == ' ')
      prefix = " ";
    switch (type) {
      case 0:
      case 'd':
      case 'n':
        std::snprintf(buf, sizeof buf, "%llu", static_cast<unsigned long long>(mag));
        break;
      case 'x':
        std::snprintf(buf, sizeof buf, "%llx", static_cast<unsigned long long>(mag));
        if (alt) prefix += "0x";
        break;
      case 'X':
        std::snprintf(buf, sizeof buf, "%llX", static_cast<unsigned long long>(mag));
        if (alt) prefix += "0X";
        break;
      case 'o':
        std::snprintf(buf, sizeof buf, "%llo", static_cast<unsigned long long>(mag));
        if (alt) prefix += "0o";
        break;
      case 'b': {
        std::string b;
        for (uint64_t m = mag; m; m >>= 1) b.insert(b.begin(), static_cast<char>('0' + (m & 1)));
        std::snprintf(buf, sizeof buf, "%s", b.empty() ? "0" : b.c_str());
        if (alt) prefix += "0b";
        break;
      }
      case 'c': {
        std::string ch;
        utf8_append(ch, static_cast<char32_t>(mag));
        return pad_to(ch, width, fill, align ? align : '<');
      }
      default:
        fail(std::string("Unknown format code '") + type + "' for object of type 'int'");
    }
    body = buf;
  } else {
    double x = v.as_float();
    if (type == 'd' || type == 'x' || type == 'o' || type == 'b' || type == 'c' || type == 'n')
      fail(std::string("Unknown format code '") + type + "' for object of type 'float'");
    if (std::signbit(x) && !std::isnan(x))
      prefix = "-", x = -x;
    else if (sign == '+')
      prefix = "+";
    else if (sign == ' ')
      prefix = " ";
    int prec = precision < 0 ? 6 : precision;
    if (type == '%') {
      std::snprintf(buf, sizeof buf, "%.*f%%", prec, x * 100);
    } else if (type) {
      std::snprintf(buf, sizeof buf, (std::string("%") + (alt ? "#" : "") + ".*" + type).c_str(),
                    prec, x);
    } else if (precision < 0) {
      std::snprintf(buf, sizeof buf, "%s", py_float_repr(x).c_str());
    } else {
      std::snprintf(buf, sizeof buf, "%.*g", std::max(precision, 1), x);
      if (!std::strpbrk(buf, ".einn")) std::strcat(buf, ".0");
    }
    body = buf;
  }
  if (group) {  // digit grouping of the integer part
    size_t end = body.find_first_not_of("0123456789");
    if (end == std::string::npos) end = body.size();
    for (int64_t k = static_cast<int64_t>(end) - 3; k > 0; k -= 3) body.insert(k, 1, group);
  }
  if (align == '=') {
    int64_t pad = width - static_cast<int64_t>(utf8_length(prefix + body));
    std::string f;
    for (int64_t k = 0; k < pad; ++k) utf8_append(f, fill);
    return prefix + f + body;
  }
  return pad_to(prefix + body, width, fill, align ? align : '>');
}

std::optional<Value> global_function(std::string_view name) {
  if (name == "range") {
    return bound("range", [](Interp& in, CallArgs& a) {
      Params p(a, "range", {"start", "stop", "step"});
      if (!p.get(0)) fail("range expected at least 1 argument, got 0");
      int64_t start = 0, stop, step = p.int_arg(2).value_or(1);
      if (p.get(1))
        start = *p.int_arg(0), stop = *p.int_arg(1);
      else
        stop = *p.int_arg(0);
      if (step == 0) fail("range() arg 3 must not be zero");
      __int128 len = step > 0 ? (static_cast<__int128>(stop) - start + step - 1) / step
                              : (static_cast<__int128>(start) - stop - step - 1) / -step;
      if (len > 100000)  // jinja2.sandbox.MAX_RANGE
        fail("Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
      std::vector<Value> out;
      for (int64_t i = 0; i < static_cast<int64_t>(len); ++i)
        out.push_back(Value::integer(start + i * step));
      in.charge_bytes(out.size() * 32);
      return Value::list(std::move(out));
    });
  }
  if (name == "dict")
    return bound("dict", [](Interp&, CallArgs& a) { return make_dict_from(a, "dict"); });
  if (name == "namespace") {
    return bound("namespace", [](Interp&, CallArgs& a) {
      return Value::namespace_(make_dict_from(a, "namespace").dict_ptr());
    });
  }
  if (name == "raise_exception") {
    return bound("raise_exception", [](Interp&, CallArgs& a) -> Value {
      Params p(a, "raise_exception", {"message"});
      if (!p.get(0)) fail("raise_exception() missing 1 required positional argument: 'message'");
      throw RaisedError(p.get(0)->to_str());
    });
  }
  if (name == "strftime_now") {
    return bound("strftime_now", [](Interp& in, CallArgs& a) {
      Params p(a, "strftime_now", {"format"});
      return Value::string(strftime_py(in.now(), str_arg(p.get(0), "strftime_now")));
    });
  }
  return std::nullopt;
}

}  // namespace llm::jinja
