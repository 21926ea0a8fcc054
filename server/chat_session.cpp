#include "server/chat_session.h"

#include <cstdio>
#include <cstdlib>

#include "engine/error.h"

namespace llm {

using ojson = nlohmann::ordered_json;

namespace {

// A float as the shortest decimal that reads back as it (0.95f is written 0.95, not
// 0.949999988079071).
double tidy(float f) {
  char buf[32];
  for (int digits = 6; digits <= 9; ++digits) {
    std::snprintf(buf, sizeof buf, "%.*g", digits, static_cast<double>(f));
    if (std::strtof(buf, nullptr) == f) break;
  }
  return std::strtod(buf, nullptr);
}

}  // namespace

int Conversation::user_turns() const {
  int n = 0;
  for (const ChatEntry& e : entries) n += e.role == "user";
  return n;
}

ojson Conversation::messages() const {
  ojson m = ojson::array();
  if (!system.empty()) m.push_back({{"role", "system"}, {"content", system}});
  for (const ChatEntry& e : entries) m.push_back({{"role", e.role}, {"content", e.content}});
  return m;
}

bool Conversation::drop_oldest_turn() {
  if (user_turns() < 2) return false;
  // Everything before the second user message goes (answers and any stray leading
  // assistant message of a loaded transcript included).
  size_t second = 0;
  int seen = 0;
  for (size_t i = 0; i < entries.size(); ++i)
    if (entries[i].role == "user" && ++seen == 2) {
      second = i;
      break;
    }
  entries.erase(entries.begin(), entries.begin() + static_cast<std::ptrdiff_t>(second));
  return true;
}

const char* to_string(ContextPolicy p) {
  return p == ContextPolicy::Drop ? "drop" : "error";
}

ContextPolicy parse_context_policy(const std::string& s) {
  if (s == "drop") return ContextPolicy::Drop;
  if (s == "error") return ContextPolicy::Error;
  throw Error("llm chat: --context-policy must be 'drop' or 'error', got '" + s + "'");
}

ojson transcript_json(const Conversation& c, const ChatSettings& s) {
  const SamplingParams& p = s.sampling;
  ojson settings = {
      {"temperature", tidy(p.temperature)},
      {"top_k", p.top_k},
      {"top_p", tidy(p.top_p)},
      {"min_p", tidy(p.min_p)},
      {"repeat_penalty", tidy(p.repeat_penalty)},
      {"repeat_last_n", p.repeat_last_n},
      {"seed", p.seed == kRandomSeed ? ojson(nullptr) : ojson(p.seed)},
      {"max_tokens", s.max_tokens},
      {"ignore_eos", s.ignore_eos},
      {"model", s.model},
      {"chat_template", s.chat_template},
      {"context_policy", to_string(s.context_policy)},
  };
  ojson msgs = ojson::array();
  if (!c.system.empty()) msgs.push_back({{"role", "system"}, {"content", c.system}});
  for (const ChatEntry& e : c.entries) {
    ojson m = {{"role", e.role}, {"content", e.content}};
    if (e.interrupted) m["interrupted"] = true;
    msgs.push_back(std::move(m));
  }
  return {{"format", "llm-chat"}, {"version", 1}, {"settings", settings}, {"messages", msgs}};
}

namespace {

[[noreturn]] void bad(const std::string& what) {
  throw Error("transcript: " + what);
}

template <typename T>
T number(const ojson& j, const char* key) {
  const ojson& v = j.at(key);
  if (!v.is_number()) bad(std::string("settings.") + key + " must be a number");
  return v.get<T>();
}

}  // namespace

void load_transcript(const std::string& text, Conversation& c, ChatSettings& s) {
  ojson j;
  try {
    j = ojson::parse(text);
  } catch (const nlohmann::json::exception& e) {
    bad(std::string("not valid JSON (") + e.what() + ")");
  }
  if (!j.is_object() || !j.contains("messages") || !j["messages"].is_array())
    bad("expected an object with a \"messages\" array");
  Conversation nc;
  bool first = true;
  for (const ojson& m : j["messages"]) {
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string() || !m.contains("content") ||
        !m["content"].is_string())
      bad("each message needs a string \"role\" and \"content\"");
    const std::string role = m["role"].get<std::string>();
    const std::string content = m["content"].get<std::string>();
    if (role == "system" && first) {
      nc.system = content;
    } else if (role == "user" || role == "assistant") {
      if (m.contains("interrupted") && !m["interrupted"].is_boolean())
        bad("\"interrupted\" must be true or false");
      nc.add(role, content, m.contains("interrupted") && m["interrupted"].get<bool>());
    } else {
      bad("unsupported message role '" + role + "' (user, assistant, and a leading system)");
    }
    first = false;
  }

  ChatSettings ns = s;
  if (j.contains("settings")) {
    const ojson& st = j["settings"];
    if (!st.is_object()) bad("\"settings\" must be an object");
    SamplingParams& p = ns.sampling;
    if (st.contains("temperature")) p.temperature = number<float>(st, "temperature");
    if (st.contains("top_k")) p.top_k = number<int>(st, "top_k");
    if (st.contains("top_p")) p.top_p = number<float>(st, "top_p");
    if (st.contains("min_p")) p.min_p = number<float>(st, "min_p");
    if (st.contains("repeat_penalty")) p.repeat_penalty = number<float>(st, "repeat_penalty");
    if (st.contains("repeat_last_n")) p.repeat_last_n = number<int>(st, "repeat_last_n");
    if (st.contains("seed"))
      p.seed = st["seed"].is_null() ? kRandomSeed : number<uint64_t>(st, "seed");
    if (st.contains("max_tokens")) ns.max_tokens = number<int>(st, "max_tokens");
    if (st.contains("ignore_eos")) {
      if (!st["ignore_eos"].is_boolean()) bad("settings.ignore_eos must be true or false");
      ns.ignore_eos = st["ignore_eos"].get<bool>();
    }
    if (st.contains("context_policy")) {
      if (!st["context_policy"].is_string()) bad("settings.context_policy must be a string");
      ns.context_policy = parse_context_policy(st["context_policy"].get<std::string>());
    }
    // "model" and "chat_template" describe where the transcript came from; the running
    // session's model and template stay.
  }
  if (ns.max_tokens == 0 || ns.max_tokens < -1) bad("settings.max_tokens must be positive or -1");
  c = std::move(nc);
  s = std::move(ns);
}

}  // namespace llm
