// Renders a parsed Jinja template: statements, expressions, scoping and macros with
// jinja2's semantics (for loops and macros open a scope, `if` does not; a `set` inside a
// loop does not leak and does not survive to the next iteration; namespace() objects are
// shared; undefined values print as ""; names start as jinja_analysis.h decided).
//
// Hostile templates are bounded: nesting depth, macro recursion, a step budget (every
// evaluated node and loop iteration, plus the bytes of every string or list built) and the
// size of any string all raise TemplateError instead of crashing or running for minutes.
#pragma once
#include <ctime>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "engine/jinja_ast.h"
#include "engine/jinja_parser.h"

namespace llm::jinja {

// One step is about 0.1 us of work; a template gets max_steps plus steps_per_input_byte for
// every byte of input, so that long conversations through templates that are quadratic in
// the number of messages still render while a hostile template stops within seconds.
struct Limits {
  int max_depth = 500;            // nested evaluation frames (expressions, blocks, calls)
  int max_call_depth = 100;       // macro / caller recursion
  uint64_t max_steps = 20000000;  // work budget, see above
  uint64_t steps_per_input_byte = 200;
  size_t max_string = 64u << 20;  // bytes of any string, the output included
};

// raise_exception(msg) from a template: the message is the template author's, verbatim.
class RaisedError : public TemplateError {
 public:
  explicit RaisedError(const std::string& msg) : TemplateError(msg) {}
};

class Interp {
 public:
  Interp(const Limits& limits, std::function<std::tm()> now);
  ~Interp();

  // Renders a template with the given top-level variables; `input_bytes` (the size of the
  // caller's data) raises the step budget, see Limits. One Interp per render.
  std::string render(const Template& tmpl, const ValueDict& vars, size_t input_bytes = 0);

  // --- used by the built-ins -----------------------------------------------------------
  Value call(const Value& callee, CallArgs& args);
  Value getattr(const Value& obj, const std::string& name);  // jinja2 sandbox getattr
  Value getitem(const Value& obj, const Value& key);         // jinja2 sandbox getitem
  // Charges work proportional to `bytes` of data built; raises when the budget is spent.
  void charge_bytes(size_t bytes);
  void charge_value(const Value& v);    // for a value a filter or function just built
  void check_size(size_t bytes) const;  // a string or list about to be built
  std::tm now() const { return now_(); }
  const Limits& limits() const { return limits_; }

  // Variables of one frame. Scopes chain to the scope they were opened in (macros: where
  // they were defined), and reads walk the chain like jinja2's name resolution.
  struct Scope {
    std::shared_ptr<Scope> parent;
    std::vector<std::pair<std::string, Value>> vars;
    // Names a frame starts with undefined (Stmt::frame_undefined).
    void declare_undefined(const std::vector<std::string>& names) {
      for (const auto& n : names) set(n, Value::undefined("'" + n + "' is undefined"));
    }
    void set(const std::string& name, Value v) {
      for (auto& kv : vars) {
        if (kv.first == name) {
          kv.second = std::move(v);
          return;
        }
      }
      vars.emplace_back(name, std::move(v));
    }
  };

 private:
  enum class Flow { Normal, Break, Continue };

  Flow exec(const StmtList& body, const std::shared_ptr<Scope>& scope, std::string& out);
  Flow exec_stmt(const Stmt& s, const std::shared_ptr<Scope>& scope, std::string& out);
  Flow exec_for(const Stmt& s, const std::shared_ptr<Scope>& scope, std::string& out);
  Flow exec_set(const Stmt& s, const std::shared_ptr<Scope>& scope);
  Flow capture(const Stmt& block, const std::shared_ptr<Scope>& parent, std::string& out);
  Value apply_filter_chain(const Expr* chain, const std::shared_ptr<Scope>& scope, Value hole);
  void assign(const Target& t, const Value& v, Scope& scope);
  Value make_macro(const Stmt& m, const std::shared_ptr<Scope>& scope);
  Value invoke_macro(const Stmt& m, const std::weak_ptr<Scope>& def_scope, CallArgs& args);

  Value eval(const Expr& e, const std::shared_ptr<Scope>& scope);
  std::string print_value(const Expr& e, const std::shared_ptr<Scope>& scope);
  std::optional<Value> try_fold(const Expr& e, const std::shared_ptr<Scope>& scope);
  Value eval_inner(const Expr& e, const std::shared_ptr<Scope>& scope);
  void eval_args(const CallSpec& spec, const std::shared_ptr<Scope>& scope, CallArgs& out);
  Value lookup(const std::string& name, const Scope& scope);
  Value binary(Op op, const Value& a, const Value& b);
  Value slice(const Value& obj, const Expr& getitem, const std::shared_ptr<Scope>& scope);
  bool compare_op(Op op, const Value& a, const Value& b);
  void step();
  void emit(std::string& out, std::string_view text) const;

  struct DepthGuard {
    explicit DepthGuard(Interp& in);
    ~DepthGuard() { --in_.depth_; }
    Interp& in_;
  };

  Limits limits_;
  std::function<std::tm()> now_;
  uint64_t steps_ = 0;
  uint64_t max_steps_ = 0;
  int depth_ = 0;
  int call_depth_ = 0;
  bool folding_ = false;  // evaluating a constant subtree as jinja2's optimizer would
};

// The Python-level iteration of a value by a for loop or list(): list items, dict keys,
// the characters of a string; Undefined is empty. Raises for None, numbers, namespaces.
std::vector<Value> iterate(const Value& v);

}  // namespace llm::jinja
