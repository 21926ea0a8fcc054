// `llm chat -m MODEL`: answers from the engine in this process, stepped on the caller's
// thread (one conversation needs no loop thread; cancelling is then a plain call between
// steps). The prompt is built exactly as `llm serve` builds a chat request's, so that
// both give the same greedy answers.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "engine/chat_template.h"
#include "engine/engine.h"
#include "engine/error.h"
#include "engine/tokenizer.h"
#include "server/chat_backend.h"
#include "server/cli_common.h"

namespace llm {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

class LocalChat final : public ChatBackend {
 public:
  LocalChat(LoadedModel lm, const EngineConfig& cfg, ChatTemplate tmpl, std::string path)
      : lm_(std::move(lm)), tmpl_(std::move(tmpl)), path_(std::move(path)) {
    engine_ = std::make_unique<Engine>(*lm_.backend, cfg);
  }

  std::string describe() const override {
    return path_ + " (" + lm_.model->config.arch_name + ") on " + lm_.backend->name() +
           ", context " + std::to_string(engine_->max_model_len()) + " tokens";
  }
  std::string model_name() const override {
    return std::filesystem::path(path_).filename().string();
  }

  Answer answer(const nlohmann::ordered_json& messages, const ChatSettings& s,
                const std::function<void(std::string_view)>& on_text,
                const std::function<bool()>& stop_requested) override {
    Answer a;
    const Tokenizer& tok = *lm_.tokenizer;
    std::string prompt;
    try {
      prompt = tmpl_.render(messages, nullptr, true);
    } catch (const Error& e) {
      a.kind = Answer::Kind::Failed;
      a.error = std::string("the chat template rejected the conversation: ") + e.what();
      return a;
    }
    // Templates that write the BOS text themselves get no second BOS.
    const bool bos_in_text = tok.bos() >= 0 && prompt.rfind(tok.token_text(tok.bos()), 0) == 0;
    Request r;
    r.prompt = tok.encode(prompt, !bos_in_text, true);
    const int n_prompt = static_cast<int>(r.prompt.size());
    const int ctx = engine_->max_model_len();
    a.stats.prompt_tokens = n_prompt;
    a.stats.context_max = ctx;
    // The server's rule: the prompt plus max_tokens (at least one token) must fit.
    const int want = n_prompt + (s.max_tokens > 0 ? s.max_tokens : 1);
    if (want > ctx) {
      a.kind = Answer::Kind::Overflow;
      a.error = std::to_string(n_prompt) + " prompt tokens + " + std::to_string(want - n_prompt) +
                " for the answer exceed the context of " + std::to_string(ctx) + " tokens";
      return a;
    }
    r.sampling = s.sampling;
    r.stop.max_tokens = s.max_tokens > 0 ? s.max_tokens : ctx - n_prompt;
    r.stop.ignore_eos = s.ignore_eos;

    StreamDecoder dec(tok);
    bool finished = false;
    FinishReason why = FinishReason::None;
    std::string error;
    double t_first = -1, t_last = -1;
    const auto t0 = Clock::now();
    RequestId id = 0;
    try {
      id = engine_->submit(std::move(r), [&](const TokenEvent& ev) {
        if (ev.token >= 0) {
          t_last = seconds_since(t0);
          if (t_first < 0) t_first = t_last;
          ++a.stats.generated_tokens;
          const std::string piece = dec.push(ev.token);
          a.text += piece;
          if (!piece.empty()) on_text(piece);
        }
        if (ev.finished) {
          finished = true;
          why = ev.finish_reason;
          error = ev.error;
        }
      });
    } catch (const Error& e) {
      a.kind = Answer::Kind::Failed;
      a.error = e.what();
      return a;
    }
    bool cancelled = false;
    while (!finished) {
      if (!cancelled && stop_requested()) cancelled = engine_->cancel(id);
      if (!engine_->step() && !finished) {
        why = FinishReason::Error;
        error = "the engine stopped without finishing the answer";
        break;
      }
    }
    const std::string rest = dec.flush();
    a.text += rest;
    if (!rest.empty()) on_text(rest);
    a.stats.ttft = t_first;
    a.stats.gen_s = t_first >= 0 ? t_last - t_first : 0;
    switch (why) {
      case FinishReason::Cancelled:
        a.kind = Answer::Kind::Interrupted;
        break;
      case FinishReason::Error:
        a.kind = Answer::Kind::Failed;
        a.error = error;
        break;
      case FinishReason::Length:
        a.finish = "length";
        break;
      default:
        a.finish = "stop";
    }
    return a;
  }

 private:
  LoadedModel lm_;
  ChatTemplate tmpl_;
  std::string path_;
  std::unique_ptr<Engine> engine_;
};

}  // namespace

std::unique_ptr<ChatBackend> make_local_chat(const Args& a) {
  const auto t0 = Clock::now();
  LoadedModel lm = load_model(a);
  if (lm.tokenizer->n_vocab() != lm.model->config.n_vocab)
    throw Error("the model's tokenizer has " + std::to_string(lm.tokenizer->n_vocab()) +
                " tokens but token_embd.weight has " + std::to_string(lm.model->config.n_vocab) +
                " rows");
  ChatTemplate tmpl = pick_chat_template(a.str("chat-template"), lm.model->file, *lm.tokenizer, "chat");
  const EngineConfig cfg = engine_config(a, lm);
  std::string path = a.str("model");
  if (path.empty() && !a.positional().empty()) path = a.positional()[0];
  auto chat = std::make_unique<LocalChat>(std::move(lm), cfg, std::move(tmpl), path);
  std::fprintf(stderr, "llm chat: %s, loaded in %.2f s\n", chat->describe().c_str(),
               seconds_since(t0));
  return chat;
}

}  // namespace llm
