// Chat templates: the Jinja engine's pieces (hand-computed expectations), hostile templates,
// and byte-for-byte agreement with Python jinja2 — run once per process, all cases batched —
// on a corpus of language-feature snippets and on the 68 real templates in
// ../shared/templates × a set of conversations.
#include <doctest/doctest.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>

#include "engine/chat_template.h"
#include "engine/error.h"
#include "engine/gguf.h"
#include "engine/jinja_text.h"
#include "test_util.h"

using llm::ChatTemplate;
using nlohmann::ordered_json;

namespace {

// The fixed "now" for strftime_now(), on both sides: Friday 2025-03-14 09:26:53.
std::tm pinned_now() {
  std::tm tm{};
  tm.tm_year = 125;
  tm.tm_mon = 2;
  tm.tm_mday = 14;
  tm.tm_hour = 9;
  tm.tm_min = 26;
  tm.tm_sec = 53;
  tm.tm_wday = 5;
  tm.tm_yday = 72;
  return tm;
}
constexpr const char* kPinnedIso = "2025-03-14T09:26:53";

// Renders `src` with `vars` as extra top-level variables and no messages.
std::string r(const std::string& src, const ordered_json& vars = ordered_json::object()) {
  ChatTemplate t = ChatTemplate::from_source(src, "<s>", "</s>");
  t.pin_time(pinned_now());
  return t.render(ordered_json::array(), nullptr, false, vars);
}

// The error message of rendering `src` ("" when it renders).
std::string err(const std::string& src, const ordered_json& vars = ordered_json::object()) {
  try {
    r(src, vars);
  } catch (const llm::Error& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

}  // namespace

TEST_CASE("jinja: expressions and Python semantics") {
  CHECK(r("{{ 1 + 2 * 3 }}|{{ (1 + 2) * 3 }}|{{ 7 // 2 }}|{{ -7 // 2 }}|{{ -7 % 3 }}") ==
        "7|9|3|-4|2");
  CHECK(r("{{ 7 / 2 }}|{{ 4 / 2 }}|{{ 2 ** 10 }}|{{ 2 ** -1 }}|{{ -2 ** 2 }}") ==
        "3.5|2.0|1024|0.5|4");
  CHECK(r("{{ 0.1 + 0.2 }}|{{ 1e20 }}|{{ 1.5e-7 }}|{{ 1e16 }}|{{ 123456789012345.6 }}") ==
        "0.30000000000000004|1e+20|1.5e-07|1e+16|123456789012345.6");
  CHECK(r("{{ 'a' ~ 1 ~ none ~ true ~ 2.0 }}|{{ 'ab' * 3 }}|{{ [1] + [2] }}") ==
        "a1NoneTrue2.0|ababab|[1, 2]");
  CHECK(r("{{ 1 < 2 < 3 }}|{{ 3 > 2 > 2 }}|{{ 'b' in 'abc' }}|{{ 2 not in [1, 3] }}") ==
        "True|False|True|True");
  CHECK(r("{{ 0 or 'x' }}|{{ 'y' and 0 }}|{{ not none }}|{{ [] or {} or 'z' }}") == "x|0|True|z");
  CHECK(r("{{ 'yes' if 1 else 'no' }}|{{ 'yes' if 0 }}|") == "yes||");
  CHECK(r("{{ [1, 'a', none, true, {'k': \"it's\"}, (1,), 1.0] }}") ==
        "[1, 'a', None, True, {'k': \"it's\"}, (1,), 1.0]");
  CHECK(r("{{ 'abcdef'[1:4] }}|{{ 'abc'[::-1] }}|{{ [1,2,3,4][-2:] }}|{{ 'héllo'[1] }}") ==
        "bcd|cba|[3, 4]|é");
  CHECK(
      r("{{ 'a\\nb' }}|{{ 'x\\qy' }}|{{ '\\u00e9\\x41' }}|{{ \"it's\" }}|{{ 0x1F }}|{{ 1_000 }}") ==
      "a\nb|x\\qy|éA|it's|31|1000");
  CHECK(r("{{ d.a }}|{{ d['b'][0] }}|{{ d.get('c', 'none') }}|{{ d.items() | list }}",
          {{"d", {{"a", 1}, {"b", {5}}}}}) == "1|5|none|[('a', 1), ('b', [5])]");
  CHECK(r("{{ x }}|{{ x is defined }}|{{ x | default('d') }}|{{ none.foo }}|{{ d.nope }}",
          {{"d", ordered_json::object()}}) == "|False|d||");
}

TEST_CASE("jinja: whitespace control matches trim_blocks + lstrip_blocks") {
  CHECK(r("a\n  {% if true %}\n    b\n  {% endif %}\nc") == "a\n    b\nc");
  CHECK(r("x  {%- if true -%}  y  {%- endif -%}  z") == "xyz");
  CHECK(r("{{ 'a' }}\n{{ 'b' }}\n") == "a\nb");  // one trailing newline dropped
  CHECK(r("  {# note #}\nx") == "x");
  CHECK(r("  {%+ if true %}x{% endif %}") == "  x");
  CHECK(r("{% if true +%}\nx{% endif %}") == "\nx");
  CHECK(r("{% raw %}{{ not rendered }}{% endraw %}") == "{{ not rendered }}");
  CHECK(r("a\r\nb\rc") == "a\nb\nc");
  CHECK(r("  {{ 'v' }}  ") == "  v  ");  // lstrip_blocks leaves {{ }} alone
}

TEST_CASE("jinja: loops, scoping, namespaces") {
  CHECK(r("{% for x in 'abc' %}{{ loop.index }}{{ loop.index0 }}{{ loop.first }}{{ loop.last }}"
          "{{ loop.length }}{{ loop.revindex }}{{ loop.revindex0 }};{% endfor %}") ==
        "10TrueFalse332;21FalseFalse321;32FalseTrue310;");
  CHECK(r("{% for x in [1,2,3] %}{{ loop.previtem }}-{{ loop.nextitem }} {% endfor %}") ==
        "-2 1-3 2- ");
  CHECK(r("{% for x in [1,2,3,4] if x is even %}{{ loop.index }}/{{ loop.length }}:{{ x }} "
          "{% endfor %}") == "1/2:2 2/2:4 ");
  CHECK(r("{% for x in [] %}x{% else %}empty{% endfor %}") == "empty");
  CHECK(r("{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}"
          "{% if x == 4 %}{% break %}{% endif %}{{ x }}{% endfor %}") == "013");
  CHECK(r("{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }};{% endfor %}") == "a=1;b=2;");
  CHECK(r("{% set x = 1 %}{% for i in [1,2] %}{{ x }}{% set x = 5 %}{{ x }}{% endfor %}{{ x }}") ==
        "15151");
  CHECK(r("{% set x = 1 %}{% if true %}{% set x = 2 %}{% endif %}{{ x }}") == "2");
  CHECK(r("{% set ns = namespace(n=0) %}{% for i in range(4) %}{% set ns.n = ns.n + i %}"
          "{% endfor %}{{ ns.n }}") == "6");
  CHECK(
      r("{% for a in [[1, 2], [3]] %}{% for b in a %}{{ loop.index }}{% endfor %}|{% endfor %}") ==
      "12|1|");
}

TEST_CASE("jinja: macros, call blocks, filter blocks, block set") {
  CHECK(r("{% macro m(a, b=a+1) %}{{ a }}{{ b }}{{ varargs }}{{ kwargs }}{% endmacro %}"
          "{{ m(1) }}|{{ m(1, 2, 3, z=4) }}") == "12(){}|12(3,){'z': 4}");
  CHECK(r("{% macro m(a) %}[{{ a }}]{% endmacro %}{{ m() }}{{ m(a='k') }}") == "[][k]");
  CHECK(
      r("{% macro f(n) %}{% if n > 0 %}{{ n }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(3) }}") ==
      "321");
  CHECK(r("{% macro m(a) %}<{{ caller(a) }}>{% endmacro %}"
          "{% call(x) m(5) %}got {{ x }}{% endcall %}") == "<got 5>");
  CHECK(r("{% filter upper %}abc{% endfilter %}") == "ABC");
  CHECK(r("{% set x | trim %}  padded  {% endset %}[{{ x }}]") == "[padded]");
  CHECK(contains(err("{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}"),
                 "takes not more than 1 argument"));
}

TEST_CASE("jinja: filters, tests, methods") {
  CHECK(r("{{ {'b': 1, 'a': [1, 2.5, none, true, 'é\"']} | tojson }}") ==
        "{\"b\": 1, \"a\": [1, 2.5, null, true, \"é\\\"\"]}");
  CHECK(r("{{ {'b': 1, 'a': 2} | tojson(indent=2, sort_keys=true) }}") ==
        "{\n  \"a\": 2,\n  \"b\": 1\n}");
  CHECK(r("{{ 'é' | tojson(ensure_ascii=true) }}") == "\"\\u00e9\"");
  CHECK(r("{{ ' a b ' | trim }}|{{ [1,2,3] | length }}|{{ [1,2] | join(', ') }}|{{ 'Ab' | upper "
          "}}") == "a b|3|1, 2|AB");
  CHECK(r("{{ [3,1,2] | sort }}|{{ [1,2,3] | first }}|{{ [1,2,3] | last }}|{{ [1,1,2] | unique | "
          "list }}") == "[1, 2, 3]|1|3|[1, 2]");
  CHECK(r("{{ ds | map(attribute='n') | list }}|{{ ds | selectattr('n', 'equalto', 2) | list }}",
          {{"ds", {{{"n", 1}}, {{"n", 2}}}}}) == "[1, 2]|[{'n': 2}]");
  CHECK(r("{{ '3.7' | int }}|{{ 'x' | int }}|{{ 2.5 | round }}|{{ 3.5 | round }}|{{ -3 | abs }}") ==
        "3|0|2.0|4.0|3");
  CHECK(
      r("{{ ('<a>' | safe) + '<b>' }}|{{ '<b>' + ('<a>' | safe) }}|{{ ('<a>' | safe) ~ '<b>' }}") ==
      "<a>&lt;b&gt;|&lt;b&gt;<a>|<a><b>");
  CHECK(r("{{ 'a\\nb' | indent(2, first=true) }}|{{ {'b': 1, 'A': 2} | dictsort }}") ==
        "  a\n  b|[('A', 2), ('b', 1)]");
  CHECK(r("{{ 'a,b,,c'.split(',') }}|{{ '  x y '.split() }}|{{ 'xxhixx'.strip('x') }}|"
          "{{ 'Hello {}! {n}'.format('you', n=3) }}|{{ 'hello world'.title() }}") ==
        "['a', 'b', '', 'c']|['x', 'y']|hi|Hello you! 3|Hello World");
  CHECK(r("{{ 1 is odd }}{{ 2 is even }}{{ 'x' is string }}{{ {} is mapping }}{{ none is none }}"
          "{{ 3 is number }}{{ [] is iterable }}{{ x is undefined }}{{ 6 is divisibleby 3 }}") ==
        "TrueTrueTrueTrueTrueTrueTrueTrueTrue");
  CHECK(r("{{ strftime_now('%Y-%m-%d %d %b %Y %B') }}") == "2025-03-14 14 Mar 2025 March");
  CHECK(r("{% generation %}{{ 'kept' }}{% endgeneration %}") == "kept");
}

TEST_CASE("jinja: errors carry the template's line") {
  std::string e = err("line one\n{{ 'a' + 1 }}");
  CHECK(contains(e, "line 2"));
  CHECK(contains(e, "can only concatenate str"));
  CHECK(err("{{ raise_exception('Only user and assistant roles are supported!') }}") ==
        "Only user and assistant roles are supported!");
  CHECK(contains(err("\n\n{{ x.y.z }}"), "line 3"));
  CHECK(contains(err("{% set l = [] %}{{ l.append(1) }}"), "unsafe"));
  // As Debian's jinja2 3.1.2: pop mutates the shared list (3.1.5+ would refuse it).
  CHECK(r("{% set ns = namespace(q=[1, 2, 3]) %}{{ ns.q.pop(0) }}{{ ns.q.pop() }}{{ ns.q }}") ==
        "13[2]");
  auto syntax = [](const std::string& src) {
    try {
      ChatTemplate::from_source(src, "", "");
    } catch (const llm::Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  CHECK(contains(syntax("ok\n{% if x %}\nno end"), "line 3"));
  CHECK(contains(syntax("{{ x | no_such_filter }}"), "No filter named 'no_such_filter'"));
  CHECK(syntax("{% if 0 %}{{ x | no_such_filter }}{% endif %}").empty());  // fails when reached
  CHECK(contains(syntax("{{ 1 +  }}"), "line 1"));
  CHECK(contains(syntax("{% break %}"), "outside loop"));
  CHECK(contains(syntax("{{ 'unterminated }}"), "line 1"));
}

TEST_CASE("jinja: hostile templates fail cleanly") {
  using Clock = std::chrono::steady_clock;
  auto t0 = Clock::now();
  CHECK(contains(err("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}"), "too deep"));
  CHECK(contains(err("{{ range(1000000) | length }}"), "Range too big"));
  CHECK(contains(err("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}"
                     "{% endfor %}"),
                 "budget"));
  CHECK(contains(err("{% set ns = namespace(s='xx') %}{% for i in range(100) %}"
                     "{% set ns.s = ns.s + ns.s %}{% endfor %}"),
                 "larger than"));
  CHECK(contains(err("{{ 'x' * 10000000000 }}"), "larger than"));
  CHECK(contains(err("{% set ns = namespace(s='') %}{% for i in range(100000) %}"
                     "{% set ns.s = ns.s + 'abcdefghijklmnopqrstuvwxyz0123456789' %}{% endfor %}"),
                 "budget"));
  CHECK(contains(err("{% set ns = namespace() %}{% set ns.me = ns %}{{ ns }}"), "cycle"));
  CHECK(contains(err("{{ 2 ** 100 }}"), "overflow"));
  std::string deep = std::string(5000, '(') + "1" + std::string(5000, ')');
  CHECK_THROWS_AS(ChatTemplate::from_source("{{ " + deep + " }}", "", ""), llm::Error);
  std::string nested;
  for (int i = 0; i < 3000; ++i) nested += "{% if true %}";
  CHECK_THROWS_AS(ChatTemplate::from_source(nested, "", ""), llm::Error);
  double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  MESSAGE("hostile templates rejected in " << secs << " s");
  CHECK(secs < 20);
}

TEST_CASE("chat template: builtins and GGUF-free API") {
  ordered_json msgs = ordered_json::parse(
      R"([{"role":"system","content":"Be brief."},{"role":"user","content":[{"type":"text","text":"Hi"}]}])");
  CHECK(ChatTemplate::builtin("chatml").render(msgs, nullptr, true) ==
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\n");
  CHECK(ChatTemplate::builtin("llama3", "<|begin_of_text|>").render(msgs, nullptr, true) ==
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n");
  CHECK(ChatTemplate::builtin("llama2", "<s>", "</s>").render(msgs, nullptr, true) ==
        "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST]");
  CHECK_THROWS_AS(ChatTemplate::builtin("nope"), llm::Error);
  llm::ChatMessage m{"user", "hello", ordered_json::object({{"name", "bob"}})};
  CHECK(llm::to_json({m}).dump() == R"([{"role":"user","content":"hello","name":"bob"}])");
}

TEST_CASE("chat template: from_gguf reads the template and the BOS/EOS texts") {
  std::string path = llm::test::temp_path("chat_template.gguf");
  {
    llm::GgufWriter w;
    w.set_string("general.architecture", "llama");
    w.set_string(
        "tokenizer.chat_template",
        "{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m.content }}{{ eos_token }}"
        "{% endfor %}");
    w.set_string_array("tokenizer.ggml.tokens", {"<unk>", "<|begin|>", "<|end|>", "a"});
    w.set_u32("tokenizer.ggml.bos_token_id", 1);
    w.set_u32("tokenizer.ggml.eos_token_id", 2);
    w.begin(path);
    w.finish();
  }
  llm::GgufFile f = llm::GgufFile::open(path);
  auto t = ChatTemplate::from_gguf(f);
  REQUIRE(t.has_value());
  CHECK(t->bos_token() == "<|begin|>");
  CHECK(t->eos_token() == "<|end|>");
  CHECK(t->render(ordered_json::parse(R"([{"role":"user","content":"hi"}])"), nullptr, false) ==
        "<|begin|>[user]hi<|end|>");

  std::string bare = llm::test::temp_path("no_template.gguf");
  {
    llm::GgufWriter w;
    w.set_string("general.architecture", "llama");
    w.begin(bare);
    w.finish();
  }
  CHECK_FALSE(ChatTemplate::from_gguf(llm::GgufFile::open(bare)).has_value());
}

// ---------------------------------------------------------------------------------------
// Agreement with Python jinja2.

namespace {

struct RefCase {
  std::string label;
  std::string template_name;
  ordered_json messages;
  ordered_json tools;
  bool add_generation_prompt = true;
  ordered_json extra = ordered_json::object();
};

struct Outcome {
  bool ok = false;
  std::string text;  // output, or the error message
};

// The Python that renders the reference: $LLM_PYTHON, else Debian's /usr/bin/python3 (with
// python3-jinja2), else python3 from PATH — the first that imports jinja2; "" if none does.
const std::string& python_with_jinja2() {
  static const std::string found = [] {
    std::vector<std::string> candidates;
    if (const char* env = std::getenv("LLM_PYTHON")) candidates.emplace_back(env);
    candidates.emplace_back("/usr/bin/python3");
    candidates.emplace_back("python3");
    for (const auto& py : candidates)
      if (llm::test::run_command("'" + py + "' -c 'import jinja2' >/dev/null 2>&1").exit_code == 0)
        return py;
    return std::string();
  }();
  return found;
}

bool have_jinja2() {
  return !python_with_jinja2().empty();
}

// Renders all cases with jinja2 in one python process. nullopt (with `why`) on failure.
std::optional<std::vector<Outcome>> run_reference(
    const std::map<std::string, std::string>& templates, const std::vector<RefCase>& cases,
    std::string* why) {
  ordered_json req;
  req["now"] = kPinnedIso;
  req["templates"] = ordered_json::object();
  for (const auto& [name, src] : templates) req["templates"][name] = src;
  req["cases"] = ordered_json::array();
  for (const auto& c : cases) {
    req["cases"].push_back({{"template", c.template_name},
                            {"messages", c.messages},
                            {"tools", c.tools},
                            {"add_generation_prompt", c.add_generation_prompt},
                            {"bos_token", "<s>"},
                            {"eos_token", "</s>"},
                            {"extra", c.extra}});
  }
  std::string path =
      llm::test::temp_path("chat_template_ref_" + std::to_string(getpid()) + ".json");
  {
    std::ofstream f(path, std::ios::binary);
    f << req.dump();
  }
  std::string script = std::string(LLM_SOURCE_DIR) + "/tests/chat_template_ref.py";
  auto res =
      llm::test::run_command("'" + python_with_jinja2() + "' '" + script + "' < '" + path + "'");
  std::filesystem::remove(path);
  if (res.exit_code != 0) {
    *why = "reference renderer failed: " + res.err;
    return std::nullopt;
  }
  ordered_json out = ordered_json::parse(res.out);
  std::vector<Outcome> outcomes;
  for (const auto& o : out) {
    bool ok = o["ok"].get<bool>();
    outcomes.push_back({ok, ok ? o["text"].get<std::string>() : o["error"].get<std::string>()});
  }
  return outcomes;
}

Outcome render_ours(const std::string& source, const RefCase& c) {
  try {
    ChatTemplate t = ChatTemplate::from_source(source, "<s>", "</s>");
    t.pin_time(pinned_now());
    return {true, t.render(c.messages, c.tools, c.add_generation_prompt, c.extra)};
  } catch (const llm::Error& e) {
    return {false, e.what()};
  }
}

std::string first_difference(const std::string& a, const std::string& b) {
  size_t i = 0;
  while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
  size_t from = i > 40 ? i - 40 : 0;
  return "at byte " + std::to_string(i) +
         ":\n  ours:   " + ordered_json(a.substr(from, 120)).dump() +
         "\n  jinja2: " + ordered_json(b.substr(from, 120)).dump();
}

// Compares every case; returns the number that agree.
size_t compare_all(const std::map<std::string, std::string>& templates,
                   const std::vector<RefCase>& cases, const std::vector<Outcome>& ref,
                   std::map<std::string, int>* failures_per_template) {
  size_t agree = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    const RefCase& c = cases[i];
    Outcome ours = render_ours(templates.at(c.template_name), c);
    bool same = ours.ok == ref[i].ok && (!ours.ok || ours.text == ref[i].text);
    if (std::getenv("LLM_TEST_VERBOSE") && !ref[i].ok)  // both raised: show the two messages
      MESSAGE(c.template_name << " / " << c.label << ": jinja2 " << ref[i].text << " | ours "
                              << ours.text);
    if (same) {
      ++agree;
      continue;
    }
    if (failures_per_template) (*failures_per_template)[c.template_name]++;
    std::string detail;
    if (ours.ok && ref[i].ok)
      detail = first_difference(ours.text, ref[i].text);
    else if (ours.ok)
      detail = "jinja2 raised " + ref[i].text + " but we rendered";
    else
      detail = "we raised '" + ours.text + "' but jinja2 " +
               (ref[i].ok ? "rendered" : "raised " + ref[i].text);
    FAIL_CHECK(c.template_name << " / " << c.label << ": " << detail);
  }
  return agree;
}

// Every code point of the blocks that have case mappings and of some that test repr(),
// json.dumps and whitespace (Python's str methods over Unicode).
std::string unicode_sample() {
  static const std::pair<char32_t, char32_t> kBlocks[] = {
      {0x20, 0x7E},
      {0xA0, 0x58F},
      {0x10A0, 0x10FF},
      {0x13A0, 0x13FF},
      {0x1C80, 0x1CBF},
      {0x1D00, 0x1FFF},
      {0x2100, 0x218F},
      {0x24B6, 0x24E9},
      {0x2C00, 0x2D2F},
      {0xA640, 0xA7FF},
      {0xAB70, 0xABBF},
      {0xFB00, 0xFB17},
      {0xFF21, 0xFF5A},
      {0x10400, 0x1044F},
      {0x104B0, 0x104FB},
      {0x10C80, 0x10CFF},
      {0x118A0, 0x118DF},
      {0x16E40, 0x16E7F},
      {0x1D400, 0x1D4FF},
      {0x1E900, 0x1E94B},
      // controls, format characters, separators, private use, unassigned (repr escapes)
      {0x1, 0x1F},
      {0x7F, 0x9F},
      {0x600, 0x6FF},
      {0x2000, 0x206F},
      {0x3000, 0x3010},
      {0xE000, 0xE00F},
      {0xFFF0, 0xFFFF},
      {0x1F600, 0x1F64F},
      {0xE0000, 0xE0080},
      {0x10FFF0, 0x10FFFF}};
  std::string s;
  for (const auto& [a, b] : kBlocks)
    for (char32_t c = a; c <= b; ++c) llm::jinja::utf8_append(s, c);
  return s;
}

// Language-feature snippets, each rendered by both engines with `vars`.
const std::vector<std::pair<std::string, ordered_json>>& snippets() {
  static const std::vector<std::pair<std::string, ordered_json>> list = {
      {"{{ s.upper() }}|{{ s.lower() }}|{{ s.title() }}|{{ s.capitalize() }}|{{ s | title }}|"
       "{{ s | capitalize }}|{% for c in s %}{{ 'U' if c.isupper() else 'L' if c.islower() else "
       "'.' }}"
       "{% endfor %}|{{ 'ΑΣ ΑΣ. ΣΑ Σ ΑΣΑ ὈΔΥΣΣΕΎΣ' | lower }}|{{ s | length }}|{{ s[::-7] }}|{{ "
       "[s] }}|"
       "{{ s | tojson }}|{{ s | tojson(ensure_ascii=true) }}|{{ s.split() | length }}|{{ s | trim "
       "| length }}",
       {{"s", unicode_sample()}}},
      {"a\n  {% if true %}\n    b\n  {% endif %}\nc\n", {}},
      {"  {%- if true %} x {% endif -%}  \n y {# c #} \n  {#- c -#}  z", {}},
      {"{% for i in range(3) %}\n  {{ i }}\n{% endfor %}\n", {}},
      {"x {%+ if true %}y{% endif %} {% if true +%}\n z{% endif %}", {}},
      {"{% raw -%}  {{ a }} {%- endraw %}|{%- raw %} b {% endraw -%} |", {}},
      {"  {# only a comment #}\n  {% set x = 1 %}\n{{ x }}", {}},
      {"{{ '\\t\\n\\\\ \\' \\\" \\x41\\u00e9\\U0001F600 \\q \\101' }}", {}},
      {"{{ 1 }}{{ 1.0 }}{{ 1.5e3 }}{{ 0x10 }}{{ 0o17 }}{{ 0b101 }}{{ 1_000 }}{{ 10 / 4 }}", {}},
      {"{{ 2 ** 3 ** 2 }} {{ -2 ** 2 }} {{ 7 % -3 }} {{ -7.5 // 2 }} {{ 5.5 % 2 }} {{ 1e300 * 1e10 "
       "}}",
       {}},
      {"{{ 1 == 1.0 }} {{ true == 1 }} {{ 'a' < 'b' }} {{ [1, 2] < [1, 3] }} {{ (1, 2) == [1, 2] "
       "}}",
       {}},
      {"{{ 0.1 }} {{ 1/3 }} {{ 2/3 }} {{ 1e-5 }} {{ 0.0001 }} {{ 1e15 }} {{ 1e16 }} {{ -0.0 }} {{ "
       "3.14159 }}",
       {}},
      {"{{ x }}|{{ x is defined }}|{{ x | length }}|{{ x | default('d') }}|{{ x | string }}|{{ x | "
       "trim }}",
       {}},
      {"{{ d }}|{{ d.keys() | list }}|{{ d.values() | list }}|{{ d | tojson }}|{{ d['b'] }}",
       {{"d", {{"b", {1, 2.5, nullptr}}, {"a", "x\"y"}, {"c", {{"n", true}}}}}}},
      {"{{ s | length }} {{ s | upper }} {{ s[::-1] }} {{ s[1:3] }} {{ s | tojson }} {{ s | "
       "tojson(ensure_ascii=True) }}",
       {{"s", "héllo 你好 🌍"}}},
      {"{{ s.split() }} {{ s.strip() }} {{ s.lstrip() | length }} {{ s.rstrip(' \\n') }}",
       {{"s", "  a\u3000b\tc \n"}}},
      {"{{ t.startswith('ab') }} {{ t.endswith(('x', 'ef')) }} {{ t.replace('c', 'C') }} {{ "
       "t.find('d') }} "
       "{{ t.count('a') }} {{ t.upper() }} {{ t.title() }} {{ t.capitalize() }} {{ t | capitalize "
       "}} {{ t | title }}",
       {{"t", "abc-def ghi"}}},
      {"{{ '{}-{}'.format(1, 'a') }} {{ '{0}{1}{0}'.format('x', 'y') }} {{ '{a}/{b!r}'.format(a=1, "
       "b='q') }} "
       "{{ '{:>5}|{:<5}|{:^5}|{:05d}|{:.2f}|{:,}'.format('r', 'l', 'c', 42, 3.14159, 1234567) }}",
       {}},
      {"{{ '%s and %d and %r' % ('x', 3, 'y') }} {{ '%05.1f' % 2.25 }} {{ '%%' % () }}", {}},
      {"{% for x in xs %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 "
       "}}{{ loop.first }}"
       "{{ loop.last }}{{ loop.length }}{{ loop.previtem }}{{ loop.nextitem }}{{ loop.cycle('a', "
       "'b') }}{{ loop.depth }} "
       "{% endfor %}",
       {{"xs", {"p", "q", "r"}}}},
      {"{% for x in xs if x > 1 %}{{ x }}{{ loop.last }}{% else %}none{% endfor %}"
       "{% for x in [] %}{% else %}E{% endfor %}{% for a, b in [[1, 2], (3, 4)] %}{{ a + b }}{% "
       "endfor %}",
       {{"xs", {1, 2, 3}}}},
      {"{% for k in d %}{{ k }}{% endfor %}{% for k, v in d | dictsort %}{{ k }}{{ v }}{% endfor %}"
       "{% for k, v in d | items %}{{ k }}{% endfor %}",
       {{"d", {{"b", 1}, {"a", 2}}}}},
      {"{% set x = 1 %}{% for i in [1, 2] %}{{ x }}{% set x = x + 10 %}{{ x }},{% endfor %}{{ x }}"
       "{% for i in [1] %}{% set y = 5 %}{% endfor %}{{ y }}",
       {}},
      {"{% set ns = namespace(a=1, items=[]) %}{% for i in range(3) %}{% set ns.a = ns.a * 2 %}"
       "{% set ns.items = ns.items + [i] %}{% endfor %}{{ ns.a }} {{ ns.items }} {{ ns['a'] }}",
       {}},
      {"{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set t = 1, %}{{ t }}{% set x %}block {{ a }}{% "
       "endset %}[{{ x }}]"
       "{% set y | upper | trim %} up {% endset %}[{{ y }}]",
       {}},
      {"{% macro m(a, b=2, c=a*3) -%}\n[{{ a }},{{ b }},{{ c }}]\n{%- endmacro %}{{ m(1) }}{{ m(1, "
       "c=0) }}{{ m(b=5, a=4) }}"
       "{% macro v() %}{{ varargs }}{{ kwargs }}{% endmacro %}{{ v(1, 2, k=3) }}{{ m }}",
       {}},
      {"{% macro outer() %}({{ caller() }}){% endmacro %}{% call outer() %}inside {{ 1 + 1 }}{% "
       "endcall %}"
       "{% macro each(xs) %}{% for x in xs %}{{ caller(x) }}{% endfor %}{% endmacro %}"
       "{% call(item) each([1, 2]) %}<{{ item }}>{% endcall %}",
       {}},
      {"{% filter upper %}a {{ 'b' }}{% endfilter %}{% filter replace('x', 'y') | trim %}  xx  {% "
       "endfilter %}",
       {}},
      {"{{ xs | map('upper') | list }} {{ xs | map('length') | join(',') }} {{ xs | "
       "select('equalto', 'b') | list }} "
       "{{ xs | reject('equalto', 'b') | list }} {{ xs | reverse | list }} {{ xs | "
       "sort(reverse=true) }} "
       "{{ xs | first }} {{ xs | last }} {{ xs | min }} {{ xs | max }} {{ xs | unique | list }} {{ "
       "xs | list }}",
       {{"xs", {"b", "A", "c", "b"}}}},
      {"{{ ps | selectattr('age', 'gt', 20) | map(attribute='name') | list }} {{ ps | "
       "rejectattr('age') | list }} "
       "{{ ps | sort(attribute='age') | map(attribute='name') | join }} {{ ps | "
       "sum(attribute='age') }} "
       "{{ ps | map(attribute='zip', default='?') | list }} {{ ps | selectattr('age', 'defined') | "
       "list | length }}",
       {{"ps",
         {{{"name", "x"}, {"age", 30}},
          {{"name", "y"}, {"age", 10}},
          {{"name", "z"}, {"age", 0}}}}}},
      {"{{ 3.7 | int }} {{ '42' | int }} {{ '4.9' | int }} {{ 'z' | int(7) }} {{ '0x1A' | int(0, "
       "16) }} {{ '3' | float }} "
       "{{ 2.675 | round(2) }} {{ 2.5 | round }} {{ 7 | round }} {{ 2.1 | round(method='ceil') }} "
       "{{ -4 | abs }} "
       "{{ 'a b  c' | wordcount }} {{ [1, 2] | sum }} {{ 'x' | center(5) }}|",
       {}},
      {"{{ 'a\\n\\nb\\nc' | indent }}|{{ 'a\\nb' | indent(2, true) }}|{{ 'a\\n\\nb' | indent('> ', "
       "blank=true) }}",
       {}},
      {"{{ ('<i>' | safe) + '&' }} {{ '&' + ('<i>' | safe) }} {{ '<x>' | escape }} {{ ('<i>' | "
       "safe) ~ '<b>' }} "
       "{{ ('a' | safe) | trim + '<' }} {{ ['<', '>'] | join('&') }} {{ '<' | e | length }}",
       {}},
      {"{{ v | tojson }} {{ v | tojson(indent=2) }} {{ v | tojson(indent=4, sort_keys=true) }} "
       "{{ v | tojson(separators=(',', ':')) }} {{ v | tojson(ensure_ascii=false) }} {{ v | "
       "tojson(2) }}",
       {{"v",
         {{"z", {1, 2}},
          {"a", {{"é", nullptr}}},
          {"e", ordered_json::array()},
          {"o", ordered_json::object()}}}}},
      {"{{ 1 is odd }}{{ 1 is even }}{{ 4 is divisibleby 2 }}{{ none is none }}{{ 1 is number }}{{ "
       "true is number }}"
       "{{ 1 is integer }}{{ 1.0 is float }}{{ true is boolean }}{{ false is false }}{{ 1 is true "
       "}}{{ 'A' is upper }}"
       "{{ 'a' is lower }}{{ [] is sequence }}{{ {} is sequence }}{{ 'x' is sequence }}{{ x is "
       "sequence }}{{ 1 is sequence }}"
       "{{ {} is mapping }}{{ [] is mapping }}{{ x is iterable }}{{ 1 is iterable }}{{ 'x' is in "
       "'xyz' }}{{ 1 is eq 1 }}"
       "{{ 2 is gt 1 }}{{ range is callable }}{{ none is sameas none }}{{ 'upper' is filter }}{{ "
       "'odd' is test }}"
       "{{ x is undefined }}{{ 'x' is escaped }}{{ ('x' | safe) is escaped }}",
       {}},
      {"{{ [1, 2, 3][1:] }} {{ [1, 2, 3][:-1] }} {{ [1, 2, 3][::2] }} {{ [1, 2, 3][5:] }} {{ "
       "'abc'[-1] }} {{ [1][5] }} "
       "{{ 'abc'[1:100] }} {{ (1, 2, 3)[1:] }} {{ none[1:] }}|{{ messages[-1:] }}",
       {}},
      {"{{ [] | first }}|{{ [] | last }}|{{ ''.join(['a', 'b']) }}|{{ ', '.join(('x', 'y')) }}|{{ "
       "'a-b-c'.split('-', 1) }}"
       "|{{ 'a-b-c'.rsplit('-', 1) }}|{{ 'a\\nb\\r\\nc'.splitlines() }}|{{ 'abc'.partition('b') }}",
       {}},
      {"{{ d.get('a') }} {{ d.get('zz') }} {{ d.get('zz', 0) }} {{ d.items is callable }} {{ "
       "d['items'] }} {{ d.items() | list | length }}",
       {{"d", {{"a", 1}, {"items", "key named items"}}}}},
      // (list.pop / list.clear are left out: jinja2 3.1.2 allows them, 3.1.5+ refuses them.)
      {"{{ l.index(2) }} {{ l.count(2) }} {{ l.copy() }}", {{"l", {1, 2, 3, 2}}}},
      {"{% set d = {'k': 1, 2: 'two', none: 'n'} %}{{ d }} {{ d[2] }} {{ d | tojson }} {{ "
       "dict(a=1, b=[2]) }} "
       "{{ {'a': 1}.items() | list }} {{ namespace(x=1).x }}",
       {}},
      {"{{ 'a' ~ x ~ 'b' }}{% if x %}y{% elif not x %}n{% else %}e{% endif %}"
       "{{ 'T' if x is not defined else 'F' }}{{ (x or 'default') }}",
       {}},
      {"{{ strftime_now('%Y-%m-%d %H:%M:%S %A %a %B %b %d %j %p %I %y %%') }}", {}},
      {"{%- generation -%} gen {{ 1 }} {%- endgeneration -%}|{% generation %}{% set inner = 1 %}{% "
       "endgeneration %}{{ inner }}",
       {}},
      {"{{ messages }} {{ tools }} {{ documents }} {{ add_generation_prompt }} {{ bos_token }}{{ "
       "eos_token }}",
       {}},
      {"{{ raise_exception('custom failure ' ~ 42) }}", {}},
      {"{{ x.attr }}", {}},
      {"{{ 'a' + 1 }}", {}},
      {"{{ [1].append(2) }}", {}},
      {"{{ {'a': 1}.update({}) }}", {}},
      {"{{ 1 / 0 }}", {}},
      {"{% for x in none %}{% endfor %}", {}},
      {"{{ 'x' | no_such_filter }}", {}},
      {"{% if false %}{{ 'x' | no_such_filter }}{% endif %}ok", {}},
      {"{% if true %}{{ 'x' | no_such_filter }}{% endif %}", {}},
      {"{{ x | tojson }}", {}},
      {"{{ [1, 2] | length + 'a' }}", {}},
      {"{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}", {}},
      {"{% macro m() %}{% endmacro %}{{ m(k=1) }}", {}},
      {"{% for a, b in [[1, 2, 3]] %}{% endfor %}", {}},
      {"{% set x = 1 %}{% set x.y = 2 %}", {}},
      {"{{ range(200000) | length }}", {}},
      {"{{ 'ab'.format_map is defined }}{{ 'ab'.nonexistent is defined }}{{ 'ab'.upper is defined "
       "}}",
       {}},
      {"{{ (1, 2) + [3] }}", {}},
      {"{{ 1 < 'a' }}", {}},
      {"{% if x is string %}s{% elif x is mapping %}m{% elif x is iterable %}i{% else %}o{% endif "
       "%}",
       {{"x", {1}}}},
      // Found by differential fuzzing against jinja2:
      {"{% for i in [1, 2] %}{% break %}{% else %}E{% endfor %}|{% for i in [1, 2] %}{% continue "
       "%}{% else %}F"
       "{% endfor %}|{% for i in [1, 2] %}{{ i }}{% if i == 2 %}{% break %}{% endif %}{% else "
       "%}G{% endfor %}",
       {}},
      {"{% for i in [1, 2, 3] %}{% set y %}a{% if i == 2 %}{% break %}{% endif %}{% endset %}{{ y "
       "}}{% endfor %}"
       "{% for i in [1, 2] %}{% filter upper %}b{% continue %}{% endfilter %}{% endfor %}",
       {}},
      {"{% for i in [1] %}[{{ w }}]{% endfor %}{% set w = 2 %}{{ w }}|{{ v }}{% set v = 4 %}{{ v "
       "}}|"
       "{% if false %}{% set x = 3 %}{% endif %}{{ x }}|{% for i in [1] %}{% for j in [1] %}({{ x "
       "}})"
       "{% endfor %}{% set x = 5 %}{% endfor %}|{% macro m() %}{{ u }}{% endmacro %}{{ m() }}{% "
       "set u = 6 %}"
       "{{ m() }}|{% if true %}{% set t = 1 %}{% elif false %}{% set t = 2 %}{% else %}{% set t = "
       "3 %}"
       "{% endif %}{% for i in [1] %}{{ t }}{% endfor %}",
       {{"w", 7}, {"v", 8}, {"x", 1}, {"u", 9}, {"t", 0}}},
      {"{{ 2.5 is even }}{{ 4.0 is even }}{{ 3 is odd }}{{ -3 is odd }}{{ 7.5 is divisibleby 2.5 }}"
       "{{ 'x%sy' % ['a'] }}{{ 'ab' % {} }}{{ '%s' % x }}",
       {}},
      {"{{ none[1:] }}|{{ none[1:] | length }}|{% for a in [1][5:] %}{% endfor %}{{ 'ab'[1:] }}",
       {}},
      {"{% macro m(kwargs=1) %}{{ kwargs }}{% endmacro %}{{ m() }}{% macro v() %}{{ kwargs }}{% "
       "endmacro %}"
       "{% call v() %}x{% endcall %}|{{ -12914704656053544960.0 % 7 }} {{ -7.5 // 2 }} {{ 7.0 % -2 "
       "}} {{ -0.0 // 1 }}",
       {}},
      {"{% macro m(caller) %}{{ caller() }}{% endmacro %}", {}},
      {"{{ content | trim | replace('\\n', ' ') }}{{ content.strip()[:5] }}",
       {{"content", "  line1\nline2  "}}},
      {"{{ msg.content.split('</think>')[-1].lstrip('\\n') }}|{{ (msg.content.split('<think>')[1] "
       "if '<think>' in msg.content) }}",
       {{"msg", {{"content", "<think>\nreasoning here\n</think>\n\nThe answer."}}}}},
  };
  return list;
}

// Conversations rendered through every real template.
ordered_json tools_json() {
  return ordered_json::parse(R"([
    {"type": "function", "function": {"name": "get_weather",
      "description": "Get the current weather for a city.",
      "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "description": "City name, e.g. \"Paris\""},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "description": "Temperature unit"},
        "days": {"type": "integer", "description": "Forecast days", "default": 1}},
        "required": ["city"]}}},
    {"type": "function", "function": {"name": "search_web",
      "description": "Search the web & return results <fast>. Über-simple.",
      "parameters": {"type": "object", "properties": {
        "query": {"type": "string", "description": "What to look for"},
        "limit": {"type": "number", "minimum": 0.5, "maximum": 100},
        "filters": {"type": "array", "items": {"type": "string"}},
        "options": {"type": "object", "properties": {"safe": {"type": "boolean"}}}},
        "required": ["query", "limit"]}}}
  ])");
}

std::vector<RefCase> conversations(const std::string& tmpl) {
  auto j = [](const char* s) { return ordered_json::parse(s); };
  ordered_json tools = tools_json();
  std::vector<RefCase> c;
  auto add = [&](const char* label, ordered_json msgs, ordered_json t, bool gen,
                 ordered_json extra = ordered_json::object()) {
    c.push_back({label, tmpl, std::move(msgs), std::move(t), gen, std::move(extra)});
  };
  add("system+user", j(R"([{"role":"system","content":"You are a helpful assistant."},
                          {"role":"user","content":"Hello! How are you?"}])"),
      nullptr, true);
  add("user, no generation prompt", j(R"([{"role":"user","content":"What is 2+2?"}])"), nullptr,
      false);
  add("multi-turn",
      j(R"([{"role":"system","content":"You are terse."},{"role":"user","content":"Hi"},
                         {"role":"assistant","content":"Hello! How can I help?"},
                         {"role":"user","content":"Tell me a joke."}])"),
      nullptr, true);
  add("multi-turn ending with assistant", j(R"([{"role":"user","content":"Hi"},
                         {"role":"assistant","content":"Hello!"},{"role":"user","content":"Bye"},
                         {"role":"assistant","content":"Goodbye."}])"),
      nullptr, false);
  add("tools listed", j(R"([{"role":"system","content":"Use tools when needed."},
                           {"role":"user","content":"What's the weather in Paris?"}])"),
      tools, true);
  add("tool call (dict arguments) + result",
      j(R"([{"role":"user","content":"What's the weather in Paris?"},
      {"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function",
        "function":{"name":"get_weather","arguments":{"city":"Paris","unit":"celsius"}}}]},
      {"role":"tool","tool_call_id":"call_1","name":"get_weather","content":"{\"temperature\": 21, \"condition\": \"sunny\"}"}])"),
      tools, true);
  add("tool call (string arguments) + result",
      j(R"([{"role":"system","content":"You can call tools."},
      {"role":"user","content":"Weather in Paris?"},
      {"role":"assistant","content":"","tool_calls":[{"id":"call_1","type":"function",
        "function":{"name":"get_weather","arguments":"{\"city\": \"Paris\"}"}}]},
      {"role":"tool","tool_call_id":"call_1","content":"21 degrees"}])"),
      tools, true);
  add("parallel tool calls, answer, follow-up",
      j(R"([{"role":"user","content":"Weather in Paris and London?"},
      {"role":"assistant","content":"Let me check.","tool_calls":[
        {"id":"call_a","type":"function","function":{"name":"get_weather","arguments":{"city":"Paris"}}},
        {"id":"call_b","type":"function","function":{"name":"get_weather","arguments":{"city":"London","days":2}}}]},
      {"role":"tool","tool_call_id":"call_a","name":"get_weather","content":"sunny"},
      {"role":"tool","tool_call_id":"call_b","name":"get_weather","content":"rainy"},
      {"role":"assistant","content":"Paris is sunny; London is rainy."},
      {"role":"user","content":"Thanks!"}])"),
      tools, true);
  add("content-part arrays",
      j(R"([{"role":"system","content":[{"type":"text","text":"You are terse."}]},
      {"role":"user","content":[{"type":"text","text":"Describe"},{"type":"text","text":" this, please."}]}])"),
      nullptr, true);
  add("unicode and markup",
      j(R"([{"role":"user","content":"Héllo — 你好 🌍 <b>&amp;</b> \"quoted\" 'single'\n  indented\ttab  "},
      {"role":"assistant","content":"Ça va? ✓ <ok>"},{"role":"user","content":"Again"}])"),
      nullptr, true);
  add("reasoning, thinking off", j(R"([{"role":"user","content":"What is 2+2?"},
      {"role":"assistant","content":"The answer is 4.","reasoning_content":"2+2=4, simple."},
      {"role":"user","content":"And 3+3?"}])"),
      nullptr, true, j(R"({"enable_thinking": false})"));
  add("thinking on", j(R"([{"role":"system","content":"Think step by step."},
      {"role":"user","content":"Why is the sky blue?"}])"),
      nullptr, true, j(R"({"enable_thinking": true})"));
  add("assistant with <think> in content", j(R"([{"role":"user","content":"Q1"},
      {"role":"assistant","content":"<think>\nhmm\n</think>\n\nA1"},{"role":"user","content":"Q2"}])"),
      nullptr, true);
  add("tool call, 9-char ids, empty content",
      j(R"([{"role":"user","content":"Weather in Oslo for 3 days?"},
      {"role":"assistant","content":"","tool_calls":[{"id":"a1B2c3D4e","type":"function",
        "function":{"name":"get_weather","arguments":{"city":"Oslo","days":3}}}]},
      {"role":"tool","tool_call_id":"a1B2c3D4e","name":"get_weather","content":"snow, -5 C"},
      {"role":"assistant","content":"Snowy, around -5 C."},{"role":"user","content":"Thanks"}])"),
      tools, true);
  add("rich tool schema", j(R"([{"role":"user","content":"Book it."}])"), j(R"([
    {"type":"function","function":{"name":"book_flight","description":"Book a flight.\nSecond line.",
      "parameters":{"type":"object","additionalProperties":false,"properties":{
        "passengers":{"type":"array","description":"Who flies","items":{"type":"object",
          "properties":{"name":{"type":"string"},"age":{"type":"integer","minimum":0}},"required":["name"]}},
        "class":{"type":"string","enum":["economy","business"],"default":"economy"},
        "budget":{"type":["number","null"],"default":0.75},
        "flexible":{"type":"boolean","default":true},
        "when":{"anyOf":[{"type":"string","format":"date"},{"type":"null"}]}},
        "required":["passengers"]}}}])"),
      true);
  return c;
}

// Every reference case of this file — snippets, and the real templates when ../shared has
// them — rendered by one python process on first use.
struct Reference {
  std::map<std::string, std::string> templates;
  std::vector<RefCase> snippet_cases, builtin_cases, template_cases;
  std::vector<Outcome> snippet_ref, builtin_ref, template_ref;
  size_t real_templates = 0;
  double seconds = 0;
  std::string error;  // why there is no reference
};

const Reference& reference() {
  static const Reference ref = [] {
    Reference r;
    if (!have_jinja2()) {
      r.error = "python3 with jinja2 not available (apt install python3-jinja2)";
      return r;
    }
    for (size_t i = 0; i < snippets().size(); ++i) {
      std::string name = "snippet" + std::to_string(i);
      r.templates[name] = snippets()[i].first;
      ordered_json vars =
          snippets()[i].second.is_object() ? snippets()[i].second : ordered_json::object();
      r.snippet_cases.push_back({name, name, ordered_json::array(), nullptr, false, vars});
    }
    for (const auto& name : ChatTemplate::builtin_names()) {
      r.templates["builtin:" + name] = ChatTemplate::builtin(name).source();
      for (auto& c : conversations("builtin:" + name)) r.builtin_cases.push_back(std::move(c));
    }
    if (std::string dir = llm::test::shared_file("templates"); !dir.empty()) {
      for (const auto& entry : std::filesystem::directory_iterator(dir)) {
        if (entry.path().extension() != ".jinja") continue;
        std::string name = entry.path().stem().string();
        r.templates[name] = llm::test::read_text(entry.path().string());
        ++r.real_templates;
        for (auto& c : conversations(name)) r.template_cases.push_back(std::move(c));
      }
    }
    std::vector<RefCase> all = r.snippet_cases;
    all.insert(all.end(), r.builtin_cases.begin(), r.builtin_cases.end());
    all.insert(all.end(), r.template_cases.begin(), r.template_cases.end());
    auto t0 = std::chrono::steady_clock::now();
    auto out = run_reference(r.templates, all, &r.error);
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!out) return r;
    if (out->size() != all.size()) {
      r.error = "reference renderer returned " + std::to_string(out->size()) + " results for " +
                std::to_string(all.size()) + " cases";
      return r;
    }
    auto it = out->begin();
    r.snippet_ref.assign(it, it + r.snippet_cases.size());
    it += r.snippet_cases.size();
    r.builtin_ref.assign(it, it + r.builtin_cases.size());
    it += r.builtin_cases.size();
    r.template_ref.assign(it, out->end());
    return r;
  }();
  return ref;
}

}  // namespace

TEST_CASE("jinja: feature snippets match jinja2 byte for byte") {
  const Reference& ref = reference();
  if (!ref.error.empty()) LLM_SKIP(ref.error);
  size_t agree = compare_all(ref.templates, ref.snippet_cases, ref.snippet_ref, nullptr);
  MESSAGE(agree << " / " << ref.snippet_cases.size() << " snippets agree with jinja2 ("
                << python_with_jinja2() << ", " << ref.seconds << " s for all reference cases)");
  CHECK(agree == ref.snippet_cases.size());
}

TEST_CASE("chat template: the built-in fallbacks render as jinja2 renders them") {
  const Reference& ref = reference();
  if (!ref.error.empty()) LLM_SKIP(ref.error);
  size_t agree = compare_all(ref.templates, ref.builtin_cases, ref.builtin_ref, nullptr);
  CHECK(agree == ref.builtin_cases.size());
  size_t errors = 0;
  for (const auto& o : ref.builtin_ref) errors += !o.ok;
  CHECK(errors == 0);  // the fallbacks accept every conversation shape
}

TEST_CASE("chat templates: the 68 real templates match jinja2 byte for byte") {
  if (llm::test::shared_file("templates").empty()) LLM_SKIP("../shared/templates not present");
  const Reference& ref = reference();
  if (!ref.error.empty()) LLM_SKIP(ref.error);
  CHECK(ref.real_templates == 68);
  auto t0 = std::chrono::steady_clock::now();
  std::map<std::string, int> failures;
  size_t agree = compare_all(ref.templates, ref.template_cases, ref.template_ref, &failures);
  double ours = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  size_t errors = 0;
  for (const auto& o : ref.template_ref) errors += !o.ok;
  MESSAGE(agree << " / " << ref.template_cases.size()
                << " template x conversation cases agree with jinja2 ("
                << ref.real_templates - failures.size() << " / " << ref.real_templates
                << " templates fully); jinja2 raised in " << errors << " cases");
  MESSAGE("ours (parse + render, " << ref.template_cases.size() << " cases) " << ours << " s");
  for (const auto& [name, n] : failures) MESSAGE("mismatches in " << name << ": " << n);
  CHECK(agree == ref.template_cases.size());
}
