// Token-level constraints over the real llama-bpe (128K), qwen2 (152K) and llama-spm (32K,
// SentencePiece with byte tokens) vocabularies:
// random walks that mask random logits, take the best allowed token and accept it until
// end-of-generation; the text must parse and validate. Each mask is checked against a
// brute-force reference (every token's bytes run through a separate matcher) at regular
// steps. mask() timings are reported in a MESSAGE, never asserted.
#include <doctest/doctest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <random>

#include "engine/error.h"
#include "engine/gguf.h"
#include "engine/grammar_matcher.h"
#include "engine/json_schema.h"
#include "engine/token_constraint.h"
#include "engine/tokenizer.h"
#include "json_validator.h"
#include "schema_cases.h"
#include "test_util.h"

using namespace llm;
using llm::test::OJson;
using Clock = std::chrono::steady_clock;

namespace {

double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

// This thread's CPU time: unlike wall time it does not count the time other processes
// hold the CPU, so timings stay meaningful on a loaded machine.
double cpu_ms() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) * 1e3 + static_cast<double>(t.tv_nsec) / 1e6;
}

// xorshift64*: fast random logits (the walks draw ~150K numbers per step).
struct FastRng {
  uint64_t s;
  uint64_t next() {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return s * 0x2545F4914F6CDD1Dull;
  }
  float uniform(float scale) { return static_cast<float>(next() >> 40) * (scale / 16777216.0f); }
};

struct Vocab {
  std::string name;
  Tokenizer tok;
  std::shared_ptr<const TokenIndex> index;
  double index_ms = 0;
  std::vector<float> closes;  // (n_vocab) +1 piece starts with ] or }, 0.75 with ", -1 per [ {
};

// Loads a vocabulary once per process (both test cases use them).
Vocab* load_vocab(const std::string& name) {
  static std::vector<std::unique_ptr<Vocab>> cache;
  for (auto& v : cache) {
    if (v->name == name) return v.get();
  }
  std::string path = test::shared_file("vocab/ggml-vocab-" + name + ".gguf");
  if (path.empty()) return nullptr;
  auto v = std::make_unique<Vocab>();
  v->name = name;
  GgufFile f = GgufFile::open(path);
  v->tok = Tokenizer::from_gguf(f);
  double t = cpu_ms();
  v->index = TokenIndex::build(v->tok);
  v->index_ms = cpu_ms() - t;
  for (int i = 0; i < v->tok.n_vocab(); ++i) {
    const std::string& p = v->index->piece(i);
    float c = p.empty() ? 0.0f : (p[0] == ']' || p[0] == '}') ? 1.0f : p[0] == '"' ? 0.75f : 0.0f;
    for (char ch : p) c -= (ch == '[' || ch == '{') ? 1.0f : 0.0f;
    v->closes.push_back(c);
  }
  cache.push_back(std::move(v));
  return cache.back().get();
}

std::shared_ptr<const ByteProgram> program_for(const test::SchemaCase& c) {
  Grammar g = c.schema[0]
                  ? json_schema_to_grammar(OJson::parse(c.schema), JsonSchemaOptions{c.strict})
                  : json_object_grammar();
  return ByteProgram::compile(g);
}

struct Stats {
  double total_ms = 0, max_ms = 0;
  int n = 0;
  void add(double ms) {
    total_ms += ms;
    max_ms = std::max(max_ms, ms);
    ++n;
  }
};

// One random walk; returns the generated text. Checks every step's mask.
std::string walk(const Vocab& v, const std::shared_ptr<const ByteProgram>& prog, TokenConstraint& c,
                 FastRng& rng, int patience, Stats& stats, bool brute_force) {
  const int n = v.tok.n_vocab();
  std::vector<float> logits(static_cast<size_t>(n)), orig(static_cast<size_t>(n));
  GrammarMatcher ref(prog);  // the reference: the text so far, byte by byte
  std::string text;
  for (int step = 0; step < 1500; ++step) {
    // Random logits; after `patience` steps favour tokens that start by closing a string, an
    // array or an object (and disfavour openers), and end-of-generation, so walks end.
    float bonus =
        step > patience ? std::min(0.5f * static_cast<float>(step - patience), 40.0f) : 0.0f;
    for (int i = 0; i < n; ++i) {
      float l = rng.uniform(10.0f) + bonus * v.closes[static_cast<size_t>(i)];
      logits[static_cast<size_t>(i)] = orig[static_cast<size_t>(i)] = l;
    }
    if (bonus > 0) {
      for (int32_t e : v.tok.eog_ids())
        logits[static_cast<size_t>(e)] = orig[static_cast<size_t>(e)] += 2 * bonus;
    }
    double t = cpu_ms();
    c.mask(logits.data());
    stats.add(cpu_ms() - t);

    int best = -1, n_allowed = 0;
    bool eog_allowed = false, bad_token = false, changed = false;
    for (int i = 0; i < n; ++i) {
      float l = logits[static_cast<size_t>(i)];
      if (l == -INFINITY) continue;
      ++n_allowed;
      changed |= l != orig[static_cast<size_t>(i)];
      if (v.index->is_eog(i)) {
        eog_allowed = true;
      } else if (v.tok.is_control(i) || v.index->piece(i).empty()) {
        bad_token = true;
      }
      if (best < 0 || l > logits[static_cast<size_t>(best)]) best = i;
    }
    INFO(v.name << " step " << step << " text so far: " << text);
    REQUIRE(n_allowed > 0);  // never a dead end
    CHECK(!changed);         // allowed logits untouched
    CHECK(!bad_token);       // control tokens and empty pieces never allowed
    CHECK(eog_allowed == c.complete());
    CHECK(c.complete() == ref.accepting(ref.state()));
    if (brute_force && step % 8 == 0) {
      int wrong = 0;
      for (int i = 0; i < n; ++i) {
        bool allowed = logits[static_cast<size_t>(i)] != -INFINITY;
        bool want = v.index->is_eog(i) ? ref.accepting(ref.state())
                    : v.index->piece(i).empty()
                        ? false
                        : ref.run(ref.state(), v.index->piece(i)) != GrammarMatcher::kDead;
        wrong += allowed != want;
      }
      CHECK(wrong == 0);
    }
    if (v.index->is_eog(best)) {
      c.accept(best);
      // After end-of-generation only end-of-generation remains.
      std::vector<float> again(static_cast<size_t>(n), 0.0f);
      c.mask(again.data());
      CHECK(again[static_cast<size_t>(best)] == 0.0f);
      CHECK(again[static_cast<size_t>(v.tok.token_id("{") >= 0 ? v.tok.token_id("{") : 0)] ==
            -INFINITY);
      return text;
    }
    c.accept(best);
    text += v.index->piece(best);
    REQUIRE(ref.advance(v.index->piece(best)));
  }
  FAIL("the walk did not reach end-of-generation: " << text);
  return text;
}

}  // namespace

TEST_CASE("token constraint: random walks over real vocabularies parse and validate") {
  for (const char* name : {"llama-bpe", "qwen2", "llama-spm"}) {
    Vocab* v = load_vocab(name);
    if (!v) LLM_SKIP(std::string("../shared/vocab/ggml-vocab-") + name + ".gguf not found");
    FastRng rng{0x9E3779B97F4A7C15ull};
    Stats stats;
    Clock::time_point t0 = Clock::now();
    for (const test::SchemaCase& sc : test::schema_cases()) {
      OJson schema = sc.schema[0] ? OJson::parse(sc.schema) : OJson{{"type", "object"}};
      test::Validator validator(schema, sc.strict);
      auto prog = program_for(sc);
      for (int rep = 0; rep < 2; ++rep) {
        INFO(std::string(name) << " / " << std::string(sc.name) << " walk " << rep);
        auto c = make_grammar_constraint(v->index, prog);
        std::string text = walk(*v, prog, *c, rng, 15 + 25 * rep, stats, rep == 0);
        INFO("text: " << text);
        OJson parsed;
        REQUIRE_NOTHROW(parsed = OJson::parse(text));
        CHECK(validator.check(parsed) == "");
      }
    }
    MESSAGE(std::string(name) << ": " << v->tok.n_vocab() << " tokens, trie of "
                              << v->index->nodes().size() - 1 << " nodes built in " << v->index_ms
                              << " ms; mask() over " << stats.n << " steps: mean "
                              << stats.total_ms / stats.n << " ms, max " << stats.max_ms
                              << " ms (walks took " << ms_since(t0) / 1000 << " s)");
  }
}

// Each schema's example document, tokenized the way the tokenizer encodes it, is allowed
// token by token and ends complete with end-of-generation allowed.
TEST_CASE("token constraint: tokenized example documents are allowed") {
  for (const char* name : {"llama-bpe", "qwen2", "llama-spm"}) {
    Vocab* v = load_vocab(name);
    if (!v) LLM_SKIP(std::string("../shared/vocab/ggml-vocab-") + name + ".gguf not found");
    std::vector<float> logits(static_cast<size_t>(v->tok.n_vocab()));
    for (const test::SchemaCase& sc : test::schema_cases()) {
      INFO(std::string(name) << " / " << std::string(sc.name));
      auto c = make_grammar_constraint(v->index, program_for(sc));
      std::vector<int32_t> ids = v->tok.encode(sc.example, false, false);
      std::string text;
      for (int32_t id : ids) {
        std::fill(logits.begin(), logits.end(), 0.0f);
        c->mask(logits.data());
        INFO("after \"" << text << "\" token " << id << " \"" << v->index->piece(id) << "\"");
        REQUIRE(logits[static_cast<size_t>(id)] == 0.0f);
        c->accept(id);
        text += v->index->piece(id);
      }
      CHECK(c->complete());
      std::fill(logits.begin(), logits.end(), 0.0f);
      c->mask(logits.data());
      CHECK(logits[static_cast<size_t>(v->tok.eog_ids().at(0))] == 0.0f);
    }
  }
}

// The cost of mask() where decoding spends its time. For each case: a fresh constraint
// is led through `prefix`, then masks `steps` times, accepting `step` after each mask.
//   first: the first mask (cold: the trie walk builds DFA states as it goes)
//   next:  the mean of the following masks. Inside an unbounded string the state at a
//          token boundary repeats, so these come from the per-constraint mask cache; in a
//          string with maxLength every count is a new state, so each is a fresh walk.
TEST_CASE("token constraint: mask() cost (reported, not asserted)") {
  struct CostCase {
    const char* name;
    const char* schema;
    const char* prefix;
    const char* step;
  };
  const CostCase cases[] = {
      {"start of object", R"({"type": "object", "properties": {"text": {"type": "string"}}})", "",
       nullptr},
      {"free string", R"({"type": "object", "properties": {"text": {"type": "string"}}})",
       "{\"text\": \"", "x"},
      {"string maxLength 400",
       R"({"type": "object", "properties": {"text": {"type": "string", "maxLength": 400}}})",
       "{\"text\": \"", "x"},
      {"string pattern [a-z]+",
       R"({"type": "object", "properties": {"text": {"type": "string", "pattern": "^[a-z]+$"}}})",
       "{\"text\": \"", "x"},
      {"number", R"({"type": "object", "properties": {"n": {"type": "number"}}})", "{\"n\": ", "1"},
      {"json_object nested string", "", "{\"a\": [{\"b\": \"", "x"},
  };
  for (const char* name : {"llama-bpe", "qwen2"}) {
    Vocab* v = load_vocab(name);
    if (!v) LLM_SKIP(std::string("../shared/vocab/ggml-vocab-") + name + ".gguf not found");
    std::vector<float> logits(static_cast<size_t>(v->tok.n_vocab()));
    std::string report;
    for (const CostCase& cc : cases) {
      auto prog = program_for({cc.name, cc.schema});
      Stats first, next;
      for (int rep = 0; rep < 5; ++rep) {
        auto c = make_grammar_constraint(v->index, prog);
        for (int32_t id : v->tok.encode(cc.prefix, false, false)) c->accept(id);
        int32_t step = cc.step ? v->tok.encode(cc.step, false, false).at(0) : -1;
        for (int i = 0; i < (rep == 0 && step >= 0 ? 12 : 1); ++i) {
          std::fill(logits.begin(), logits.end(), 0.0f);
          double t = cpu_ms();
          c->mask(logits.data());
          (i == 0 ? first : next).add(cpu_ms() - t);
          if (step < 0) break;
          REQUIRE(logits[static_cast<size_t>(step)] == 0.0f);
          c->accept(step);
        }
      }
      char line[200];
      std::snprintf(line, sizeof line, "\n  %-26s first %6.3f ms (max %6.3f)", cc.name,
                    first.total_ms / first.n, first.max_ms);
      report += line;
      if (next.n == 0) continue;
      std::snprintf(line, sizeof line, "  next %6.3f ms", next.total_ms / next.n);
      report += line;
    }
    MESSAGE(std::string(name) << " mask() CPU time per call:" << report);
  }
}

TEST_CASE("token constraint: clone() forks independent sequences") {
  Vocab* v = load_vocab("llama-bpe");
  if (!v) LLM_SKIP("../shared/vocab/ggml-vocab-llama-bpe.gguf not found");
  OJson schema = OJson::parse(
      R"({"type": "object", "properties": {"a": {"enum": ["alpha", "beta"]}}, "required": ["a"]})");
  auto c = make_json_constraint(v->index, &schema);
  for (int32_t id : v->tok.encode("{\"a\": \"", false, false)) c->accept(id);
  auto fork = c->clone();
  for (int32_t id : v->tok.encode("alpha", false, false)) c->accept(id);
  for (int32_t id : v->tok.encode("beta", false, false)) fork->accept(id);
  int32_t quote = v->tok.token_id("\""), a = v->tok.encode("alpha", false, false)[0];
  REQUIRE(quote >= 0);
  for (auto* k : {c.get(), fork.get()}) {
    std::vector<float> logits(static_cast<size_t>(v->tok.n_vocab()), 0.0f);
    k->mask(logits.data());
    CHECK(logits[static_cast<size_t>(quote)] == 0.0f);
    CHECK(logits[static_cast<size_t>(a)] == -INFINITY);
    CHECK(!k->complete());
  }
  // The fork is a different sequence: after "alpha" the original refuses "beta"'s tail.
  auto probe = c->clone();
  for (int32_t id : v->tok.encode("\"}", false, false)) probe->accept(id);
  CHECK(probe->complete());
  CHECK(!c->complete());
  // json_object mode through the Tokenizer overload; EOG only once complete.
  auto obj = make_json_constraint(v->tok, nullptr);
  std::vector<float> logits(static_cast<size_t>(v->tok.n_vocab()), 0.0f);
  obj->mask(logits.data());
  for (int32_t e : v->tok.eog_ids()) CHECK(logits[static_cast<size_t>(e)] == -INFINITY);
  CHECK(logits[static_cast<size_t>(v->tok.token_id("{"))] == 0.0f);
  CHECK(logits[static_cast<size_t>(v->tok.token_id("["))] == -INFINITY);
  for (int32_t id : v->tok.encode("{}", false, false)) obj->accept(id);
  CHECK(obj->complete());
  std::fill(logits.begin(), logits.end(), 0.0f);
  obj->mask(logits.data());
  for (int32_t e : v->tok.eog_ids()) CHECK(logits[static_cast<size_t>(e)] == 0.0f);
  // Unsupported schemas fail before any decoding.
  OJson bad = OJson::parse(R"({"type": "object", "properties": {"a": {"not": {}}}})");
  CHECK_THROWS_AS(make_json_constraint(v->index, &bad), Error);
}
