#include "engine/regex_split.h"

#include <algorithm>

#include "engine/error.h"

namespace llm {

CodepointText::CodepointText(std::vector<uint32_t> codepoints) : cps(std::move(codepoints)) {
  cats.resize(cps.size());
  ws.resize(cps.size());
  for (size_t i = 0; i < cps.size(); ++i) {
    cats[i] = unicode_category(cps[i]);
    ws[i] = unicode_is_whitespace(cps[i]);
  }
}

// ------------------------------------------------------------------- classes ---

bool SplitRegex::Class::raw_contains(uint32_t cp, UCat cat, bool is_ws) const {
  if (cats & ucat_bit(cat)) return true;
  if ((space && is_ws) || (not_space && !is_ws)) return true;
  for (uint32_t m : not_cats)
    if (!(m & ucat_bit(cat))) return true;
  for (const auto& [lo, hi] : ranges)
    if (cp >= lo && cp <= hi) return true;
  return false;
}

bool SplitRegex::Class::contains(const SplitRegex& re, uint32_t cp, UCat cat, bool is_ws) const {
  if (cp < 128) return (ascii[cp >> 6] >> (cp & 63)) & 1;
  bool in = raw_contains(cp, cat, is_ws) != negated;
  for (int a : and_classes) in = in && re.classes_[a].contains(re, cp, cat, is_ws);
  return in;
}

// -------------------------------------------------------------------- parser ---

struct RegexParser {
  SplitRegex& re;
  std::vector<uint32_t> p;  // the pattern's code points
  size_t i = 0;

  [[noreturn]] void fail(const std::string& what) const {
    throw Error("pre-tokenizer regex '" + re.pattern_ + "': " + what + " at code point " +
                std::to_string(i));
  }
  bool at_end() const { return i >= p.size(); }
  uint32_t peek(size_t k = 0) const { return i + k < p.size() ? p[i + k] : 0; }

  void finish_class(int idx) {
    SplitRegex::Class& c = re.classes_[idx];
    c.ascii[0] = c.ascii[1] = 0;
    uint64_t bits[2] = {0, 0};
    for (uint32_t cp = 0; cp < 128; ++cp) {
      UCat cat = unicode_category(cp);
      bool ws = unicode_is_whitespace(cp);
      bool in = c.raw_contains(cp, cat, ws) != c.negated;
      for (int a : c.and_classes) in = in && re.classes_[a].contains(re, cp, cat, ws);
      if (in) bits[cp >> 6] |= uint64_t(1) << (cp & 63);
    }
    c.ascii[0] = bits[0];
    c.ascii[1] = bits[1];
  }

  int add_class(SplitRegex::Class c) {
    re.classes_.push_back(std::move(c));
    int idx = static_cast<int>(re.classes_.size()) - 1;
    finish_class(idx);
    return idx;
  }

  uint32_t category_mask(const std::string& name) {
    static const struct {
      const char* name;
      uint32_t mask;
    } kNames[] = {
        {"L", kCatL},
        {"M", kCatM},
        {"N", kCatN},
        {"P", kCatP},
        {"S", kCatS},
        {"Z", kCatZ},
        {"C", kCatC},
        {"Lu", ucat_bit(UCat::Lu)},
        {"Ll", ucat_bit(UCat::Ll)},
        {"Lt", ucat_bit(UCat::Lt)},
        {"Lm", ucat_bit(UCat::Lm)},
        {"Lo", ucat_bit(UCat::Lo)},
        {"Mn", ucat_bit(UCat::Mn)},
        {"Mc", ucat_bit(UCat::Mc)},
        {"Me", ucat_bit(UCat::Me)},
        {"Nd", ucat_bit(UCat::Nd)},
        {"Nl", ucat_bit(UCat::Nl)},
        {"No", ucat_bit(UCat::No)},
    };
    for (const auto& n : kNames)
      if (name == n.name) return n.mask;
    fail("unsupported property \\p{" + name + "}");
  }

  // After a backslash: fills `c` with the class item and returns true, or returns false
  // with *literal set for a plain escaped character.
  bool parse_escape(SplitRegex::Class& c, uint32_t* literal) {
    if (at_end()) fail("trailing backslash");
    uint32_t e = p[i++];
    switch (e) {
      case 's':
        c.space = true;
        return true;
      case 'S':
        c.not_space = true;
        return true;
      case 'd':
        c.cats |= ucat_bit(UCat::Nd);
        return true;
      case 'D':
        c.not_cats.push_back(ucat_bit(UCat::Nd));
        return true;
      case 'p':
      case 'P': {
        std::string name;
        if (peek() == '{') {
          ++i;
          while (!at_end() && peek() != '}') name.push_back(static_cast<char>(p[i++]));
          if (at_end()) fail("unterminated \\p{");
          ++i;
        } else {
          name.push_back(static_cast<char>(p[i++]));
        }
        uint32_t m = category_mask(name);
        if (e == 'p')
          c.cats |= m;
        else
          c.not_cats.push_back(m);
        return true;
      }
      case 'r':
        *literal = '\r';
        return false;
      case 'n':
        *literal = '\n';
        return false;
      case 't':
        *literal = '\t';
        return false;
      case 'f':
        *literal = '\f';
        return false;
      case 'v':
        *literal = '\v';
        return false;
      case 'b':
      case 'B':
      case 'w':
      case 'W':
      case 'A':
      case 'z':
      case 'Z':
        fail(std::string("unsupported escape \\") + static_cast<char>(e));
      default:
        if ((e >= '0' && e <= '9') || (e >= 'a' && e <= 'z') || (e >= 'A' && e <= 'Z'))
          fail(std::string("unsupported escape \\") + static_cast<char>(e));
        *literal = e;  // escaped punctuation stands for itself
        return false;
    }
  }

  int parse_class() {  // after '['
    SplitRegex::Class c;
    if (peek() == '^') c.negated = true, ++i;
    bool first = true;
    while (true) {
      if (at_end()) fail("unterminated [");
      uint32_t ch = p[i];
      if (ch == ']' && !first) {
        ++i;
        break;
      }
      first = false;
      ++i;
      uint32_t lo;
      if (ch == '\\') {
        if (parse_escape(c, &lo)) continue;
      } else {
        lo = ch;
      }
      // A range "a-z" (a '-' before ']' is literal).
      if (peek() == '-' && i + 1 < p.size() && p[i + 1] != ']') {
        ++i;
        uint32_t hi = p[i++];
        if (hi == '\\') {
          SplitRegex::Class dummy;
          if (parse_escape(dummy, &hi)) fail("class escape as a range end");
        }
        if (hi < lo) fail("reversed range");
        c.ranges.emplace_back(lo, hi);
      } else {
        c.ranges.emplace_back(lo, lo);
      }
    }
    return add_class(std::move(c));
  }

  void parse_quantifier(SplitRegex::Node& n) {
    if (at_end()) return;
    uint32_t q = peek();
    if (q == '?')
      n.min = 0, n.max = 1, ++i;
    else if (q == '*')
      n.min = 0, n.max = SplitRegex::Node::kInf, ++i;
    else if (q == '+')
      n.min = 1, n.max = SplitRegex::Node::kInf, ++i;
    else if (q == '{' && peek(1) >= '0' && peek(1) <= '9') {
      ++i;
      auto number = [&] {
        int v = 0;
        while (!at_end() && peek() >= '0' && peek() <= '9')
          v = v * 10 + static_cast<int>(p[i++] - '0');
        return v;
      };
      n.min = number();
      n.max = n.min;
      if (peek() == ',') {
        ++i;
        n.max = (peek() == '}') ? SplitRegex::Node::kInf : number();
      }
      if (peek() != '}') fail("bad {n,m} quantifier");
      ++i;
      if (n.max < n.min) fail("{n,m} with m < n");
    } else {
      return;
    }
    if (peek() == '?')
      n.lazy = true, ++i;
    else if (peek() == '+')
      fail("possessive quantifiers are not supported");
  }

  // A group that always consumes exactly one code point from a class, possibly behind
  // positive lookaheads of single classes, e.g. ((?=[\p{L}])([^a-z])): fold it into one
  // class (an intersection) so that repeating it needs no recursion. Returns -1 if the
  // node has another shape.
  int fold_single(const SplitRegex::Node& n) {
    using K = SplitRegex::Node::Kind;
    if (n.min != 1 || n.max != 1) return -1;
    if (n.kind == K::Class) return n.index;
    if (n.kind != K::Group || re.groups_[n.index].alts.size() != 1) return -1;
    const SplitRegex::Seq seq = re.groups_[n.index].alts[0];  // copy: classes_ may grow
    if (seq.empty()) return -1;
    std::vector<int> ands;
    for (size_t k = 0; k + 1 < seq.size(); ++k) {
      const SplitRegex::Node& a = seq[k];
      if (a.kind != K::Ahead || re.groups_[a.index].alts.size() != 1) return -1;
      const SplitRegex::Seq& inner = re.groups_[a.index].alts[0];
      if (inner.size() != 1) return -1;
      int c = fold_single(inner[0]);
      if (c < 0) return -1;
      ands.push_back(c);
    }
    int base = fold_single(seq.back());
    if (base < 0 || ands.empty()) return base;
    SplitRegex::Class c = re.classes_[base];
    c.and_classes.insert(c.and_classes.end(), ands.begin(), ands.end());
    return add_class(std::move(c));
  }

  bool parse_atom(SplitRegex::Node& n) {
    using K = SplitRegex::Node::Kind;
    uint32_t ch = p[i++];
    switch (ch) {
      case '(': {
        n.kind = K::Group;
        if (peek() == '?') {
          uint32_t t = peek(1);
          if (t == ':')
            n.kind = K::Group;
          else if (t == '=')
            n.kind = K::Ahead;
          else if (t == '!')
            n.kind = K::NotAhead;
          else
            fail("unsupported group syntax (?" + std::string(1, static_cast<char>(t)));
          i += 2;
        }
        n.index = parse_alternation();
        if (peek() != ')') fail("missing )");
        ++i;
        if (n.kind != K::Group) return true;  // lookaheads take no quantifier
        parse_quantifier(n);
        SplitRegex::Node one = n;
        one.min = one.max = 1;
        if (int c = fold_single(one); c >= 0) n.kind = K::Class, n.index = c;
        return true;
      }
      case '[':
        n.kind = K::Class;
        n.index = parse_class();
        break;
      case '.': {
        SplitRegex::Class c;
        c.negated = true;
        c.ranges.emplace_back('\n', '\n');
        n.kind = K::Class;
        n.index = add_class(std::move(c));
        break;
      }
      case '$':
        n.kind = K::End;
        return true;
      case '^':
        n.kind = K::Start;
        return true;
      case ')':
      case '|':
      case '*':
      case '+':
      case '?':
      case '{':
        --i;
        fail("unexpected '" + std::string(1, static_cast<char>(ch)) + "'");
      case '\\': {
        SplitRegex::Class c;
        uint32_t lit;
        if (!parse_escape(c, &lit)) c.ranges.emplace_back(lit, lit);
        n.kind = K::Class;
        n.index = add_class(std::move(c));
        break;
      }
      default: {
        SplitRegex::Class c;
        c.ranges.emplace_back(ch, ch);
        n.kind = K::Class;
        n.index = add_class(std::move(c));
      }
    }
    parse_quantifier(n);
    return true;
  }

  int parse_alternation() {
    SplitRegex::Group g;
    g.alts.emplace_back();
    while (!at_end() && peek() != ')') {
      if (peek() == '|') {
        ++i;
        g.alts.emplace_back();
        continue;
      }
      SplitRegex::Node n;
      parse_atom(n);
      g.alts.back().push_back(n);
    }
    re.groups_.push_back(std::move(g));
    return static_cast<int>(re.groups_.size()) - 1;
  }
};

SplitRegex::SplitRegex(std::string_view pattern) : pattern_(pattern) {
  RegexParser parser{*this, utf8_to_codepoints(pattern)};
  root_ = parser.parse_alternation();
  if (!parser.at_end()) parser.fail("unbalanced )");
}

// ------------------------------------------------------------------- matcher ---

// Backtracking in continuation-passing style: `Cont` is what remains to be matched
// after the current node (the rest of a sequence, or one more round of a repeated
// group). Repeated classes — nearly all the work — are loops, not recursion.
struct RegexMatcher {
  using Node = SplitRegex::Node;
  using Seq = SplitRegex::Seq;
  const SplitRegex& re;
  const CodepointText& t;
  size_t begin, end;
  size_t result = SplitRegex::npos;
  int rep_depth = 0;

  struct Cont {
    const Seq* seq = nullptr;  // resume this sequence at idx ...
    size_t idx = 0;
    const Node* rep = nullptr;  // ... or run one more round of this repeated group
    int count = 0;
    size_t rep_start = 0;
    bool accept = false;  // lookahead body: success ends here
    const Cont* next = nullptr;
  };

  bool in_class(int cls, size_t pos) const {
    return re.classes_[cls].contains(re, t.cps[pos], t.cats[pos], t.ws[pos]);
  }

  bool cont(const Cont* k, size_t pos) {
    if (!k) {
      result = pos;
      return true;
    }
    if (k->accept) return true;
    if (k->rep) {
      // An iteration that consumed nothing would loop forever: stop repeating.
      if (pos == k->rep_start && k->count > k->rep->min) return false;
      return rep(*k->rep, k->count, pos, k->next);
    }
    return seq(*k->seq, k->idx, pos, k->next);
  }

  bool try_alts(int group, size_t pos, const Cont* k) {
    for (const Seq& alt : re.groups_[group].alts)
      if (seq(alt, 0, pos, k)) return true;
    return false;
  }

  bool rep(const Node& n, int count, size_t pos, const Cont* after) {
    if (++rep_depth > 4096)
      throw Error("pre-tokenizer regex '" + re.pattern() + "': repetition too deep");
    Cont again;
    again.rep = &n;
    again.count = count + 1;
    again.rep_start = pos;
    again.next = after;
    bool ok;
    if (!n.lazy) {
      ok =
          (count < n.max && try_alts(n.index, pos, &again)) || (count >= n.min && cont(after, pos));
    } else {
      ok =
          (count >= n.min && cont(after, pos)) || (count < n.max && try_alts(n.index, pos, &again));
    }
    --rep_depth;
    return ok;
  }

  bool seq(const Seq& s, size_t i, size_t pos, const Cont* k) {
    if (i == s.size()) return cont(k, pos);
    const Node& n = s[i];
    switch (n.kind) {
      case Node::Kind::Class: {
        size_t limit = std::min(end - pos, static_cast<size_t>(n.max));
        size_t c = 0;
        if (!n.lazy) {
          while (c < limit && in_class(n.index, pos + c)) ++c;
          if (c < static_cast<size_t>(n.min)) return false;
          for (size_t j = c;; --j) {
            if (seq(s, i + 1, pos + j, k)) return true;
            if (j == static_cast<size_t>(n.min)) return false;
          }
        }
        for (; c < static_cast<size_t>(n.min); ++c)
          if (c >= limit || !in_class(n.index, pos + c)) return false;
        while (true) {
          if (seq(s, i + 1, pos + c, k)) return true;
          if (c >= limit || !in_class(n.index, pos + c)) return false;
          ++c;
        }
      }
      case Node::Kind::Group: {
        Cont after;
        after.seq = &s;
        after.idx = i + 1;
        after.next = k;
        return rep(n, 0, pos, &after);
      }
      case Node::Kind::Ahead:
      case Node::Kind::NotAhead: {
        Cont accept;
        accept.accept = true;
        size_t saved = result;
        bool found = try_alts(n.index, pos, &accept);
        result = saved;
        if (found != (n.kind == Node::Kind::Ahead)) return false;
        return seq(s, i + 1, pos, k);
      }
      case Node::Kind::End:
        // Python's $: the end, or just before a final newline.
        if (pos == end || (pos + 1 == end && t.cps[pos] == '\n')) return seq(s, i + 1, pos, k);
        return false;
      case Node::Kind::Start:
        return pos == begin && seq(s, i + 1, pos, k);
    }
    return false;
  }
};

size_t SplitRegex::match_at(const CodepointText& text, size_t begin, size_t end, size_t pos) const {
  RegexMatcher m{*this, text, begin, end};
  if (!m.try_alts(root_, pos, nullptr)) return npos;
  return m.result > pos ? m.result : npos;
}

size_t SplitRegex::alternatives() const {
  return groups_[root_].alts.size();
}

size_t SplitRegex::match_at(const CodepointText& text, size_t begin, size_t end, size_t pos,
                            std::vector<size_t>& skip) const {
  const std::vector<Seq>& alts = groups_[root_].alts;
  RegexMatcher m{*this, text, begin, end};
  for (size_t a = 0; a < alts.size(); ++a) {
    if (pos < skip[a]) continue;
    if (m.seq(alts[a], 0, pos, nullptr)) return m.result > pos ? m.result : npos;
    // An alternative "C+ rest" (greedy, unbounded) that failed here fails at every later
    // start inside the same run of C: it would try the rest at a subset of the same ends.
    const Seq& s = alts[a];
    if (!s.empty() && s[0].kind == Node::Kind::Class && !s[0].lazy && s[0].max == Node::kInf) {
      size_t e = pos;
      while (e < end && m.in_class(s[0].index, e)) ++e;
      skip[a] = e;
    }
  }
  return npos;
}

std::vector<size_t> regex_split(const CodepointText& text, const std::vector<SplitRegex>& regexes) {
  std::vector<size_t> pieces;  // lengths
  if (text.size() == 0) return pieces;
  pieces.push_back(text.size());
  std::vector<size_t> next, skip;
  for (const SplitRegex& re : regexes) {
    next.clear();
    size_t start = 0;
    for (size_t len : pieces) {
      const size_t b = start, e = start + len;
      size_t gap = b;
      skip.assign(re.alternatives(), 0);
      for (size_t pos = b; pos < e;) {
        size_t m = re.match_at(text, b, e, pos, skip);
        if (m == SplitRegex::npos) {
          ++pos;
          continue;
        }
        if (gap < pos) next.push_back(pos - gap);
        next.push_back(m - pos);
        pos = gap = m;
      }
      if (gap < e) next.push_back(e - gap);
      start = e;
    }
    pieces.swap(next);
  }
  return pieces;
}

}  // namespace llm
