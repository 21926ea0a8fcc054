// Where `llm chat` gets its answers: the local engine (chat_local.cpp) or a running
// `llm serve` through its OpenAI API (chat_remote.cpp). Both take the conversation as
// OpenAI messages, stream the answer's text as it comes and stop early when asked.
#pragma once
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "server/chat_session.h"

namespace llm {

class Args;

struct AnswerStats {
  int prompt_tokens = -1;  // -1: unknown
  int generated_tokens = 0;
  int context_max = 0;  // tokens per sequence; 0: unknown
  double ttft = -1;     // seconds from sending to the first token; -1: none came
  double gen_s = 0;     // seconds from the first token to the last
};

struct Answer {
  enum class Kind {
    Done,         // finished: end of text or max tokens (see finish)
    Interrupted,  // stopped on request; text holds what came before
    Overflow,     // the conversation does not fit the context; nothing was generated
    Failed,       // error holds why
  };
  Kind kind = Kind::Done;
  std::string text;
  std::string finish;  // "stop" | "length" for Done
  std::string error;   // for Overflow and Failed
  AnswerStats stats;
};

class ChatBackend {
 public:
  virtual ~ChatBackend() = default;
  // "stories260K.gguf (llama) on cpu", "http://127.0.0.1:8080 (model-id)".
  virtual std::string describe() const = 0;
  // The model name the settings record.
  virtual std::string model_name() const = 0;

  // Answers the conversation (which ends with a user message). on_text receives the
  // answer's text piece by piece, always whole UTF-8 characters; stop_requested is polled
  // often, and true ends the answer as Kind::Interrupted. Both are called on the calling
  // thread.
  virtual Answer answer(const nlohmann::ordered_json& messages, const ChatSettings& s,
                        const std::function<void(std::string_view)>& on_text,
                        const std::function<bool()>& stop_requested) = 0;
};

// The local engine for -m MODEL with the model flags of `llm run` (see chat_cli.cpp).
// --chat-template NAME|FILE chooses the template; without it the model's own, else chatml
// with a warning on stderr.
std::unique_ptr<ChatBackend> make_local_chat(const Args& a);

// A running server. model "" asks the server (/v1/models) for its first model. Throws
// llm::Error when this build has no HTTP client (cpp-httplib) or the URL is malformed.
std::unique_ptr<ChatBackend> make_remote_chat(const std::string& url, const std::string& api_key,
                                              const std::string& model);

}  // namespace llm
