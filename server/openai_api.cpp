#include "server/openai_api.h"

#include <cmath>
#include <limits>
#include <random>

namespace llm::api {

json ApiError::to_json() const {
  return {{"error",
           {{"message", message},
            {"type", type},
            {"param", param.empty() ? json(nullptr) : json(param)},
            {"code", code.empty() ? json(nullptr) : json(code)}}}};
}

void bad_param(const std::string& param, const std::string& message) {
  ApiError e;
  e.status = 400;
  e.message = message;
  e.param = param;
  throw ApiException(e);
}

namespace {

const char* type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::string: return "a string";
    case json::value_t::array: return "an array";
    case json::value_t::object: return "an object";
    case json::value_t::number_float: return "a number";
    default: return "an integer";
  }
}

json parse_body(const std::string& body) {
  json j;
  try {
    j = json::parse(body);
  } catch (const json::parse_error& e) {
    ApiError err;
    err.message = std::string("We could not parse the JSON body of your request. (") + e.what() + ")";
    throw ApiException(err);
  }
  if (!j.is_object()) {
    ApiError err;
    err.message = std::string("The request body must be a JSON object, got ") + type_name(j) + ".";
    throw ApiException(err);
  }
  return j;
}

// A present, non-null member, or nullptr. OpenAI treats null as "not given".
const json* member(const json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

[[noreturn]] void wrong_type(const std::string& param, const json& v, const char* want) {
  bad_param(param, "Invalid type for '" + param + "': expected " + want + ", but got " + type_name(v) + ".");
}

std::optional<double> get_number(const json& obj, const char* key, double lo, double hi) {
  const json* v = member(obj, key);
  if (!v) return std::nullopt;
  if (!v->is_number()) wrong_type(key, *v, "a number");
  double d = v->get<double>();
  if (!std::isfinite(d) || d < lo || d > hi) {
    char buf[160];
    std::snprintf(buf, sizeof buf, "Invalid '%s': %g is out of range; expected a value between %g and %g.",
                  key, d, lo, hi);
    bad_param(key, buf);
  }
  return d;
}

std::optional<int64_t> get_int(const json& obj, const char* key, int64_t lo, int64_t hi) {
  const json* v = member(obj, key);
  if (!v) return std::nullopt;
  bool integral = v->is_number_integer() ||
                  (v->is_number_float() && std::floor(v->get<double>()) == v->get<double>() &&
                   std::fabs(v->get<double>()) < 9e15);
  if (!integral) wrong_type(key, *v, "an integer");
  int64_t i = v->is_number_unsigned() ? static_cast<int64_t>(std::min<uint64_t>(v->get<uint64_t>(), INT64_MAX))
              : v->is_number_integer() ? v->get<int64_t>()
                                       : static_cast<int64_t>(v->get<double>());
  if (i < lo || i > hi)
    bad_param(key, "Invalid '" + std::string(key) + "': " + std::to_string(i) +
                       " is out of range; expected a value between " + std::to_string(lo) + " and " +
                       std::to_string(hi) + ".");
  return i;
}

std::optional<bool> get_bool(const json& obj, const char* key) {
  const json* v = member(obj, key);
  if (!v) return std::nullopt;
  if (!v->is_boolean()) wrong_type(key, *v, "a boolean");
  return v->get<bool>();
}

std::optional<std::string> get_string(const json& obj, const char* key) {
  const json* v = member(obj, key);
  if (!v) return std::nullopt;
  if (!v->is_string()) wrong_type(key, *v, "a string");
  return v->get<std::string>();
}

void parse_common(const json& j, GenerationParams& g, bool chat) {
  const json* model = member(j, "model");
  if (!model) bad_param("model", "you must provide a model parameter");
  if (!model->is_string()) wrong_type("model", *model, "a string");
  g.model = model->get<std::string>();

  // max_completion_tokens supersedes max_tokens for chat (OpenAI deprecates the latter).
  std::optional<int64_t> mt;
  if (chat) mt = get_int(j, "max_completion_tokens", 1, INT32_MAX);
  if (!mt) mt = get_int(j, "max_tokens", chat ? 1 : 0, INT32_MAX);
  if (mt) g.max_tokens = static_cast<int>(*mt);
  g.n = static_cast<int>(get_int(j, "n", 1, 128).value_or(1));
  g.stream = get_bool(j, "stream").value_or(false);
  if (const json* so = member(j, "stream_options")) {
    if (!so->is_object()) wrong_type("stream_options", *so, "an object");
    if (!g.stream)
      bad_param("stream_options", "The 'stream_options' parameter is only allowed when 'stream' is enabled.");
    g.include_usage = get_bool(*so, "include_usage").value_or(false);
  }
  if (const json* st = member(j, "stop")) {
    if (st->is_string()) {
      g.stop.push_back(st->get<std::string>());
    } else if (st->is_array()) {
      if (st->size() > 4) bad_param("stop", "Invalid 'stop': expected an array of at most 4 strings, got " +
                                                std::to_string(st->size()) + ".");
      for (const json& s : *st) {
        if (!s.is_string()) wrong_type("stop", s, "a string or an array of strings");
        g.stop.push_back(s.get<std::string>());
      }
    } else {
      wrong_type("stop", *st, "a string or an array of strings");
    }
    std::erase_if(g.stop, [](const std::string& s) { return s.empty(); });
  }
  g.temperature = static_cast<float>(get_number(j, "temperature", 0, 2).value_or(1.0));
  g.top_p = static_cast<float>(get_number(j, "top_p", 0, 1).value_or(1.0));
  g.top_k = static_cast<int>(get_int(j, "top_k", -1, INT32_MAX).value_or(0));
  if (g.top_k < 0) g.top_k = 0;
  g.min_p = static_cast<float>(get_number(j, "min_p", 0, 1).value_or(0.0));
  g.repeat_penalty = static_cast<float>(get_number(j, "repetition_penalty", 0.01, 10).value_or(1.0));
  if (auto rp = get_number(j, "repeat_penalty", 0.01, 10)) g.repeat_penalty = static_cast<float>(*rp);
  g.presence_penalty = static_cast<float>(get_number(j, "presence_penalty", -2, 2).value_or(0.0));
  g.frequency_penalty = static_cast<float>(get_number(j, "frequency_penalty", -2, 2).value_or(0.0));
  if (const json* lb = member(j, "logit_bias")) {
    if (!lb->is_object()) wrong_type("logit_bias", *lb, "an object mapping token ids to biases");
    for (auto it = lb->begin(); it != lb->end(); ++it) {
      const std::string& k = it.key();
      char* end = nullptr;
      long id = std::strtol(k.c_str(), &end, 10);
      if (k.empty() || *end != '\0' || id < 0 || id > INT32_MAX)
        bad_param("logit_bias", "Invalid key in 'logit_bias': '" + k + "' is not a token id.");
      if (!it.value().is_number()) wrong_type("logit_bias", it.value(), "a number");
      double b = it.value().get<double>();
      if (!(b >= -100 && b <= 100))
        bad_param("logit_bias", "Invalid value in 'logit_bias' for token " + k + ": expected -100 to 100.");
      g.logit_bias.emplace_back(static_cast<int32_t>(id), static_cast<float>(b));
    }
  }
  if (auto s = get_int(j, "seed", INT64_MIN, INT64_MAX)) g.seed = static_cast<uint64_t>(*s);
  g.ignore_eos = get_bool(j, "ignore_eos").value_or(false);
  g.user = get_string(j, "user").value_or("");
}

}  // namespace

std::string content_text(const json& content, const std::string& param) {
  if (content.is_null()) return "";
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) wrong_type(param, content, "a string or an array of content parts");
  std::string out;
  for (size_t i = 0; i < content.size(); ++i) {
    const json& part = content[i];
    std::string p = param + "[" + std::to_string(i) + "]";
    if (!part.is_object()) wrong_type(p, part, "an object");
    auto type = get_string(part, "type");
    if (!type) bad_param(p + ".type", "Missing required parameter: '" + p + ".type'.");
    if (*type != "text")
      bad_param(p + ".type", "Content part type '" + *type + "' is not supported by this text-only model.");
    auto text = get_string(part, "text");
    if (!text) bad_param(p + ".text", "Missing required parameter: '" + p + ".text'.");
    out += *text;
  }
  return out;
}

ChatRequest parse_chat_request(const std::string& body) {
  json j = parse_body(body);
  ChatRequest r;
  parse_common(j, r.gen, true);
  if (auto lp = get_bool(j, "logprobs")) r.gen.logprobs = *lp;
  if (auto tl = get_int(j, "top_logprobs", 0, 20)) {
    if (!r.gen.logprobs)
      bad_param("top_logprobs", "Invalid 'top_logprobs': 'logprobs' must be set to true when 'top_logprobs' is used.");
    r.gen.top_logprobs = static_cast<int>(*tl);
  }

  const json* msgs = member(j, "messages");
  if (!msgs) bad_param("messages", "Missing required parameter: 'messages'.");
  if (!msgs->is_array()) wrong_type("messages", *msgs, "an array");
  if (msgs->empty())
    bad_param("messages", "Invalid 'messages': empty array. Expected an array with minimum length 1.");
  r.messages = json::array();
  for (size_t i = 0; i < msgs->size(); ++i) {
    const json& m = (*msgs)[i];
    std::string p = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) wrong_type(p, m, "an object");
    auto role = get_string(m, "role");
    if (!role) bad_param(p + ".role", "Missing required parameter: '" + p + ".role'.");
    static const char* kRoles[] = {"system", "developer", "user", "assistant", "tool", "function"};
    bool known = false;
    for (const char* k : kRoles) known |= *role == k;
    if (!known)
      bad_param(p + ".role", "Invalid value: '" + *role +
                                 "'. Supported values are: 'system', 'developer', 'user', 'assistant', and 'tool'.");
    json out = m;  // keep extra fields (name, tool_calls, tool_call_id, ...) for the template
    const json* content = member(m, "content");
    bool has_tool_calls = member(m, "tool_calls") != nullptr;
    if (!content) {
      if (*role != "assistant" || !has_tool_calls)
        bad_param(p + ".content", "Missing required parameter: '" + p + ".content'.");
      // Several real templates (Qwen3, Phi-3.5, Granite) fail on a null content; an empty
      // string renders the same turn everywhere.
      out["content"] = "";
    } else {
      out["content"] = content_text(*content, p + ".content");
    }
    if (*role == "developer") out["role"] = "system";  // templates know "system"
    if (*role == "tool" && !member(m, "tool_call_id"))
      bad_param(p + ".tool_call_id", "Missing required parameter: '" + p + ".tool_call_id'.");
    if (has_tool_calls) {
      const json& tc = m["tool_calls"];
      if (!tc.is_array()) wrong_type(p + ".tool_calls", tc, "an array");
      json calls = json::array();
      for (size_t k = 0; k < tc.size(); ++k) {
        std::string q = p + ".tool_calls[" + std::to_string(k) + "]";
        const json& c = tc[k];
        if (!c.is_object() || !member(c, "function") || !c["function"].is_object())
          bad_param(q + ".function", "Missing required parameter: '" + q + ".function'.");
        json call = c;
        // Templates iterate arguments as a mapping; OpenAI sends a JSON string.
        if (c["function"].contains("arguments") && c["function"]["arguments"].is_string()) {
          try {
            call["function"]["arguments"] = json::parse(c["function"]["arguments"].get<std::string>());
          } catch (const json::parse_error&) {
            // leave it as the string the client sent
          }
        }
        calls.push_back(call);
      }
      out["tool_calls"] = calls;
    }
    r.messages.push_back(out);
  }

  if (const json* tools = member(j, "tools")) {
    if (!tools->is_array()) wrong_type("tools", *tools, "an array");
    for (size_t i = 0; i < tools->size(); ++i) {
      const json& t = (*tools)[i];
      std::string p = "tools[" + std::to_string(i) + "]";
      if (!t.is_object()) wrong_type(p, t, "an object");
      if (get_string(t, "type").value_or("function") != "function")
        bad_param(p + ".type", "Invalid value for '" + p + ".type': only 'function' is supported.");
      const json* fn = member(t, "function");
      if (!fn || !fn->is_object()) bad_param(p + ".function", "Missing required parameter: '" + p + ".function'.");
      if (!get_string(*fn, "name"))
        bad_param(p + ".function.name", "Missing required parameter: '" + p + ".function.name'.");
    }
    if (!tools->empty()) r.tools = *tools;
  }
  if (const json* tc = member(j, "tool_choice")) {
    if (tc->is_string()) {
      std::string s = tc->get<std::string>();
      if (s != "none" && s != "auto" && s != "required")
        bad_param("tool_choice", "Invalid value for 'tool_choice': '" + s +
                                     "'. Supported values are: 'none', 'auto', and 'required'.");
      r.tool_choice = s;
    } else if (tc->is_object()) {
      const json* fn = member(*tc, "function");
      auto name = fn && fn->is_object() ? get_string(*fn, "name") : std::nullopt;
      if (!name) bad_param("tool_choice.function.name", "Missing required parameter: 'tool_choice.function.name'.");
      r.tool_choice = *name;
    } else {
      wrong_type("tool_choice", *tc, "a string or an object");
    }
    if (r.tool_choice != "none" && r.tool_choice != "auto" && r.tools.is_null())
      bad_param("tool_choice", "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.");
  }
  r.parallel_tool_calls = get_bool(j, "parallel_tool_calls").value_or(true);
  if (const json* rf = member(j, "response_format")) {
    if (!rf->is_object()) wrong_type("response_format", *rf, "an object");
    auto type = get_string(*rf, "type");
    if (!type) bad_param("response_format.type", "Missing required parameter: 'response_format.type'.");
    if (*type == "text") {
      r.response_format = ResponseFormat::Text;
    } else if (*type == "json_object") {
      r.response_format = ResponseFormat::JsonObject;
    } else if (*type == "json_schema") {
      const json* js = member(*rf, "json_schema");
      if (!js || !js->is_object())
        bad_param("response_format.json_schema", "Missing required parameter: 'response_format.json_schema'.");
      if (!get_string(*js, "name"))
        bad_param("response_format.json_schema.name",
                  "Missing required parameter: 'response_format.json_schema.name'.");
      const json* schema = member(*js, "schema");
      if (schema && !schema->is_object())
        wrong_type("response_format.json_schema.schema", *schema, "an object");
      r.response_format = ResponseFormat::JsonSchema;
      r.json_schema = schema ? *schema : json::object();
      r.json_schema_strict = get_bool(*js, "strict").value_or(false);
    } else {
      bad_param("response_format.type", "Invalid value: '" + *type +
                                            "'. Supported values are: 'text', 'json_object', and 'json_schema'.");
    }
  }
  if (const json* kw = member(j, "chat_template_kwargs")) {
    if (!kw->is_object()) wrong_type("chat_template_kwargs", *kw, "an object");
    r.chat_template_kwargs = *kw;
  }
  return r;
}

CompletionRequest parse_completion_request(const std::string& body) {
  json j = parse_body(body);
  CompletionRequest r;
  parse_common(j, r.gen, false);
  if (!r.gen.max_tokens) r.gen.max_tokens = 16;  // the completions endpoint's documented default
  if (auto lp = get_int(j, "logprobs", 0, 5)) {
    r.logprobs = static_cast<int>(*lp);
    r.gen.logprobs = true;
    r.gen.top_logprobs = r.logprobs;
  }
  r.echo = get_bool(j, "echo").value_or(false);
  if (auto bo = get_int(j, "best_of", 1, 20); bo && *bo != r.gen.n)
    bad_param("best_of", "'best_of' other than 'n' is not supported.");
  if (member(j, "suffix")) bad_param("suffix", "'suffix' (insertion) is not supported by this model.");
  const json* p = member(j, "prompt");
  if (!p) bad_param("prompt", "Missing required parameter: 'prompt'.");
  auto token_list = [&](const json& a, const std::string& param) {
    std::vector<int32_t> ids;
    for (const json& t : a) {
      if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() > INT32_MAX)
        bad_param(param, "Invalid 'prompt': token ids must be non-negative integers.");
      ids.push_back(static_cast<int32_t>(t.get<int64_t>()));
    }
    return ids;
  };
  if (p->is_string()) {
    r.prompts.push_back(p->get<std::string>());
  } else if (p->is_array() && !p->empty()) {
    if ((*p)[0].is_string()) {
      for (const json& s : *p) {
        if (!s.is_string()) wrong_type("prompt", s, "a string");
        r.prompts.push_back(s.get<std::string>());
      }
    } else if ((*p)[0].is_number_integer()) {
      r.prompt_tokens.push_back(token_list(*p, "prompt"));
    } else if ((*p)[0].is_array()) {
      for (const json& a : *p) {
        if (!a.is_array() || a.empty()) wrong_type("prompt", a, "a non-empty array of token ids");
        r.prompt_tokens.push_back(token_list(a, "prompt"));
      }
    } else {
      wrong_type("prompt", (*p)[0], "a string, an array of strings, or an array of token ids");
    }
  } else {
    wrong_type("prompt", *p, "a string, an array of strings, or an array of token ids");
  }
  return r;
}

// --- responses ------------------------------------------------------------------

json Usage::to_json() const {
  return {{"prompt_tokens", prompt_tokens},
          {"completion_tokens", completion_tokens},
          {"total_tokens", prompt_tokens + completion_tokens},
          {"prompt_tokens_details", {{"cached_tokens", cached_tokens}}}};
}

namespace {

// Token text as OpenAI reports it: the string plus its UTF-8 bytes (which survive
// tokens that hold part of a character).
json token_bytes(const std::string& s) {
  json b = json::array();
  for (unsigned char c : s) b.push_back(static_cast<int>(c));
  return b;
}

// JSON strings must be valid UTF-8: a token that holds part of a character is shown
// with U+FFFD for the partial bytes; "bytes" keeps the exact ones.
std::string valid_utf8(const std::string& s) {
  std::string out;
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    bool ok = len > 0 && i + static_cast<size_t>(len) <= s.size();
    for (int k = 1; ok && k < len; ++k) ok = (static_cast<unsigned char>(s[i + static_cast<size_t>(k)]) >> 6) == 2;
    if (ok) {
      out.append(s, i, static_cast<size_t>(len));
      i += static_cast<size_t>(len);
    } else {
      out += "\xEF\xBF\xBD";
      ++i;
    }
  }
  return out;
}

json chat_logprobs_json(const std::vector<TokenLogprobs>& lps) {
  json content = json::array();
  for (const TokenLogprobs& t : lps) {
    json top = json::array();
    for (const TopLogprob& x : t.top)
      top.push_back({{"token", valid_utf8(x.token)}, {"logprob", x.logprob}, {"bytes", token_bytes(x.token)}});
    content.push_back({{"token", valid_utf8(t.token)},
                       {"logprob", t.logprob},
                       {"bytes", token_bytes(t.token)},
                       {"top_logprobs", top}});
  }
  return {{"content", content}, {"refusal", nullptr}};
}

json completion_logprobs_json(const std::vector<TokenLogprobs>& lps, size_t offset = 0) {
  json tokens = json::array(), logprobs = json::array(), tops = json::array(), offsets = json::array();
  for (const TokenLogprobs& t : lps) {
    tokens.push_back(valid_utf8(t.token));
    logprobs.push_back(t.logprob);
    json top = json::object();
    for (const TopLogprob& x : t.top) top[valid_utf8(x.token)] = x.logprob;
    tops.push_back(top);
    offsets.push_back(offset);
    offset += t.token.size();
  }
  return {{"tokens", tokens}, {"token_logprobs", logprobs}, {"top_logprobs", tops}, {"text_offset", offsets}};
}

json tool_calls_json(const std::vector<ToolCall>& calls, int base, bool streaming) {
  json arr = json::array();
  for (size_t i = 0; i < calls.size(); ++i) {
    json c = {{"id", calls[i].id},
              {"type", "function"},
              {"function", {{"name", calls[i].name}, {"arguments", calls[i].arguments}}}};
    if (streaming) c["index"] = base + static_cast<int>(i);
    arr.push_back(c);
  }
  return arr;
}

constexpr const char* kFingerprint = "fp_llm";

}  // namespace

json chat_completion_json(const std::string& id, int64_t created, const std::string& model,
                          const std::vector<Choice>& choices, const Usage& usage) {
  json cs = json::array();
  for (const Choice& c : choices) {
    json msg = {{"role", "assistant"},
                {"content", c.tool_calls.empty() || !c.text.empty() ? json(c.text) : json(nullptr)},
                {"refusal", nullptr}};
    if (!c.reasoning.empty()) msg["reasoning_content"] = c.reasoning;
    if (!c.tool_calls.empty()) msg["tool_calls"] = tool_calls_json(c.tool_calls, 0, false);
    cs.push_back({{"index", c.index},
                  {"message", msg},
                  {"logprobs", c.has_logprobs ? chat_logprobs_json(c.logprobs) : json(nullptr)},
                  {"finish_reason", c.finish_reason}});
  }
  return {{"id", id},           {"object", "chat.completion"}, {"created", created},
          {"model", model},     {"choices", cs},               {"usage", usage.to_json()},
          {"system_fingerprint", kFingerprint}};
}

json completion_json(const std::string& id, int64_t created, const std::string& model,
                     const std::vector<Choice>& choices, const Usage& usage) {
  json cs = json::array();
  for (const Choice& c : choices)
    cs.push_back({{"index", c.index},
                  {"text", c.text},
                  {"logprobs", c.has_logprobs ? completion_logprobs_json(c.logprobs) : json(nullptr)},
                  {"finish_reason", c.finish_reason}});
  return {{"id", id},       {"object", "text_completion"}, {"created", created},
          {"model", model}, {"choices", cs},               {"usage", usage.to_json()},
          {"system_fingerprint", kFingerprint}};
}

json chat_chunk_json(const std::string& id, int64_t created, const std::string& model, const ChatDelta& d,
                     bool include_usage_field) {
  json delta = json::object();
  if (d.role) {
    delta["role"] = "assistant";
    delta["content"] = "";
    delta["refusal"] = nullptr;
  }
  if (d.content) delta["content"] = *d.content;
  if (d.reasoning) delta["reasoning_content"] = *d.reasoning;
  if (!d.tool_calls.empty()) delta["tool_calls"] = tool_calls_json(d.tool_calls, d.tool_call_base, true);
  json choice = {{"index", d.index},
                 {"delta", delta},
                 {"logprobs", d.has_logprobs ? chat_logprobs_json(d.logprobs) : json(nullptr)},
                 {"finish_reason", d.finish_reason ? json(*d.finish_reason) : json(nullptr)}};
  json j = {{"id", id},
            {"object", "chat.completion.chunk"},
            {"created", created},
            {"model", model},
            {"system_fingerprint", kFingerprint},
            {"choices", json::array({choice})}};
  if (include_usage_field) j["usage"] = nullptr;
  return j;
}

json chat_usage_chunk_json(const std::string& id, int64_t created, const std::string& model, const Usage& usage) {
  return {{"id", id},         {"object", "chat.completion.chunk"}, {"created", created},
          {"model", model},   {"system_fingerprint", kFingerprint}, {"choices", json::array()},
          {"usage", usage.to_json()}};
}

json completion_chunk_json(const std::string& id, int64_t created, const std::string& model, int index,
                           const std::string& text, const std::optional<std::string>& finish_reason,
                           bool include_usage_field, const std::vector<TokenLogprobs>* logprobs,
                           size_t text_offset) {
  json choice = {{"index", index},
                 {"text", text},
                 {"logprobs", logprobs ? completion_logprobs_json(*logprobs, text_offset) : json(nullptr)},
                 {"finish_reason", finish_reason ? json(*finish_reason) : json(nullptr)}};
  json j = {{"id", id},       {"object", "text_completion"}, {"created", created},
            {"model", model}, {"system_fingerprint", kFingerprint}, {"choices", json::array({choice})}};
  if (include_usage_field) j["usage"] = nullptr;
  return j;
}

json completion_usage_chunk_json(const std::string& id, int64_t created, const std::string& model,
                                 const Usage& usage) {
  return {{"id", id},       {"object", "text_completion"}, {"created", created},
          {"model", model}, {"system_fingerprint", kFingerprint}, {"choices", json::array()},
          {"usage", usage.to_json()}};
}

std::string sse_event(const json& j) {
  return "data: " + j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n";
}

json models_json(const std::string& model_id, int64_t created) {
  return {{"object", "list"},
          {"data", json::array({{{"id", model_id}, {"object", "model"}, {"created", created}, {"owned_by", "llm"}}})}};
}

std::string random_id(const std::string& prefix) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char kChars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  std::string s = prefix;
  for (int i = 0; i < 24; ++i) s += kChars[rng() % (sizeof kChars - 1)];
  return s;
}

}  // namespace llm::api
