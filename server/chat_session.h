// The state of one `llm chat` conversation: its messages and the settings that produce
// the answers, and the JSON transcript that /save writes and /load reads:
//
//   {"format": "llm-chat", "version": 1,
//    "settings": {"temperature": 0.8, "top_k": 40, "top_p": 0.95, "min_p": 0.05,
//                 "repeat_penalty": 1.0, "repeat_last_n": 64, "seed": null,
//                 "max_tokens": -1, "ignore_eos": false, "model": "...", "chat_template": "...",
//                 "context_policy": "drop"},
//    "messages": [{"role": "system", "content": "..."},
//                 {"role": "user", "content": "..."},
//                 {"role": "assistant", "content": "...", "interrupted": true}, ...]}
//
// The system prompt is the leading system message (absent when empty); "interrupted"
// marks an answer stopped by Ctrl-C, and is not shown to the chat template.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/sampler.h"

namespace llm {

enum class ContextPolicy { Drop, Error };

struct ChatSettings {
  SamplingParams sampling;
  int max_tokens = -1;  // per answer; -1: until end of text or a full context
  bool ignore_eos = false;
  std::string model;          // what answers: the model file, or the server's model id
  std::string chat_template;  // the --chat-template given ("" = the model's own)
  ContextPolicy context_policy = ContextPolicy::Drop;
};

struct ChatEntry {
  std::string role;  // "user" or "assistant"
  std::string content;
  bool interrupted = false;
};

class Conversation {
 public:
  std::string system;
  std::vector<ChatEntry> entries;  // without the system prompt

  void reset() { entries.clear(); }
  void add(std::string role, std::string content, bool interrupted = false) {
    entries.push_back({std::move(role), std::move(content), interrupted});
  }
  int user_turns() const;
  // OpenAI-style messages for the chat template: the system prompt, then the entries.
  nlohmann::ordered_json messages() const;
  // Drops the oldest turn (a user message and the answers up to the next user message),
  // keeping the system prompt and the newest user message. False when nothing can go.
  bool drop_oldest_turn();
};

nlohmann::ordered_json transcript_json(const Conversation& c, const ChatSettings& s);
// Reads a transcript, replacing `c` and the settings it names (others keep their value).
// Throws llm::Error naming what is wrong; on error `c` and `s` are unchanged.
void load_transcript(const std::string& text, Conversation& c, ChatSettings& s);

const char* to_string(ContextPolicy p);
ContextPolicy parse_context_policy(const std::string& s);  // throws llm::Error

}  // namespace llm
