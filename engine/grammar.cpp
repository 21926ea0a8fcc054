#include "engine/grammar.h"

#include <algorithm>
#include <cassert>
#include <cstdio>
#include <functional>
#include <map>
#include <unordered_map>

#include "engine/error.h"
#include "engine/unicode.h"

namespace llm {

// ---------------------------------------------------------------- expressions

Expr lit(std::string_view bytes) {
  Expr e;
  e.kind = Expr::Kind::Literal;
  e.text = bytes;
  return e;
}

std::vector<CharRange> normalize_ranges(std::vector<CharRange> r) {
  for (auto& x : r) x.hi = std::min(x.hi, kMaxCodePoint);
  std::erase_if(r, [](const CharRange& x) { return x.lo > x.hi; });
  std::sort(r.begin(), r.end(), [](const CharRange& a, const CharRange& b) { return a.lo < b.lo; });
  std::vector<CharRange> out;
  for (const auto& x : r) {
    if (!out.empty() && x.lo <= out.back().hi + 1) {
      out.back().hi = std::max(out.back().hi, x.hi);
    } else {
      out.push_back(x);
    }
  }
  return out;
}

std::vector<CharRange> complement_ranges(const std::vector<CharRange>& r) {
  std::vector<CharRange> out;
  uint32_t next = 0;
  for (const auto& x : normalize_ranges(r)) {
    if (x.lo > next) out.push_back({next, x.lo - 1});
    next = x.hi + 1;
  }
  if (next <= kMaxCodePoint) out.push_back({next, kMaxCodePoint});
  return out;
}

Expr chars(std::vector<CharRange> ranges, bool negate) {
  Expr e;
  e.kind = Expr::Kind::Chars;
  e.ranges = negate ? complement_ranges(ranges) : normalize_ranges(std::move(ranges));
  return e;
}

Expr any_char() {
  return chars({{0, kMaxCodePoint}});
}

Expr ref(uint32_t rule) {
  Expr e;
  e.kind = Expr::Kind::Ref;
  e.rule = rule;
  return e;
}

Expr seq(std::vector<Expr> items) {
  if (items.size() == 1) return std::move(items[0]);
  Expr e;
  e.kind = Expr::Kind::Seq;
  e.items = std::move(items);
  return e;
}

Expr alt(std::vector<Expr> items) {
  if (items.size() == 1) return std::move(items[0]);
  Expr e;
  e.kind = Expr::Kind::Alt;
  e.items = std::move(items);
  return e;
}

Expr repeat(Expr x, uint32_t min, uint32_t max) {
  assert(min <= max);
  if (min == 1 && max == 1) return x;
  Expr e;
  e.kind = Expr::Kind::Repeat;
  e.items.push_back(std::move(x));
  e.min = min;
  e.max = max;
  return e;
}

// ---------------------------------------------------------------- Grammar

uint32_t Grammar::add_rule(std::string_view name) {
  std::string n(name);
  for (int k = 2; find(n) >= 0; ++k) n = std::string(name) + "-" + std::to_string(k);
  names_.push_back(n);
  bodies_.push_back(empty());
  defined_.push_back(false);
  return static_cast<uint32_t>(names_.size() - 1);
}

uint32_t Grammar::add_rule(std::string_view name, Expr body) {
  uint32_t r = add_rule(name);
  define(r, std::move(body));
  return r;
}

void Grammar::define(uint32_t rule, Expr body) {
  assert(rule < names_.size());
  bodies_[rule] = std::move(body);
  defined_[rule] = true;
}

int Grammar::find(std::string_view name) const {
  for (size_t i = 0; i < names_.size(); ++i) {
    if (names_[i] == name) return static_cast<int>(i);
  }
  return -1;
}

// ---------------------------------------------------------------- lowering

namespace {

using Elem = ByteProgram::Elem;
using Op = ByteProgram::Op;
using ByteSet = ByteProgram::ByteSet;
using Seq = std::vector<Elem>;

// UTF-8 byte ranges of one sequence: (lo, hi) per byte.
using Utf8Seq = std::vector<std::pair<uint8_t, uint8_t>>;

// b: 4 bytes. The bound is explicit so that the compiler can see it (GCC 13's
// -Wstringop-overflow cannot prove utf8_append writes at most 4).
void encode_utf8(uint32_t cp, uint8_t* b, int* n) {
  std::string s;
  utf8_append(s, cp);
  *n = static_cast<int>(std::min<size_t>(s.size(), 4));
  for (int i = 0; i < *n && i < 4; ++i) b[i] = static_cast<uint8_t>(s[static_cast<size_t>(i)]);
}

// Splits [lo, hi] (no surrogates) into ranges whose UTF-8 encodings are byte-wise
// rectangles, as Go's regexp/syntax and RE2 compile Unicode classes (utf8 range splitting).
void utf8_split(uint32_t lo, uint32_t hi, std::vector<Utf8Seq>& out) {
  static constexpr uint32_t kLenMax[] = {0x7F, 0x7FF, 0xFFFF};
  for (uint32_t b : kLenMax) {
    if (lo <= b && hi > b) {
      utf8_split(lo, b, out);
      utf8_split(b + 1, hi, out);
      return;
    }
  }
  int n = lo <= 0x7F ? 1 : lo <= 0x7FF ? 2 : lo <= 0xFFFF ? 3 : 4;
  for (int i = 1; i < n; ++i) {
    uint32_t m = (1u << (6 * i)) - 1;
    if ((lo & ~m) != (hi & ~m)) {
      if ((lo & m) != 0) {
        utf8_split(lo, lo | m, out);
        utf8_split((lo | m) + 1, hi, out);
        return;
      }
      if ((hi & m) != m) {
        utf8_split(lo, (hi & ~m) - 1, out);
        utf8_split(hi & ~m, hi, out);
        return;
      }
    }
  }
  uint8_t a[4], b[4];
  int na, nb;
  encode_utf8(lo, a, &na);
  encode_utf8(hi, b, &nb);
  assert(na == nb);
  Utf8Seq s;
  for (int i = 0; i < na; ++i) s.push_back({a[i], b[i]});
  out.push_back(std::move(s));
}

class Lowering {
 public:
  Lowering(const Grammar& g, size_t max_elems) : g_(g), max_elems_(max_elems) {}

  std::shared_ptr<const ByteProgram> run() {
    for (uint32_t r = 0; r < g_.n_rules(); ++r) {
      if (!g_.defined(r)) throw Error("grammar: rule '" + g_.name(r) + "' is used but not defined");
    }
    rules_.resize(g_.n_rules());
    names_.resize(g_.n_rules());
    for (uint32_t r = 0; r < g_.n_rules(); ++r) names_[r] = g_.name(r);
    for (uint32_t r = 0; r < g_.n_rules(); ++r) {
      const Expr& body = g_.body(r);
      if (body.kind == Expr::Kind::Alt) {
        for (const Expr& a : body.items) add_alt(r, a);
      } else {
        add_alt(r, body);
      }
    }
    check_left_recursion();
    return flatten();
  }

 private:
  void add_alt(uint32_t r, const Expr& e) {
    Seq s;
    emit(e, s);
    count(s.size() + 1);
    rules_[r].push_back(std::move(s));
  }

  void count(size_t n) {
    n_elems_ += n;
    if (n_elems_ > max_elems_) {
      throw Error("grammar too large (over " + std::to_string(max_elems_) +
                  " elements): reduce repetition counts such as maxLength or maxItems");
    }
  }

  uint32_t new_rule(const std::string& name) {
    rules_.emplace_back();
    names_.push_back(name);
    return static_cast<uint32_t>(rules_.size() - 1);
  }

  uint32_t set_index(const ByteSet& s) {
    auto [it, fresh] = set_ids_.emplace(s, static_cast<uint32_t>(sets_.size()));
    if (fresh) sets_.push_back(s);
    return it->second;
  }

  static ByteSet byte_range(uint8_t lo, uint8_t hi) {
    ByteSet s{};
    for (unsigned b = lo; b <= hi; ++b) s[b >> 6] |= 1ull << (b & 63);
    return s;
  }

  // A Chars class as one element: a byte set when it is ASCII only, else a reference to a
  // (memoised) rule whose alternatives are the class's UTF-8 sequences.
  Elem class_elem(const std::vector<CharRange>& ranges) {
    std::vector<CharRange> r;
    for (auto x : ranges) {  // surrogates cannot be encoded in UTF-8
      if (x.lo <= 0xDFFF && x.hi >= 0xD800) {
        if (x.lo < 0xD800) r.push_back({x.lo, 0xD7FF});
        if (x.hi > 0xDFFF) r.push_back({0xE000, x.hi});
      } else {
        r.push_back(x);
      }
    }
    ByteSet ascii{};
    std::vector<Utf8Seq> multi;
    for (auto x : r) {
      if (x.lo < 0x80) {
        ByteSet s =
            byte_range(static_cast<uint8_t>(x.lo), static_cast<uint8_t>(std::min(x.hi, 0x7Fu)));
        for (int i = 0; i < 4; ++i) ascii[i] |= s[i];
      }
      if (x.hi >= 0x80) utf8_split(std::max(x.lo, 0x80u), x.hi, multi);
    }
    if (multi.empty()) return {Op::Byte, set_index(ascii)};
    std::string key;
    for (auto x : r) key += std::to_string(x.lo) + "-" + std::to_string(x.hi) + ",";
    if (auto it = class_rules_.find(key); it != class_rules_.end()) return {Op::Ref, it->second};
    uint32_t rule = new_rule("class-" + std::to_string(class_rules_.size()));
    class_rules_.emplace(key, rule);
    if (ascii != ByteSet{}) rules_[rule].push_back({Elem{Op::Byte, set_index(ascii)}});
    for (const Utf8Seq& u : multi) {
      Seq s;
      for (auto [lo, hi] : u) s.push_back({Op::Byte, set_index(byte_range(lo, hi))});
      count(s.size() + 1);
      rules_[rule].push_back(std::move(s));
    }
    return {Op::Ref, rule};
  }

  // e as a single element (a byte set or a rule reference), making a helper rule if needed.
  Elem unit(const Expr& e) {
    if (e.kind == Expr::Kind::Ref) return {Op::Ref, e.rule};
    if (e.kind == Expr::Kind::Chars) return class_elem(e.ranges);
    if (e.kind == Expr::Kind::Literal && e.text.size() == 1) {
      uint8_t b = static_cast<uint8_t>(e.text[0]);
      return {Op::Byte, set_index(byte_range(b, b))};
    }
    uint32_t r = new_rule("helper-" + std::to_string(rules_.size()));
    if (e.kind == Expr::Kind::Alt) {
      for (const Expr& a : e.items) add_alt(r, a);
    } else {
      add_alt(r, e);
    }
    return {Op::Ref, r};
  }

  void emit(const Expr& e, Seq& out) {
    switch (e.kind) {
      case Expr::Kind::Literal:
        for (char c : e.text) {
          uint8_t b = static_cast<uint8_t>(c);
          out.push_back({Op::Byte, set_index(byte_range(b, b))});
        }
        break;
      case Expr::Kind::Chars:
        out.push_back(class_elem(e.ranges));
        break;
      case Expr::Kind::Ref:
        out.push_back({Op::Ref, e.rule});
        break;
      case Expr::Kind::Seq:
        for (const Expr& x : e.items) emit(x, out);
        break;
      case Expr::Kind::Alt:
        out.push_back(unit(e));
        break;
      case Expr::Kind::Repeat:
        emit_repeat(e, out);
        break;
    }
  }

  // x{min,max}: min inline copies of x's unit, then a right-recursive tail:
  //   unbounded:  star ::= x star | ""
  //   k optional: opt_k ::= x opt_{k-1} | "",  opt_1 ::= x | ""
  // The recursive reference is the last element, so the matcher's tail-call rule keeps
  // its stacks flat however many repetitions are matched.
  void emit_repeat(const Expr& e, Seq& out) {
    if (e.max == 0) return;
    Elem u = unit(e.items[0]);
    count(e.min);
    for (uint32_t i = 0; i < e.min; ++i) out.push_back(u);
    if (e.max == kUnbounded) {
      uint64_t key = (uint64_t{u.op == Op::Ref} << 63) | (uint64_t{u.arg} << 24);
      auto it = tails_.find(key);
      if (it == tails_.end()) {
        uint32_t r = new_rule("star-" + std::to_string(rules_.size()));
        rules_[r].push_back({u, Elem{Op::Ref, r}});
        rules_[r].push_back({});
        count(4);
        it = tails_.emplace(key, r).first;
      }
      out.push_back({Op::Ref, it->second});
      return;
    }
    uint32_t k = e.max - e.min;
    if (k == 0) return;
    count(k);  // before building k rules, so that a huge count fails fast
    out.push_back({Op::Ref, opt_chain(u, k)});
  }

  uint32_t opt_chain(Elem u, uint32_t k) {
    uint64_t base = (uint64_t{u.op == Op::Ref} << 63) | (uint64_t{u.arg} << 24);
    // Find the longest chain already built for this unit and extend it.
    uint32_t have = 0, prev = 0;
    for (uint32_t j = k; j >= 1; --j) {
      if (auto it = tails_.find(base | j); it != tails_.end()) {
        have = j;
        prev = it->second;
        break;
      }
    }
    for (uint32_t j = have + 1; j <= k; ++j) {
      uint32_t r = new_rule("opt-" + std::to_string(rules_.size()));
      if (j == 1) {
        rules_[r].push_back({u});
      } else {
        rules_[r].push_back({u, Elem{Op::Ref, prev}});
      }
      rules_[r].push_back({});
      count(5);
      tails_.emplace(base | j, r);
      prev = r;
    }
    return prev;
  }

  // A top-down matcher loops forever on a rule that reaches itself without consuming a
  // byte, unless every reference on the cycle is in tail position (then the matcher's
  // tail-call rule keeps the stack the same and its visited set ends the loop).
  void check_left_recursion() {
    size_t n = rules_.size();
    std::vector<bool> nullable(n, false);
    for (bool changed = true; changed;) {
      changed = false;
      for (size_t r = 0; r < n; ++r) {
        if (nullable[r]) continue;
        for (const Seq& s : rules_[r]) {
          bool all = std::all_of(s.begin(), s.end(),
                                 [&](const Elem& e) { return e.op == Op::Ref && nullable[e.arg]; });
          if (all) {
            nullable[r] = changed = true;
            break;
          }
        }
      }
    }
    struct Edge {
      uint32_t to;
      bool tail;
    };
    std::vector<std::vector<Edge>> edges(n);
    for (size_t r = 0; r < n; ++r) {
      for (const Seq& s : rules_[r]) {
        for (size_t j = 0; j < s.size(); ++j) {
          if (s[j].op != Op::Ref) break;
          edges[r].push_back({s[j].arg, j + 1 == s.size()});
          if (!nullable[s[j].arg]) break;
        }
      }
    }
    // For each non-tail edge u -> v: left recursion iff u is reachable from v.
    std::vector<uint32_t> mark(n, 0);
    uint32_t epoch = 0;
    for (size_t u = 0; u < n; ++u) {
      for (const Edge& e : edges[u]) {
        if (e.tail) continue;
        ++epoch;
        std::vector<uint32_t> todo{e.to};
        mark[e.to] = epoch;
        while (!todo.empty()) {
          uint32_t x = todo.back();
          todo.pop_back();
          if (x == u) throw Error("grammar: rule '" + names_[u] + "' is left-recursive");
          for (const Edge& f : edges[x]) {
            if (mark[f.to] != epoch) {
              mark[f.to] = epoch;
              todo.push_back(f.to);
            }
          }
        }
      }
    }
  }

  std::shared_ptr<const ByteProgram> flatten() {
    auto p = std::make_shared<ByteProgram>();
    p->root = g_.root();
    p->rule_names = names_;
    p->sets = sets_;
    p->rule_alts.push_back(0);
    for (const auto& alts : rules_) {
      for (const Seq& s : alts) {
        p->alt_start.push_back(static_cast<uint32_t>(p->elems.size()));
        p->elems.insert(p->elems.end(), s.begin(), s.end());
        p->elems.push_back({Op::End, 0});
      }
      p->rule_alts.push_back(static_cast<uint32_t>(p->alt_start.size()));
    }
    // Byte classes: refine the partition of 0..255 by every set.
    std::array<uint32_t, 256> cls{};
    uint32_t n_cls = 1;
    for (const ByteSet& s : sets_) {
      std::map<std::pair<uint32_t, bool>, uint32_t> renum;
      for (int b = 0; b < 256; ++b) {
        auto key = std::make_pair(cls[b], ByteProgram::has(s, static_cast<uint8_t>(b)));
        auto it = renum.emplace(key, static_cast<uint32_t>(renum.size())).first;
        cls[b] = it->second;
      }
      n_cls = static_cast<uint32_t>(renum.size());
    }
    for (int b = 0; b < 256; ++b) p->byte_class[b] = static_cast<uint8_t>(cls[b]);
    p->n_classes = n_cls;
    return p;
  }

  const Grammar& g_;
  size_t max_elems_;
  size_t n_elems_ = 0;
  std::vector<std::vector<Seq>> rules_;  // (n_rules) alternatives
  std::vector<std::string> names_;       // (n_rules)
  std::vector<ByteSet> sets_;
  std::map<ByteSet, uint32_t> set_ids_;
  std::unordered_map<std::string, uint32_t> class_rules_;  // class ranges -> rule
  std::unordered_map<uint64_t, uint32_t> tails_;           // (unit, count) -> star/opt rule
};

}  // namespace

std::shared_ptr<const ByteProgram> ByteProgram::compile(const Grammar& g, size_t max_elems) {
  return Lowering(g, max_elems).run();
}

}  // namespace llm
