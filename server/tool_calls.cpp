#include "server/tool_calls.h"

#include <algorithm>

namespace llm {

namespace {

using json = api::json;

std::string trim(const std::string& s) {
  size_t a = s.find_first_not_of(" \t\r\n");
  if (a == std::string::npos) return "";
  size_t b = s.find_last_not_of(" \t\r\n");
  return s.substr(a, b - a + 1);
}

// {"name": ..., "arguments"|"parameters": {...}} → a call; false if it is not one.
bool call_from_json(const json& j, api::ToolCall& out) {
  if (!j.is_object() || !j.contains("name") || !j["name"].is_string()) return false;
  out.name = j["name"].get<std::string>();
  const json* args = nullptr;
  if (j.contains("arguments")) args = &j["arguments"];
  else if (j.contains("parameters")) args = &j["parameters"];
  if (!args || args->is_null())
    out.arguments = "{}";
  else if (args->is_string())
    out.arguments = args->get<std::string>();
  else
    out.arguments = args->dump();
  return true;
}

bool parse_json(const std::string& s, json& out) {
  try {
    out = json::parse(s);
    return true;
  } catch (const json::parse_error&) {
    return false;
  }
}

ParsedToolOutput parse_tagged(const std::string& text) {
  static const std::string open = "<tool_call>", close = "</tool_call>";
  ParsedToolOutput r;
  std::string rest;
  size_t pos = 0;
  while (true) {
    size_t a = text.find(open, pos);
    if (a == std::string::npos) break;
    size_t b = text.find(close, a + open.size());
    std::string body = text.substr(a + open.size(), b == std::string::npos ? std::string::npos : b - a - open.size());
    json j;
    api::ToolCall c;
    if (parse_json(trim(body), j) && call_from_json(j, c)) {
      rest += text.substr(pos, a - pos);
      r.calls.push_back(c);
    } else {
      rest += text.substr(pos, (b == std::string::npos ? text.size() : b + close.size()) - pos);
    }
    if (b == std::string::npos) {
      pos = text.size();
      break;
    }
    pos = b + close.size();
  }
  rest += text.substr(std::min(pos, text.size()));
  r.content = trim(rest);
  return r;
}

ParsedToolOutput parse_bare_json(const std::string& text) {
  ParsedToolOutput r;
  std::string t = trim(text);
  static const std::string tag = "<|python_tag|>";
  if (t.rfind(tag, 0) == 0) t = trim(t.substr(tag.size()));
  json j;
  if (!t.empty() && (t[0] == '{' || t[0] == '[') && parse_json(t, j)) {
    std::vector<json> items = j.is_array() ? std::vector<json>(j.begin(), j.end()) : std::vector<json>{j};
    std::vector<api::ToolCall> calls;
    for (const json& it : items) {
      api::ToolCall c;
      if (!call_from_json(it, c)) {
        calls.clear();
        break;
      }
      calls.push_back(c);
    }
    if (!calls.empty()) {
      r.calls = calls;
      return r;
    }
  }
  // Several calls separated by ';' or newlines (Llama 3.x emits one per line).
  r.content = trim(text);
  return r;
}

ParsedToolOutput parse_mistral(const std::string& text) {
  static const std::string tag = "[TOOL_CALLS]";
  size_t a = text.find(tag);
  if (a == std::string::npos) return ParsedToolOutput{trim(text), {}};
  ParsedToolOutput r = parse_bare_json(text.substr(a + tag.size()));
  if (r.calls.empty()) return ParsedToolOutput{trim(text), {}};
  r.content = trim(text.substr(0, a));
  return r;
}

}  // namespace

ToolStyle tool_style_of_template(const std::string& src) {
  if (src.find("<tool_call>") != std::string::npos) return ToolStyle::Hermes;
  if (src.find("[TOOL_CALLS]") != std::string::npos) return ToolStyle::Mistral;
  if (src.find("<|python_tag|>") != std::string::npos || src.find("ipython") != std::string::npos)
    return ToolStyle::Llama3;
  return ToolStyle::Generic;
}

ParsedToolOutput parse_tool_calls(const std::string& text, ToolStyle style) {
  switch (style) {
    case ToolStyle::Hermes: return parse_tagged(text);
    case ToolStyle::Mistral: return parse_mistral(text);
    case ToolStyle::Llama3: return parse_bare_json(text);
    case ToolStyle::Generic: {
      ParsedToolOutput r = parse_tagged(text);
      if (!r.calls.empty()) return r;
      r = parse_mistral(text);
      if (!r.calls.empty()) return r;
      return parse_bare_json(text);
    }
  }
  return ParsedToolOutput{trim(text), {}};
}

bool may_start_tool_call(const std::string& text, ToolStyle style) {
  std::string t = text;
  t.erase(0, std::min(t.find_first_not_of(" \t\r\n"), t.size()));
  if (t.empty()) return true;
  auto prefix_of = [&](const std::string& marker) {
    size_t n = std::min(marker.size(), t.size());
    return t.compare(0, n, marker, 0, n) == 0;
  };
  bool hermes = prefix_of("<tool_call>"), mistral = prefix_of("[TOOL_CALLS]");
  bool json_like = t[0] == '{' || t[0] == '[' || prefix_of("<|python_tag|>");
  switch (style) {
    case ToolStyle::Hermes: return hermes;
    case ToolStyle::Mistral: return mistral;
    case ToolStyle::Llama3: return json_like;
    case ToolStyle::Generic: return hermes || mistral || json_like;
  }
  return false;
}

}  // namespace llm
