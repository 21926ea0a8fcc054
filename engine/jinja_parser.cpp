#include "engine/jinja_parser.h"

#include <algorithm>
#include <initializer_list>

#include "engine/jinja_analysis.h"
#include "engine/jinja_builtins.h"
#include "engine/jinja_lexer.h"

namespace llm::jinja {
namespace {

class Parser {
 public:
  explicit Parser(std::vector<Token> toks) : t_(std::move(toks)) {}

  StmtList parse() {
    StmtList body = subparse({});
    if (cur().type != Tok::Eof) fail_at("unexpected '" + describe(cur()) + "'");
    return body;
  }

 private:
  // --- token stream -------------------------------------------------------------------
  const Token& cur() const { return t_[i_]; }
  const Token& look() const { return t_[i_ + 1 < t_.size() ? i_ + 1 : i_]; }
  const Token& next() {
    const Token& tk = t_[i_];
    if (i_ + 1 < t_.size()) ++i_;
    return tk;
  }
  bool is_op(const char* op) const { return cur().type == Tok::Op && cur().text == op; }
  bool is_name(const char* n) const { return cur().type == Tok::Name && cur().text == n; }
  bool skip_op(const char* op) {
    if (!is_op(op)) return false;
    next();
    return true;
  }
  bool skip_name(const char* n) {
    if (!is_name(n)) return false;
    next();
    return true;
  }
  static std::string describe(const Token& tk) {
    switch (tk.type) {
      case Tok::Data:
        return "template data / text";
      case Tok::VarBegin:
        return "begin of print statement";
      case Tok::VarEnd:
        return "end of print statement";
      case Tok::BlockBegin:
        return "begin of statement block";
      case Tok::BlockEnd:
        return "end of statement block";
      case Tok::Eof:
        return "end of template";
      case Tok::String:
        return "string";
      case Tok::Int:
        return "integer";
      case Tok::Float:
        return "float";
      default:
        return tk.text;
    }
  }
  [[noreturn]] void fail_at(const std::string& msg) const { throw TemplateError(msg, cur().line); }
  void expect_op(const char* op) {
    if (!skip_op(op)) fail_at(std::string("expected '") + op + "', got '" + describe(cur()) + "'");
  }
  void expect(Tok type, const char* what) {
    if (cur().type != type)
      fail_at(std::string("expected ") + what + ", got '" + describe(cur()) + "'");
    next();
  }
  std::string expect_name() {
    if (cur().type != Tok::Name) fail_at("expected name, got '" + describe(cur()) + "'");
    return next().text;
  }

  // Recursion guard: every nested expression or statement body goes through one.
  struct Depth {
    explicit Depth(Parser& p) : p_(p) {
      if (++p_.depth_ > kMaxParseDepth) p_.fail_at("template nested too deeply");
    }
    ~Depth() { --p_.depth_; }
    Parser& p_;
  };

  ExprPtr node(ExprKind k, int line) {
    auto e = std::make_unique<Expr>();
    e->kind = k;
    e->line = line;
    return e;
  }

  // --- statements ---------------------------------------------------------------------
  // Parses until a block tag whose name is in `end`; leaves the stream on that name.
  StmtList subparse(std::initializer_list<const char*> end) {
    Depth guard(*this);
    StmtList body;
    while (cur().type != Tok::Eof) {
      const Token& tk = cur();
      if (tk.type == Tok::Data) {
        auto s = std::make_unique<Stmt>();
        s->kind = StmtKind::Data;
        s->line = tk.line;
        s->text = tk.text;
        body.push_back(std::move(s));
        next();
      } else if (tk.type == Tok::VarBegin) {
        next();
        auto s = std::make_unique<Stmt>();
        s->kind = StmtKind::Print;
        s->line = tk.line;
        s->expr = parse_tuple(false, true, {}, false);
        expect(Tok::VarEnd, "end of print statement");
        body.push_back(std::move(s));
      } else if (tk.type == Tok::BlockBegin) {
        next();
        if (cur().type == Tok::Name)
          for (const char* e : end)
            if (cur().text == e) return body;
        body.push_back(parse_statement());
        expect(Tok::BlockEnd, "end of statement block");
      } else {
        fail_at("unexpected '" + describe(tk) + "'");
      }
    }
    if (end.size() != 0) {
      std::string names;
      for (const char* e : end) names += std::string(names.empty() ? "" : " or ") + "'" + e + "'";
      fail_at("Unexpected end of template. Jinja was looking for the following tags: " + names);
    }
    return body;
  }

  // The body of a statement: optional ':' then '%}' then statements up to an end tag.
  StmtList parse_body(std::initializer_list<const char*> end, bool drop_needle) {
    skip_op(":");
    expect(Tok::BlockEnd, "end of statement block");
    StmtList body = subparse(end);
    if (drop_needle) next();
    return body;
  }

  std::unique_ptr<Stmt> stmt(StmtKind k, int line) {
    auto s = std::make_unique<Stmt>();
    s->kind = k;
    s->line = line;
    return s;
  }

  std::unique_ptr<Stmt> parse_statement() {
    if (cur().type != Tok::Name) fail_at("tag name expected");
    std::string tag = cur().text;
    int line = cur().line;
    if (tag == "if") return parse_if();
    if (tag == "for") return parse_for();
    if (tag == "set") return parse_set();
    if (tag == "macro") return parse_macro();
    if (tag == "call") return parse_call_block();
    if (tag == "filter") {
      next();
      auto s = stmt(StmtKind::FilterBlock, line);
      s->expr = parse_filter(nullptr, true);
      s->body = parse_body({"endfilter"}, true);
      return s;
    }
    if (tag == "generation" || tag == "with") {
      next();
      auto s = stmt(StmtKind::Scope, line);
      while (tag == "with" && cur().type != Tok::BlockEnd) {
        if (!s->params.empty()) expect_op(",");
        s->params.push_back(expect_name());
        expect_op("=");
        s->defaults.push_back(parse_expression(true));
      }
      // jinja2 compiles a generation body as a caller() function: no break/continue across it.
      if (tag == "generation") loop_depth_.push_back(0);
      s->body = parse_body({tag == "with" ? "endwith" : "endgeneration"}, true);
      if (tag == "generation") loop_depth_.pop_back();
      return s;
    }
    if (tag == "print") {
      next();
      auto s = stmt(StmtKind::Print, line);
      auto tuple = node(ExprKind::Concat, line);
      while (cur().type != Tok::BlockEnd) {
        if (!tuple->items.empty()) expect_op(",");
        tuple->items.push_back(parse_expression(true));
      }
      s->expr = std::move(tuple);
      return s;
    }
    if (tag == "break" || tag == "continue") {
      if (loop_depth_.empty() || loop_depth_.back() == 0) fail_at("'" + tag + "' outside loop");
      next();
      return stmt(tag == "break" ? StmtKind::Break : StmtKind::Continue, line);
    }
    fail_at("Encountered unknown tag '" + tag + "'.");
  }

  std::unique_ptr<Stmt> parse_if() {
    auto s = stmt(StmtKind::If, cur().line);
    next();
    while (true) {
      ExprPtr test = parse_tuple(false, false, {}, false);
      StmtList body = parse_body({"elif", "else", "endif"}, false);
      s->branches.emplace_back(std::move(test), std::move(body));
      std::string t = next().text;
      if (t == "elif") continue;
      if (t == "else") s->else_body = parse_body({"endif"}, true);
      break;
    }
    return s;
  }

  std::unique_ptr<Stmt> parse_for() {
    auto s = stmt(StmtKind::For, cur().line);
    next();
    s->target = parse_assign_target(false, {"in"});
    if (!skip_name("in")) fail_at("expected 'in', got '" + describe(cur()) + "'");
    s->expr = parse_tuple(false, false, {"recursive"}, false);
    if (skip_name("if")) s->test = parse_expression(true);
    if (skip_name("recursive")) fail_at("recursive for loops are not supported");
    loop_depth_.push_back(1);
    s->body = parse_body({"endfor", "else"}, false);
    loop_depth_.pop_back();
    s->uses_loop = body_uses(s->body, "loop", true);
    if (next().text == "else") s->else_body = parse_body({"endfor"}, true);
    return s;
  }

  std::unique_ptr<Stmt> parse_set() {
    int line = cur().line;
    next();
    Target target = parse_assign_target(true, {});
    if (skip_op("=")) {
      auto s = stmt(StmtKind::Set, line);
      s->target = std::move(target);
      s->expr = parse_tuple(false, true, {}, false);
      return s;
    }
    auto s = stmt(StmtKind::SetBlock, line);
    s->target = std::move(target);
    if (is_op("|")) s->expr = parse_filter(nullptr, false);
    s->body = parse_body({"endset"}, true);
    return s;
  }

  void parse_signature(Stmt& s) {
    expect_op("(");
    while (!is_op(")")) {
      if (!s.params.empty()) expect_op(",");
      s.params.push_back(expect_name());
      if (skip_op("=")) {
        s.defaults.push_back(parse_expression(true));
      } else {
        for (const auto& d : s.defaults)
          if (d) fail_at("non-default argument follows default argument");
        s.defaults.push_back(nullptr);
      }
    }
    expect_op(")");
  }

  // jinja2's macro_body: which of caller/kwargs/varargs the body uses specially. A body
  // that reads `caller` while `caller` is a parameter needs that parameter to have a default;
  // `kwargs`/`varargs` listed as parameters are plain parameters.
  void special_names(Stmt& s) {
    auto is_param = [&](const char* n) {
      return std::find(s.params.begin(), s.params.end(), n) != s.params.end();
    };
    bool reads_caller = body_uses(s.body, "caller");
    for (size_t i = 0; i < s.params.size(); ++i)
      if (reads_caller && s.params[i] == "caller" && !s.defaults[i])
        throw TemplateError(
            "When defining macros or call blocks the special \"caller\" "
            "argument must be omitted or be given a default.",
            s.line);
    s.uses_caller = s.kind == StmtKind::Macro && reads_caller;
    s.uses_kwargs = body_uses(s.body, "kwargs") && !is_param("kwargs");
    s.uses_varargs = body_uses(s.body, "varargs") && !is_param("varargs");
  }

  // Whether a macro body reads `name` (jinja2 decides caller/varargs/kwargs statically).
  static bool expr_uses(const Expr* e, const std::string& name) {
    if (!e) return false;
    if (e->kind == ExprKind::Name && e->name == name) return true;
    if (expr_uses(e->a.get(), name) || expr_uses(e->b.get(), name) || expr_uses(e->c.get(), name))
      return true;
    for (const auto& x : e->items)
      if (expr_uses(x.get(), name)) return true;
    for (const auto& x : e->values)
      if (expr_uses(x.get(), name)) return true;
    for (const auto& x : e->call.args)
      if (expr_uses(x.get(), name)) return true;
    for (const auto& kv : e->call.kwargs)
      if (expr_uses(kv.second.get(), name)) return true;
    return expr_uses(e->call.dyn_args.get(), name) || expr_uses(e->call.dyn_kwargs.get(), name);
  }
  // into_macros: also look inside nested macro bodies (they close over enclosing names).
  static bool body_uses(const StmtList& body, const std::string& name, bool into_macros = false) {
    for (const auto& s : body) {
      if (expr_uses(s->expr.get(), name) || expr_uses(s->test.get(), name)) return true;
      for (const auto& br : s->branches)
        if (expr_uses(br.first.get(), name) || body_uses(br.second, name, into_macros)) return true;
      for (const auto& d : s->defaults)
        if (expr_uses(d.get(), name)) return true;
      if ((into_macros || s->kind != StmtKind::Macro) && body_uses(s->body, name, into_macros))
        return true;
      if (body_uses(s->else_body, name, into_macros)) return true;
    }
    return false;
  }

  std::unique_ptr<Stmt> parse_macro() {
    auto s = stmt(StmtKind::Macro, cur().line);
    next();
    s->name = expect_name();
    parse_signature(*s);
    loop_depth_.push_back(0);
    s->body = parse_body({"endmacro"}, true);
    loop_depth_.pop_back();
    special_names(*s);
    return s;
  }

  std::unique_ptr<Stmt> parse_call_block() {
    auto s = stmt(StmtKind::CallBlock, cur().line);
    next();
    if (is_op("(")) parse_signature(*s);
    s->expr = parse_expression(true);
    if (s->expr->kind != ExprKind::Call) fail_at("expected call");
    loop_depth_.push_back(0);
    s->body = parse_body({"endcall"}, true);
    loop_depth_.pop_back();
    special_names(*s);
    return s;
  }

  Target parse_assign_target(bool with_namespace, std::initializer_list<const char*> extra_end) {
    Target t;
    if (with_namespace && cur().type == Tok::Name && look().type == Tok::Op && look().text == ".") {
      t.kind = Target::Kind::NsAttr;
      t.name = next().text;
      next();
      t.attr = expect_name();
      return t;
    }
    ExprPtr e = parse_tuple(true, true, extra_end, false);
    return to_target(*e);
  }

  Target to_target(const Expr& e) {
    Target t;
    if (e.kind == ExprKind::Name) {
      t.name = e.name;
      return t;
    }
    if (e.kind == ExprKind::Tuple) {
      t.kind = Target::Kind::Tuple;
      for (const auto& x : e.items) t.items.push_back(to_target(*x));
      return t;
    }
    fail_at("can't assign to this expression");
  }

  // --- expressions --------------------------------------------------------------------
  ExprPtr parse_expression(bool with_condexpr) {
    Depth guard(*this);
    return with_condexpr ? parse_condexpr() : parse_or();
  }

  ExprPtr parse_condexpr() {
    int line = cur().line;
    ExprPtr e = parse_or();
    while (skip_name("if")) {
      auto c = node(ExprKind::CondExpr, line);
      c->a = parse_or();
      c->b = std::move(e);
      if (skip_name("else")) c->c = parse_condexpr();
      e = std::move(c);
      line = cur().line;
    }
    return e;
  }

  ExprPtr binary(ExprKind k, ExprPtr l, ExprPtr r, int line, Op op = Op::Add) {
    auto e = node(k, line);
    e->a = std::move(l);
    e->b = std::move(r);
    e->op = op;
    return e;
  }
  static Op op_of(const std::string& sym) {
    static const std::pair<const char*, Op> kOps[] = {
        {"+", Op::Add}, {"-", Op::Sub},  {"*", Op::Mul}, {"/", Op::Div}, {"//", Op::FloorDiv},
        {"%", Op::Mod}, {"**", Op::Pow}, {"==", Op::Eq}, {"!=", Op::Ne}, {"<", Op::Lt},
        {"<=", Op::Le}, {">", Op::Gt},   {">=", Op::Ge}};
    for (const auto& [text, op] : kOps)
      if (sym == text) return op;
    return Op::Add;
  }

  ExprPtr parse_or() {
    int line = cur().line;
    ExprPtr e = parse_and();
    while (skip_name("or")) e = binary(ExprKind::Or, std::move(e), parse_and(), line);
    return e;
  }

  ExprPtr parse_and() {
    int line = cur().line;
    ExprPtr e = parse_not();
    while (skip_name("and")) e = binary(ExprKind::And, std::move(e), parse_not(), line);
    return e;
  }

  ExprPtr parse_not() {
    if (is_name("not")) {
      Depth guard(*this);
      auto e = node(ExprKind::Not, next().line);
      e->a = parse_not();
      return e;
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    int line = cur().line;
    ExprPtr first = parse_math1();
    ExprPtr cmp;
    while (true) {
      Op op;
      const Token& tk = cur();
      if (tk.type == Tok::Op && (tk.text == "==" || tk.text == "!=" || tk.text == "<" ||
                                 tk.text == "<=" || tk.text == ">" || tk.text == ">=")) {
        op = op_of(tk.text);
        next();
      } else if (skip_name("in")) {
        op = Op::In;
      } else if (is_name("not") && look().type == Tok::Name && look().text == "in") {
        next();
        next();
        op = Op::NotIn;
      } else {
        break;
      }
      if (!cmp) {
        cmp = node(ExprKind::Compare, line);
        cmp->items.push_back(std::move(first));
      }
      cmp->ops.push_back(op);
      cmp->items.push_back(parse_math1());
    }
    return cmp ? std::move(cmp) : std::move(first);
  }

  ExprPtr parse_math1() {
    int line = cur().line;
    ExprPtr e = parse_concat();
    while (is_op("+") || is_op("-")) {
      Op op = op_of(next().text);
      e = binary(ExprKind::Binary, std::move(e), parse_concat(), line, op);
    }
    return e;
  }

  ExprPtr parse_concat() {
    int line = cur().line;
    ExprPtr first = parse_math2();
    if (!is_op("~")) return first;
    auto e = node(ExprKind::Concat, line);
    e->items.push_back(std::move(first));
    while (skip_op("~")) e->items.push_back(parse_math2());
    return e;
  }

  ExprPtr parse_math2() {
    int line = cur().line;
    ExprPtr e = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      Op op = op_of(next().text);
      e = binary(ExprKind::Binary, std::move(e), parse_pow(), line, op);
    }
    return e;
  }

  ExprPtr parse_pow() {
    int line = cur().line;
    ExprPtr e = parse_unary(true);
    while (skip_op("**"))
      e = binary(ExprKind::Binary, std::move(e), parse_unary(true), line, Op::Pow);
    return e;
  }

  ExprPtr parse_unary(bool with_filter) {
    Depth guard(*this);
    ExprPtr e;
    int line = cur().line;
    if (skip_op("-")) {
      e = node(ExprKind::Neg, line);
      e->a = parse_unary(false);
    } else if (skip_op("+")) {
      e = node(ExprKind::Pos, line);
      e->a = parse_unary(false);
    } else {
      e = parse_primary();
    }
    e = parse_postfix(std::move(e));
    if (with_filter) e = parse_filter_expr(std::move(e));
    return e;
  }

  ExprPtr parse_primary() {
    const Token& tk = cur();
    int line = tk.line;
    if (tk.type == Tok::Name) {
      ExprPtr e = node(ExprKind::Const, line);
      if (tk.text == "true" || tk.text == "True")
        e->value = Value::boolean(true);
      else if (tk.text == "false" || tk.text == "False")
        e->value = Value::boolean(false);
      else if (tk.text == "none" || tk.text == "None")
        e->value = Value::none();
      else {
        e->kind = ExprKind::Name;
        e->name = tk.text;
      }
      next();
      return e;
    }
    if (tk.type == Tok::String) {
      std::string s;
      while (cur().type == Tok::String) s += next().text;
      ExprPtr e = node(ExprKind::Const, line);
      e->value = Value::string(std::move(s));
      return e;
    }
    if (tk.type == Tok::Int || tk.type == Tok::Float) {
      ExprPtr e = node(ExprKind::Const, line);
      e->value = tk.type == Tok::Int ? Value::integer(tk.ival) : Value::number(tk.fval);
      next();
      return e;
    }
    if (skip_op("(")) {
      ExprPtr e = parse_tuple(false, true, {}, true);
      expect_op(")");
      return e;
    }
    if (is_op("[")) {
      next();
      auto e = node(ExprKind::List, line);
      while (!is_op("]")) {
        if (!e->items.empty()) expect_op(",");
        if (is_op("]")) break;
        e->items.push_back(parse_expression(true));
      }
      expect_op("]");
      return e;
    }
    if (is_op("{")) {
      next();
      auto e = node(ExprKind::Dict, line);
      while (!is_op("}")) {
        if (!e->items.empty()) expect_op(",");
        if (is_op("}")) break;
        e->items.push_back(parse_expression(true));
        expect_op(":");
        e->values.push_back(parse_expression(true));
      }
      expect_op("}");
      return e;
    }
    fail_at("unexpected '" + describe(tk) + "'");
  }

  bool is_tuple_end(std::initializer_list<const char*> extra_end) const {
    const Token& tk = cur();
    if (tk.type == Tok::VarEnd || tk.type == Tok::BlockEnd ||
        (tk.type == Tok::Op && tk.text == ")"))
      return true;
    if (tk.type == Tok::Name)
      for (const char* e : extra_end)
        if (tk.text == e) return true;
    return false;
  }

  // simplified: only names and literals (assignment targets).
  ExprPtr parse_tuple(bool simplified, bool with_condexpr,
                      std::initializer_list<const char*> extra_end, bool explicit_parens) {
    int line = cur().line;
    std::vector<ExprPtr> args;
    bool is_tuple = false;
    while (true) {
      if (!args.empty()) expect_op(",");
      if (is_tuple_end(extra_end)) break;
      if (simplified)
        args.push_back(parse_primary());
      else
        args.push_back(parse_expression(with_condexpr));
      if (is_op(","))
        is_tuple = true;
      else
        break;
    }
    if (!is_tuple) {
      if (!args.empty()) return std::move(args[0]);
      if (!explicit_parens) fail_at("Expected an expression, got '" + describe(cur()) + "'");
    }
    auto e = node(ExprKind::Tuple, line);
    e->items = std::move(args);
    return e;
  }

  ExprPtr parse_postfix(ExprPtr e) {
    while (true) {
      if (is_op(".") || is_op("["))
        e = parse_subscript(std::move(e));
      else if (is_op("("))
        e = parse_call(std::move(e));
      else
        return e;
    }
  }

  ExprPtr parse_filter_expr(ExprPtr e) {
    while (true) {
      if (is_op("|"))
        e = parse_filter(std::move(e), false);
      else if (is_name("is"))
        e = parse_test(std::move(e));
      else if (is_op("("))
        e = parse_call(std::move(e));
      else
        return e;
    }
  }

  ExprPtr parse_subscript(ExprPtr obj) {
    Depth guard(*this);
    const Token& tk = next();
    int line = tk.line;
    if (tk.text == ".") {
      const Token& attr = next();
      if (attr.type == Tok::Name) {
        auto e = node(ExprKind::Getattr, line);
        e->a = std::move(obj);
        e->name = attr.text;
        return e;
      }
      if (attr.type != Tok::Int) fail_at("expected name or number");
      auto e = node(ExprKind::Getitem, line);
      e->a = std::move(obj);
      e->b = node(ExprKind::Const, line);
      e->b->value = Value::integer(attr.ival);
      return e;
    }
    std::vector<ExprPtr> args;
    while (!is_op("]")) {
      if (!args.empty()) expect_op(",");
      args.push_back(parse_subscribed());
    }
    expect_op("]");
    auto e = node(ExprKind::Getitem, line);
    e->a = std::move(obj);
    if (args.size() == 1) {
      e->b = std::move(args[0]);
    } else {
      e->b = node(ExprKind::Tuple, line);
      e->b->items = std::move(args);
    }
    return e;
  }

  ExprPtr parse_subscribed() {
    int line = cur().line;
    ExprPtr start;
    if (!is_op(":")) {
      ExprPtr e = parse_expression(true);
      if (!is_op(":")) return e;
      start = std::move(e);
    }
    next();  // ':'
    auto s = node(ExprKind::Slice, line);
    s->a = std::move(start);
    if (!is_op(":") && !is_op("]") && !is_op(",")) s->b = parse_expression(true);
    if (skip_op(":")) {
      if (!is_op("]") && !is_op(",")) s->c = parse_expression(true);
    }
    return s;
  }

  void parse_call_args(CallSpec& spec) {
    int line = cur().line;
    expect_op("(");
    bool require_comma = false;
    auto ensure = [&](bool ok) {
      if (!ok) throw TemplateError("invalid syntax for function call expression", line);
    };
    while (!is_op(")")) {
      if (require_comma) {
        expect_op(",");
        if (is_op(")")) break;
      }
      if (skip_op("*")) {
        ensure(!spec.dyn_args && !spec.dyn_kwargs);
        spec.dyn_args = parse_expression(true);
      } else if (skip_op("**")) {
        ensure(!spec.dyn_kwargs);
        spec.dyn_kwargs = parse_expression(true);
      } else if (cur().type == Tok::Name && look().type == Tok::Op && look().text == "=") {
        ensure(!spec.dyn_kwargs);
        std::string key = next().text;
        next();
        spec.kwargs.emplace_back(key, parse_expression(true));
      } else {
        ensure(!spec.dyn_args && !spec.dyn_kwargs && spec.kwargs.empty());
        spec.args.push_back(parse_expression(true));
      }
      require_comma = true;
    }
    expect_op(")");
  }

  ExprPtr parse_call(ExprPtr callee) {
    auto e = node(ExprKind::Call, cur().line);
    e->a = std::move(callee);
    parse_call_args(e->call);
    return e;
  }

  // `e | f(args) | g ...`; start_inline: the first filter name comes without a pipe.
  ExprPtr parse_filter(ExprPtr e, bool start_inline) {
    while (is_op("|") || start_inline) {
      if (!start_inline) next();
      int line = cur().line;
      std::string name = expect_name();
      while (skip_op(".")) name += "." + expect_name();
      auto f = node(ExprKind::Filter, line);
      f->a = std::move(e);
      f->name = name;
      if (is_op("(")) parse_call_args(f->call);
      e = std::move(f);
      start_inline = false;
    }
    return e;
  }

  ExprPtr parse_test(ExprPtr e) {
    int line = next().line;  // 'is'
    bool negated = skip_name("not");
    std::string name = expect_name();
    while (skip_op(".")) name += "." + expect_name();
    auto t = node(ExprKind::Test, line);
    t->a = std::move(e);
    t->name = name;
    const Token& tk = cur();
    bool arg_start = tk.type == Tok::Name || tk.type == Tok::String || tk.type == Tok::Int ||
                     tk.type == Tok::Float ||
                     (tk.type == Tok::Op && (tk.text == "[" || tk.text == "{"));
    if (is_op("(")) {
      parse_call_args(t->call);
    } else if (arg_start && !is_name("else") && !is_name("or") && !is_name("and")) {
      if (is_name("is")) fail_at("You cannot chain multiple tests with is");
      t->call.args.push_back(parse_postfix(parse_primary()));
    }
    if (!negated) return t;
    auto n = node(ExprKind::Not, line);
    n->a = std::move(t);
    return n;
  }

  std::vector<Token> t_;
  size_t i_ = 0;
  int depth_ = 0;
  std::vector<int> loop_depth_;  // per function body (macro, caller): 1 inside a for loop
};

}  // namespace

Template parse_template(std::string_view source) {
  Parser p(tokenize(source));
  Template t;
  t.body = p.parse();
  check_names(t.body);
  mark_constants(t.body);
  t.undefined = analyze_scopes(t.body);
  return t;
}

}  // namespace llm::jinja
