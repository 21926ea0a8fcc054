// The OpenAI request/response rules, without sockets: parameter validation with
// OpenAI's messages and params, defaults, and the exact shape of responses and chunks.
#include <doctest/doctest.h>

#include "server/openai_api.h"

using namespace llm::api;

namespace {

ApiError error_of(const std::string& body, bool chat = true) {
  try {
    if (chat)
      parse_chat_request(body);
    else
      parse_completion_request(body);
  } catch (const ApiException& e) {
    return e.error();
  }
  FAIL("expected an ApiException for: " << body);
  return {};
}

const char* kMsgs = R"("messages":[{"role":"user","content":"hi"}])";

std::string chat(const std::string& extra) {
  return std::string("{\"model\":\"m\",") + kMsgs + (extra.empty() ? "" : "," + extra) + "}";
}

}  // namespace

TEST_CASE("chat request: defaults follow OpenAI") {
  ChatRequest r = parse_chat_request(chat(""));
  CHECK(r.gen.model == "m");
  CHECK(r.gen.n == 1);
  CHECK(r.gen.temperature == doctest::Approx(1.0));
  CHECK(r.gen.top_p == doctest::Approx(1.0));
  CHECK_FALSE(r.gen.max_tokens.has_value());
  CHECK_FALSE(r.gen.stream);
  CHECK(r.messages.size() == 1);
  CHECK(r.messages[0]["content"] == "hi");
  CHECK(r.response_format == ResponseFormat::Text);
}

TEST_CASE("chat request: every field parsed") {
  ChatRequest r = parse_chat_request(chat(
      R"("max_completion_tokens":7,"max_tokens":99,"n":2,"stream":true,"stream_options":{"include_usage":true},)"
      R"("stop":["a","b"],"temperature":0.5,"top_p":0.9,"top_k":40,"min_p":0.1,"presence_penalty":1.5,)"
      R"("frequency_penalty":-1,"logit_bias":{"42":-100,"7":3.5},"seed":1234,"logprobs":true,"top_logprobs":5,)"
      R"("user":"u1","unknown_field":{"x":1},"response_format":{"type":"json_object"})"));
  CHECK(r.gen.max_tokens == 7);  // max_completion_tokens wins
  CHECK(r.gen.n == 2);
  CHECK(r.gen.stream);
  CHECK(r.gen.include_usage);
  CHECK(r.gen.stop == std::vector<std::string>{"a", "b"});
  CHECK(r.gen.temperature == doctest::Approx(0.5));
  CHECK(r.gen.top_k == 40);
  CHECK(r.gen.min_p == doctest::Approx(0.1));
  CHECK(r.gen.presence_penalty == doctest::Approx(1.5));
  CHECK(r.gen.frequency_penalty == doctest::Approx(-1));
  REQUIRE(r.gen.logit_bias.size() == 2);
  CHECK(r.gen.seed == 1234u);
  CHECK(r.gen.logprobs);
  CHECK(r.gen.top_logprobs == 5);
  CHECK(r.response_format == ResponseFormat::JsonObject);
}

TEST_CASE("chat request: content parts, developer role, tool calls") {
  ChatRequest r = parse_chat_request(
      R"({"model":"m","messages":[{"role":"developer","content":"be brief"},)"
      R"({"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},)"
      R"({"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{\"x\":1}"}}]},)"
      R"({"role":"tool","tool_call_id":"call_1","content":"42"}],)"
      R"("tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],"tool_choice":"required"})");
  CHECK(r.messages[0]["role"] == "system");
  CHECK(r.messages[1]["content"] == "ab");
  CHECK(r.messages[2]["content"] == "");
  CHECK(r.messages[2]["tool_calls"][0]["function"]["arguments"]["x"] == 1);
  CHECK(r.tools.size() == 1);
  CHECK(r.tool_choice == "required");
}

TEST_CASE("chat request: errors name the parameter") {
  struct Case {
    std::string body;
    std::string param;
  };
  const Case cases[] = {
      {R"({"messages":[{"role":"user","content":"x"}]})", "model"},
      {R"({"model":"m"})", "messages"},
      {R"({"model":"m","messages":[]})", "messages"},
      {R"({"model":"m","messages":"hi"})", "messages"},
      {R"({"model":"m","messages":[{"content":"x"}]})", "messages[0].role"},
      {R"({"model":"m","messages":[{"role":"wizard","content":"x"}]})", "messages[0].role"},
      {R"({"model":"m","messages":[{"role":"user"}]})", "messages[0].content"},
      {R"({"model":"m","messages":[{"role":"user","content":[{"type":"image_url"}]}]})",
       "messages[0].content[0].type"},
      {R"({"model":"m","messages":[{"role":"tool","content":"x"}]})", "messages[0].tool_call_id"},
      {chat(R"("temperature":3)"), "temperature"},
      {chat(R"("temperature":"hot")"), "temperature"},
      {chat(R"("top_p":1.5)"), "top_p"},
      {chat(R"("n":0)"), "n"},
      {chat(R"("max_tokens":0)"), "max_tokens"},
      {chat(R"("max_tokens":1.5)"), "max_tokens"},
      {chat(R"("stop":["a","b","c","d","e"])"), "stop"},
      {chat(R"("stop":5)"), "stop"},
      {chat(R"("presence_penalty":-3)"), "presence_penalty"},
      {chat(R"("logit_bias":{"abc":1})"), "logit_bias"},
      {chat(R"("logit_bias":{"1":101})"), "logit_bias"},
      {chat(R"("top_logprobs":3)"), "top_logprobs"},
      {chat(R"("logprobs":true,"top_logprobs":21)"), "top_logprobs"},
      {chat(R"("stream_options":{"include_usage":true})"), "stream_options"},
      {chat(R"("response_format":{"type":"xml"})"), "response_format.type"},
      {chat(R"("response_format":{"type":"json_schema"})"), "response_format.json_schema"},
      {chat(R"("tool_choice":"required")"), "tool_choice"},
      {chat(R"("tools":[{"type":"function","function":{}}])"), "tools[0].function.name"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.body);
    ApiError e = error_of(c.body);
    CHECK(e.status == 400);
    CHECK(e.type == "invalid_request_error");
    CHECK(e.param == c.param);
    CHECK_FALSE(e.message.empty());
  }
}

TEST_CASE("invalid JSON and non-object bodies are 400 with a null param") {
  for (std::string body : {"{", "not json", "[1,2]", "\"s\"", ""}) {
    CAPTURE(body);
    ApiError e = error_of(body);
    CHECK(e.status == 400);
    CHECK(e.param.empty());
    nlohmann::ordered_json j = e.to_json();
    CHECK(j["error"]["param"].is_null());
    CHECK(j["error"]["code"].is_null());
    CHECK(j["error"]["type"] == "invalid_request_error");
  }
}

TEST_CASE("completion request: prompt forms and defaults") {
  CompletionRequest a = parse_completion_request(R"({"model":"m","prompt":"x"})");
  CHECK(a.prompts == std::vector<std::string>{"x"});
  CHECK(a.gen.max_tokens == 16);
  CompletionRequest b = parse_completion_request(R"({"model":"m","prompt":["x","y"],"max_tokens":3})");
  CHECK(b.prompts.size() == 2);
  CompletionRequest c = parse_completion_request(R"({"model":"m","prompt":[1,2,3]})");
  REQUIRE(c.prompt_tokens.size() == 1);
  CHECK(c.prompt_tokens[0] == std::vector<int32_t>{1, 2, 3});
  CompletionRequest d = parse_completion_request(R"({"model":"m","prompt":[[1],[2,3]],"logprobs":2,"echo":true})");
  CHECK(d.prompt_tokens.size() == 2);
  CHECK(d.logprobs == 2);
  CHECK(d.echo);
  CHECK(error_of(R"({"model":"m"})", false).param == "prompt");
  CHECK(error_of(R"({"model":"m","prompt":{}})", false).param == "prompt");
  CHECK(error_of(R"({"model":"m","prompt":[-1]})", false).param == "prompt");
  CHECK(error_of(R"({"model":"m","prompt":"x","logprobs":6})", false).param == "logprobs");
}

TEST_CASE("chat completion response shape") {
  Choice c;
  c.text = "hello";
  c.finish_reason = "stop";
  Usage u;
  u.prompt_tokens = 5;
  u.completion_tokens = 2;
  nlohmann::ordered_json j = chat_completion_json("chatcmpl-1", 100, "m", {c}, u);
  CHECK(j["object"] == "chat.completion");
  CHECK(j["choices"][0]["message"]["role"] == "assistant");
  CHECK(j["choices"][0]["message"]["content"] == "hello");
  CHECK(j["choices"][0]["finish_reason"] == "stop");
  CHECK(j["choices"][0]["logprobs"].is_null());
  CHECK(j["usage"]["total_tokens"] == 7);

  Choice t;
  t.tool_calls.push_back({"call_1", "get_weather", R"({"city":"Paris"})"});
  t.finish_reason = "tool_calls";
  nlohmann::ordered_json k = chat_completion_json("chatcmpl-2", 100, "m", {t}, u);
  CHECK(k["choices"][0]["message"]["content"].is_null());
  CHECK(k["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "get_weather");
  CHECK(k["choices"][0]["message"]["tool_calls"][0]["type"] == "function");
}

TEST_CASE("stream chunks: role first, content deltas, finish, usage chunk") {
  ChatDelta first;
  first.role = true;
  nlohmann::ordered_json a = chat_chunk_json("id", 1, "m", first, true);
  CHECK(a["object"] == "chat.completion.chunk");
  CHECK(a["choices"][0]["delta"]["role"] == "assistant");
  CHECK(a["choices"][0]["finish_reason"].is_null());
  CHECK(a.contains("usage"));
  CHECK(a["usage"].is_null());

  ChatDelta fin;
  fin.finish_reason = "length";
  nlohmann::ordered_json b = chat_chunk_json("id", 1, "m", fin, false);
  CHECK(b["choices"][0]["delta"].empty());
  CHECK(b["choices"][0]["finish_reason"] == "length");
  CHECK_FALSE(b.contains("usage"));

  Usage u;
  u.prompt_tokens = 3;
  u.completion_tokens = 4;
  nlohmann::ordered_json c = chat_usage_chunk_json("id", 1, "m", u);
  CHECK(c["choices"].empty());
  CHECK(c["usage"]["total_tokens"] == 7);
  CHECK(sse_event(c).rfind("data: {", 0) == 0);
  CHECK(sse_event(c).substr(sse_event(c).size() - 2) == "\n\n");
}

TEST_CASE("logprobs: partial UTF-8 tokens stay valid JSON and keep their bytes") {
  Choice c;
  c.finish_reason = "stop";
  c.has_logprobs = true;
  c.logprobs.push_back({"\xE2\x82", -0.5f, {{"\xE2\x82", -0.5f}, {"a", -2.0f}}});
  nlohmann::ordered_json j = chat_completion_json("id", 1, "m", {c}, Usage{});
  const nlohmann::json& t = j["choices"][0]["logprobs"]["content"][0];
  CHECK(t["bytes"] == nlohmann::ordered_json::array({0xE2, 0x82}));
  CHECK(t["top_logprobs"].size() == 2);
  CHECK_NOTHROW((void)j.dump());
}
