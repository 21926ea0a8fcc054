// Stop strings across token boundaries, and tool calls parsed back from model text.
#include <doctest/doctest.h>

#include "server/text_stream.h"
#include "server/tool_calls.h"

using namespace llm;

namespace {
// Feeds pieces one by one; returns what a client would have seen.
std::string feed(StopMatcher& m, const std::vector<std::string>& pieces) {
  std::string out;
  for (const std::string& p : pieces) out += m.push(p);
  return out + m.flush();
}
}  // namespace

TEST_CASE("stop strings never leak, even split across pieces") {
  StopMatcher a({"\n\nUser:"});
  CHECK(feed(a, {"Hello", " there", "\n", "\nUs", "er:", " more"}) == "Hello there");
  CHECK(a.stopped());
  CHECK(a.matched() == "\n\nUser:");

  StopMatcher b({"END"});
  CHECK(b.push("abcE") == "abc");  // "E" held back: it may start "END"
  CHECK(b.push("NX") == "ENX");    // it did not
  CHECK(b.push("xxEN") == "xx");
  CHECK(b.push("D tail") == "");
  CHECK(b.stopped());
  CHECK(b.push("after") == "");
}

TEST_CASE("stop: earliest of several, held text released at the end") {
  StopMatcher m({"bb", "abc"});
  CHECK(feed(m, {"xxab", "c bb"}) == "xx");
  CHECK(m.matched() == "abc");
  StopMatcher n({"zzz"});
  CHECK(feed(n, {"hello z", "z"}) == "hello zz");
  CHECK_FALSE(n.stopped());
  StopMatcher none({});
  CHECK(feed(none, {"a", "b"}) == "ab");
}

TEST_CASE("incomplete UTF-8 tails") {
  CHECK(incomplete_utf8_tail("abc") == 0);
  CHECK(incomplete_utf8_tail("a\xE2\x82") == 2);
  CHECK(incomplete_utf8_tail("a\xE2\x82\xAC") == 0);
  CHECK(incomplete_utf8_tail("\xF0\x9F\xA6") == 3);
  CHECK(incomplete_utf8_tail("\xC3") == 1);
}

TEST_CASE("tool calls: Hermes / Qwen tags") {
  auto r = parse_tool_calls(
      "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n"
      "<tool_call>{\"name\": \"get_time\", \"arguments\": {}}</tool_call>",
      ToolStyle::Hermes);
  REQUIRE(r.calls.size() == 2);
  CHECK(r.calls[0].name == "get_weather");
  CHECK(nlohmann::json::parse(r.calls[0].arguments)["city"] == "Paris");
  CHECK(r.calls[1].name == "get_time");
  CHECK(r.content == "Let me check.");
  auto bad = parse_tool_calls("<tool_call>{not json}</tool_call>", ToolStyle::Hermes);
  CHECK(bad.calls.empty());
  CHECK(bad.content == "<tool_call>{not json}</tool_call>");
}

TEST_CASE("tool calls: Llama 3 JSON and Mistral") {
  auto l = parse_tool_calls("<|python_tag|>{\"name\": \"f\", \"parameters\": {\"x\": 1}}", ToolStyle::Llama3);
  REQUIRE(l.calls.size() == 1);
  CHECK(l.calls[0].arguments == "{\"x\":1}");
  auto plain = parse_tool_calls("The answer is 4.", ToolStyle::Llama3);
  CHECK(plain.calls.empty());
  CHECK(plain.content == "The answer is 4.");
  auto m = parse_tool_calls("[TOOL_CALLS][{\"name\": \"a\", \"arguments\": {}}, {\"name\": \"b\", \"arguments\": {\"y\": \"z\"}}]",
                            ToolStyle::Mistral);
  REQUIRE(m.calls.size() == 2);
  CHECK(m.calls[1].name == "b");
}

TEST_CASE("tool calls: what streaming holds back") {
  CHECK(may_start_tool_call("", ToolStyle::Hermes));
  CHECK(may_start_tool_call("  <tool_", ToolStyle::Hermes));
  CHECK_FALSE(may_start_tool_call("Hello", ToolStyle::Hermes));
  CHECK(may_start_tool_call("{\"na", ToolStyle::Llama3));
  CHECK_FALSE(may_start_tool_call("Sure", ToolStyle::Llama3));
  CHECK(tool_style_of_template("{{ '<tool_call>' }}") == ToolStyle::Hermes);
  CHECK(tool_style_of_template("<|python_tag|>") == ToolStyle::Llama3);
  CHECK(tool_style_of_template("[TOOL_CALLS]") == ToolStyle::Mistral);
}
