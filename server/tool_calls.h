// Tool calls written by a model in its template's own syntax, parsed back into
// OpenAI's `tool_calls`. Styles:
//   Hermes / Qwen 2.5 / Qwen 3:  <tool_call>{"name": ..., "arguments": {...}}</tool_call>
//   Llama 3.x:                    {"name": ..., "parameters": {...}}  (optionally after <|python_tag|>)
//   Mistral:                      [TOOL_CALLS][{"name": ..., "arguments": {...}}, ...]
#pragma once
#include <string>
#include <vector>

#include "server/openai_api.h"

namespace llm {

enum class ToolStyle { Hermes, Llama3, Mistral, Generic };

// The style a chat template's source implies.
ToolStyle tool_style_of_template(const std::string& template_source);

struct ParsedToolOutput {
  std::string content;                  // text outside the calls (trimmed)
  std::vector<api::ToolCall> calls;     // ids are assigned by the caller
};

// Extracts every well-formed call. Text that does not parse as a call stays content.
ParsedToolOutput parse_tool_calls(const std::string& text, ToolStyle style);

// Whether text (the start of an answer) may still become a tool call in this style:
// streaming holds such text back until it is known.
bool may_start_tool_call(const std::string& text, ToolStyle style);

}  // namespace llm
