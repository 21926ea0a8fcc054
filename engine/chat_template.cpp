#include "engine/chat_template.h"

#include "engine/gguf.h"
#include "engine/jinja_parser.h"

namespace llm {

struct ChatTemplate::Parsed {
  std::string source;
  jinja::Template tmpl;
};

namespace {

constexpr int kMaxJsonDepth = 256;

// `bytes` accumulates the size of the input (strings plus 8 per value) for the step budget.
jinja::Value to_value(const nlohmann::ordered_json& j, int depth, size_t& bytes) {
  using jinja::Value;
  bytes += 8;
  if (depth > kMaxJsonDepth) throw Error("chat template input: JSON nested deeper than 256 levels");
  switch (j.type()) {
    case nlohmann::ordered_json::value_t::null:
      return Value::none();
    case nlohmann::ordered_json::value_t::boolean:
      return Value::boolean(j.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer:
      return Value::integer(j.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned: {
      uint64_t u = j.get<uint64_t>();
      if (u <= static_cast<uint64_t>(INT64_MAX)) return Value::integer(static_cast<int64_t>(u));
      return Value::number(static_cast<double>(u));
    }
    case nlohmann::ordered_json::value_t::number_float:
      return Value::number(j.get<double>());
    case nlohmann::ordered_json::value_t::string:
      bytes += j.get_ref<const std::string&>().size();
      return Value::string(j.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      std::vector<Value> items;
      items.reserve(j.size());
      for (const auto& x : j) items.push_back(to_value(x, depth + 1, bytes));
      return Value::list(std::move(items));
    }
    case nlohmann::ordered_json::value_t::object: {
      jinja::ValueDict d;
      d.items.reserve(j.size());
      for (auto it = j.begin(); it != j.end(); ++it)
        d.items.emplace_back(Value::string(it.key()), to_value(it.value(), depth + 1, bytes));
      return Value::dict_of(std::move(d));
    }
    default:
      throw Error("chat template input: unsupported JSON value (binary)");
  }
}

[[noreturn]] void rethrow(const jinja::TemplateError& e) {
  if (dynamic_cast<const jinja::RaisedError*>(&e)) throw Error(e.message());
  std::string where = e.line() > 0 ? "line " + std::to_string(e.line()) + ": " : "";
  throw Error("chat template: " + where + e.message());
}

// Renders the text of a message's content: a string, or the text parts of a part array.
constexpr const char* kTextMacro =
    "{%- macro text(c) -%}"
    "{%- if c is string -%}{{ c }}"
    "{%- elif c is iterable and c is not mapping -%}"
    "{%- for p in c if p is mapping and p.type == 'text' -%}{{ p.text }}{%- endfor -%}"
    "{%- endif -%}"
    "{%- endmacro -%}\n";

struct Builtin {
  const char* name;
  const char* source;
};

const Builtin kBuiltins[] = {
    {"chatml",
     "{%- for m in messages -%}"
     "{{- '<|im_start|>' + m.role + '\\n' + text(m.content) + '<|im_end|>\\n' -}}"
     "{%- endfor -%}"
     "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"},
    {"llama3",
     "{{- bos_token -}}"
     "{%- for m in messages -%}"
     "{{- '<|start_header_id|>' + m.role + '<|end_header_id|>\\n\\n' + text(m.content) | trim"
     " + '<|eot_id|>' -}}"
     "{%- endfor -%}"
     "{%- if add_generation_prompt -%}"
     "{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}{%- endif -%}"},
    {"llama2",
     "{%- if messages and messages[0].role == 'system' -%}"
     "{%- set system = text(messages[0].content) -%}{%- set rest = messages[1:] -%}"
     "{%- else -%}{%- set system = '' -%}{%- set rest = messages -%}{%- endif -%}"
     "{%- for m in rest -%}"
     "{%- if m.role == 'user' -%}"
     "{{- bos_token + '[INST] ' + ('<<SYS>>\\n' + system + '\\n<</SYS>>\\n\\n' if loop.first and "
     "system else '') + text(m.content) | trim + ' [/INST]' -}}"
     "{%- elif m.role == 'assistant' -%}{{- ' ' + text(m.content) | trim + ' ' + eos_token -}}"
     "{%- endif -%}"
     "{%- endfor -%}"},
    {"zephyr",
     "{%- for m in messages -%}"
     "{{- '<|' + m.role + '|>\\n' + text(m.content) + eos_token + '\\n' -}}"
     "{%- endfor -%}"
     "{%- if add_generation_prompt -%}{{- '<|assistant|>\\n' -}}{%- endif -%}"},
    {"gemma",
     "{{- bos_token -}}"
     "{%- if messages and messages[0].role == 'system' -%}"
     "{%- set system = text(messages[0].content) + '\\n\\n' -%}{%- set rest = messages[1:] -%}"
     "{%- else -%}{%- set system = '' -%}{%- set rest = messages -%}{%- endif -%}"
     "{%- for m in rest -%}"
     "{{- '<start_of_turn>' + ('model' if m.role == 'assistant' else m.role) + '\\n' + "
     "(system if loop.first else '') + text(m.content) | trim + '<end_of_turn>\\n' -}}"
     "{%- endfor -%}"
     "{%- if add_generation_prompt -%}{{- '<start_of_turn>model\\n' -}}{%- endif -%}"},
    {"phi3",
     "{%- for m in messages -%}"
     "{{- '<|' + m.role + '|>\\n' + text(m.content) + '<|end|>\\n' -}}"
     "{%- endfor -%}"
     "{%- if add_generation_prompt -%}{{- '<|assistant|>\\n' -}}{%- endif -%}"},
};

std::string token_text(const GgufFile& f, const char* id_key) {
  auto id = f.get_int(id_key);
  auto tokens = f.get_string_array("tokenizer.ggml.tokens");
  if (!id || !tokens || *id < 0 || static_cast<size_t>(*id) >= tokens->size()) return "";
  return std::string((*tokens)[static_cast<size_t>(*id)]);
}

}  // namespace

jinja::Value json_to_value(const nlohmann::ordered_json& j) {
  size_t bytes = 0;
  return to_value(j, 0, bytes);
}

nlohmann::ordered_json ChatMessage::to_json() const {
  nlohmann::ordered_json m = nlohmann::ordered_json::object();
  m["role"] = role;
  m["content"] = content;
  if (extra.is_object())
    for (auto it = extra.begin(); it != extra.end(); ++it) m[it.key()] = it.value();
  return m;
}

nlohmann::ordered_json to_json(const std::vector<ChatMessage>& messages) {
  nlohmann::ordered_json a = nlohmann::ordered_json::array();
  for (const auto& m : messages) a.push_back(m.to_json());
  return a;
}

ChatTemplate ChatTemplate::from_source(std::string source, std::string bos_token,
                                       std::string eos_token) {
  auto parsed = std::make_shared<Parsed>();
  try {
    parsed->tmpl = jinja::parse_template(source);
  } catch (const jinja::TemplateError& e) {
    rethrow(e);
  }
  parsed->source = std::move(source);
  ChatTemplate t;
  t.parsed_ = std::move(parsed);
  t.bos_ = std::move(bos_token);
  t.eos_ = std::move(eos_token);
  return t;
}

std::optional<ChatTemplate> ChatTemplate::from_gguf(const GgufFile& f) {
  auto src = f.get_string("tokenizer.chat_template");
  if (!src) return std::nullopt;
  return from_source(*src, token_text(f, "tokenizer.ggml.bos_token_id"),
                     token_text(f, "tokenizer.ggml.eos_token_id"));
}

ChatTemplate ChatTemplate::builtin(std::string_view name, std::string bos_token,
                                   std::string eos_token) {
  for (const auto& b : kBuiltins)
    if (name == b.name)
      return from_source(std::string(kTextMacro) + b.source, std::move(bos_token),
                         std::move(eos_token));
  std::string names;
  for (const auto& n : builtin_names()) names += (names.empty() ? "" : ", ") + n;
  throw Error("unknown chat template name '" + std::string(name) + "' (built-in: " + names + ")");
}

std::vector<std::string> ChatTemplate::builtin_names() {
  std::vector<std::string> names;
  for (const auto& b : kBuiltins) names.emplace_back(b.name);
  return names;
}

const std::string& ChatTemplate::source() const {
  return parsed_->source;
}

std::string ChatTemplate::render(const nlohmann::ordered_json& messages,
                                 const nlohmann::ordered_json& tools, bool add_generation_prompt,
                                 const nlohmann::ordered_json& extra_context) const {
  using jinja::Value;
  if (!messages.is_array()) throw Error("chat template input: messages must be a JSON array");
  if (!tools.is_null() && !tools.is_array())
    throw Error("chat template input: tools must be a JSON array or null");
  if (!extra_context.is_null() && !extra_context.is_object())
    throw Error("chat template input: extra context must be a JSON object");
  // The keyword arguments of transformers' compiled_template.render(...), in its order.
  size_t input_bytes = 0;
  jinja::ValueDict vars;
  vars.set(Value::string("messages"), to_value(messages, 0, input_bytes));
  vars.set(Value::string("tools"), to_value(tools, 0, input_bytes));
  vars.set(Value::string("documents"), Value::none());
  vars.set(Value::string("add_generation_prompt"), Value::boolean(add_generation_prompt));
  vars.set(Value::string("bos_token"), Value::string(bos_));
  vars.set(Value::string("eos_token"), Value::string(eos_));
  if (extra_context.is_object())
    for (auto it = extra_context.begin(); it != extra_context.end(); ++it)
      vars.set(Value::string(it.key()), to_value(it.value(), 0, input_bytes));

  std::optional<std::tm> pinned = pinned_time_;
  jinja::Interp interp(limits_, [pinned]() {
    if (pinned) return *pinned;
    std::time_t now = std::time(nullptr);
    std::tm tm{};
    localtime_r(&now, &tm);
    return tm;
  });
  try {
    return interp.render(parsed_->tmpl, vars, input_bytes);
  } catch (const jinja::TemplateError& e) {
    rethrow(e);
  }
}

}  // namespace llm
