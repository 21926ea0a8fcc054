// The OpenAI API surface as pure functions: request bodies → validated requests,
// results → response JSON and server-sent-event chunks, errors → OpenAI's envelope.
// No sockets here, so every rule is testable directly.
// Reference: https://platform.openai.com/docs/api-reference/chat/create
#pragma once
#include <cstdint>
#include <exception>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace llm::api {

// ordered: keys keep the order clients sent (templates render tool arguments with tojson)
// and responses list fields in OpenAI's order.
using json = nlohmann::ordered_json;

// An error as OpenAI reports it: {"error": {"message", "type", "param", "code"}}.
struct ApiError {
  int status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param;  // "" → null
  std::string code;   // "" → null
  json to_json() const;
};

class ApiException : public std::exception {
 public:
  explicit ApiException(ApiError e) : err_(std::move(e)) {}
  const ApiError& error() const { return err_; }
  const char* what() const noexcept override { return err_.message.c_str(); }

 private:
  ApiError err_;
};

// 400 invalid_request_error naming the parameter.
[[noreturn]] void bad_param(const std::string& param, const std::string& message);

enum class ResponseFormat { Text, JsonObject, JsonSchema };

// What both endpoints share: sampling, limits, stops, logprobs.
struct GenerationParams {
  std::string model;
  std::optional<int> max_tokens;  // absent: until the context is full or EOS
  int n = 1;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  std::vector<std::string> stop;  // at most 4, never empty strings
  float temperature = 1.0f;       // OpenAI default
  float top_p = 1.0f;
  int top_k = 0;                  // extension (llama.cpp, vLLM): 0 = off
  float min_p = 0.0f;             // extension
  float repeat_penalty = 1.0f;    // extension
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  std::vector<std::pair<int32_t, float>> logit_bias;  // token id → bias in [-100, 100]
  std::optional<uint64_t> seed;
  bool logprobs = false;
  int top_logprobs = 0;  // 0..20
  bool ignore_eos = false;  // extension
  std::string user;
};

struct ChatRequest {
  GenerationParams gen;
  json messages;  // normalised: each has "role" and "content" (string, or null for tool calls)
  json tools;     // array of {"type":"function","function":{name, description, parameters}} or null
  std::string tool_choice = "auto";  // "none" | "auto" | "required" | a function name
  bool parallel_tool_calls = true;
  ResponseFormat response_format = ResponseFormat::Text;
  json json_schema;  // response_format.json_schema.schema when JsonSchema
  bool json_schema_strict = false;  // response_format.json_schema.strict
  json chat_template_kwargs = json::object();  // extension, e.g. {"enable_thinking": false}
};

struct CompletionRequest {
  GenerationParams gen;
  // Either texts or token lists (OpenAI accepts a string, strings, ids or lists of ids).
  std::vector<std::string> prompts;
  std::vector<std::vector<int32_t>> prompt_tokens;
  bool echo = false;
  int logprobs = -1;  // legacy: number of top logprobs, -1 = none
};

// Parse and validate; throw ApiException (400) with the offending parameter.
ChatRequest parse_chat_request(const std::string& body);
CompletionRequest parse_completion_request(const std::string& body);

// Plain text of a message's content: a string, or the "text" parts of an array.
// Non-text parts (images, audio) are rejected with 400: this server is text-only.
std::string content_text(const json& content, const std::string& param);

// --- responses ------------------------------------------------------------------

struct TopLogprob {
  std::string token;
  float logprob;
};
struct TokenLogprobs {
  std::string token;  // decoded text of the token (may be part of a UTF-8 character)
  float logprob;
  std::vector<TopLogprob> top;
};

struct ToolCall {
  std::string id;
  std::string name;
  std::string arguments;  // JSON text
};

struct Choice {
  int index = 0;
  std::string text;  // content
  std::string reasoning;  // reasoning_content, when the template separates it
  std::vector<ToolCall> tool_calls;
  std::string finish_reason;  // "stop" | "length" | "tool_calls" | "content_filter"
  std::vector<TokenLogprobs> logprobs;  // when requested
  bool has_logprobs = false;
};

struct Usage {
  int prompt_tokens = 0;
  int completion_tokens = 0;
  int cached_tokens = 0;
  json to_json() const;
};

json chat_completion_json(const std::string& id, int64_t created, const std::string& model,
                          const std::vector<Choice>& choices, const Usage& usage);
json completion_json(const std::string& id, int64_t created, const std::string& model,
                     const std::vector<Choice>& choices, const Usage& usage);

// One streamed chunk of a chat completion. Exactly one of the optional parts is used:
// role (the first chunk of a choice), content text, tool call deltas, finish_reason.
struct ChatDelta {
  int index = 0;
  bool role = false;
  std::optional<std::string> content;
  std::optional<std::string> reasoning;
  std::vector<ToolCall> tool_calls;  // streamed whole, one delta each
  int tool_call_base = 0;            // index of tool_calls[0] within the message
  std::optional<std::string> finish_reason;
  std::vector<TokenLogprobs> logprobs;
  bool has_logprobs = false;
};
json chat_chunk_json(const std::string& id, int64_t created, const std::string& model,
                     const ChatDelta& d, bool include_usage_field);
json chat_usage_chunk_json(const std::string& id, int64_t created, const std::string& model,
                           const Usage& usage);
// logprobs: the chunk's tokens when the request asked for them (null: "logprobs": null);
// text_offset: where the chunk's first token starts in the choice's text.
json completion_chunk_json(const std::string& id, int64_t created, const std::string& model, int index,
                           const std::string& text, const std::optional<std::string>& finish_reason,
                           bool include_usage_field, const std::vector<TokenLogprobs>* logprobs = nullptr,
                           size_t text_offset = 0);
json completion_usage_chunk_json(const std::string& id, int64_t created, const std::string& model,
                                 const Usage& usage);

// "data: <json>\n\n"
std::string sse_event(const json& j);
inline const char* sse_done() { return "data: [DONE]\n\n"; }

json models_json(const std::string& model_id, int64_t created);

// A random id with OpenAI's prefixes: "chatcmpl-…", "cmpl-…", "call_…".
std::string random_id(const std::string& prefix);

}  // namespace llm::api
