// Chat templates: a model's `tokenizer.chat_template` (Jinja) rendered by our own engine
// (engine/jinja_*) exactly as Hugging Face transformers' apply_chat_template renders it
// with Python jinja2: same output bytes, same failures.
//
// The context a template sees is transformers': messages, tools (None when absent),
// documents (None), add_generation_prompt, bos_token, eos_token, plus caller extras such as
// enable_thinking; the globals raise_exception() and strftime_now(); tojson as json.dumps
// with ensure_ascii=False; trim_blocks and lstrip_blocks on; the immutable sandbox (so
// list.append() in a template fails as it does in transformers).
//
// JSON comes in as nlohmann::ordered_json because key order is visible in the output
// (`tools | tojson`, printed argument dicts): parse request bodies with ordered_json so that
// the order a client sent survives. A plain nlohmann::json converts implicitly (its keys come
// sorted).
#pragma once
#include <ctime>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/jinja_eval.h"

namespace llm {

class GgufFile;

// One message in OpenAI's format, for callers that build conversations in C++.
struct ChatMessage {
  std::string role;
  nlohmann::ordered_json content;  // string, content-part array, or null
  nlohmann::ordered_json
      extra;  // object or null: tool_calls, name, tool_call_id, reasoning_content ...
  nlohmann::ordered_json to_json() const;  // {"role", "content", ...extra}
};
nlohmann::ordered_json to_json(const std::vector<ChatMessage>& messages);

class ChatTemplate {
 public:
  // Parses a template. Throws llm::Error("chat template: line L: ...") on a syntax error.
  static ChatTemplate from_source(std::string source, std::string bos_token, std::string eos_token);
  // `tokenizer.chat_template` of a GGUF file with the texts of its BOS/EOS tokens
  // (tokenizer.ggml.{bos,eos}_token_id into tokenizer.ggml.tokens); nullopt without one.
  static std::optional<ChatTemplate> from_gguf(const GgufFile& f);
  // Built-in fallbacks, for --chat-template NAME and for models without a template:
  //   chatml  <|im_start|>role\n...<|im_end|>\n  (Qwen, many fine-tunes)
  //   llama3  <|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|>
  //   llama2  <s>[INST] <<SYS>>\n...\n<</SYS>>\n\n... [/INST] ... </s>
  //   zephyr  <|role|>\n...</s>\n
  //   gemma   <start_of_turn>user\n...<end_of_turn>\n  (assistant is "model")
  //   phi3    <|role|>\n...<|end|>\n
  // Content-part arrays are rendered as their text parts joined. Throws llm::Error for an
  // unknown name (the message lists the known ones).
  static ChatTemplate builtin(std::string_view name, std::string bos_token = "",
                              std::string eos_token = "");
  static std::vector<std::string> builtin_names();

  // messages: JSON array of OpenAI-style messages; tools: JSON array or null;
  // extra_context: object of further top-level variables (e.g. {"enable_thinking": false}).
  // Throws llm::Error: the template's own message for raise_exception(), otherwise
  // "chat template: line L: ..." (undefined values used in arithmetic, sandbox refusals,
  // exceeded limits, ...).
  std::string render(const nlohmann::ordered_json& messages, const nlohmann::ordered_json& tools,
                     bool add_generation_prompt,
                     const nlohmann::ordered_json& extra_context = nullptr) const;

  // strftime_now() reads this time instead of the local clock (tests, reproducible prompts).
  void pin_time(std::optional<std::tm> t) { pinned_time_ = t; }
  void set_limits(const jinja::Limits& limits) { limits_ = limits; }
  const std::string& source() const;
  const std::string& bos_token() const { return bos_; }
  const std::string& eos_token() const { return eos_; }

 private:
  ChatTemplate() = default;
  struct Parsed;
  std::shared_ptr<const Parsed> parsed_;
  std::string bos_, eos_;
  std::optional<std::tm> pinned_time_;
  jinja::Limits limits_;
};

// JSON -> template value (objects keep their key order). Throws llm::Error when nested
// deeper than 256 levels.
jinja::Value json_to_value(const nlohmann::ordered_json& j);

}  // namespace llm
