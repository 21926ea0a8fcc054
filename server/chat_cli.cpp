#include "server/chat_cli.h"

#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>

#include "engine/error.h"
#include "server/args.h"
#include "server/cli.h"
#include "server/cli_common.h"

namespace llm {
namespace {

// The SIGINT handler's state. A signal handler takes no arguments, so these two flags
// are the one place where process-wide state is unavoidable; nothing else reads them.
volatile sig_atomic_t g_sigint = 0;     // Ctrl-C arrived during an answer
volatile sig_atomic_t g_answering = 0;  // an answer is being generated

void on_sigint(int) {
  // Outside an answer (a piped session waiting for input, a command running) Ctrl-C
  // ends the process as it would without the handler. In raw mode the line editor sees
  // Ctrl-C as a key instead, so this never hits an interactive prompt.
  if (!g_answering) _exit(130);
  g_sigint = 1;
}

void install_sigint() {
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
}

const char* kHelp =
    "commands:\n"
    "  /help           this list\n"
    "  /reset          forget the conversation (the system prompt stays)\n"
    "  /system [TEXT]  set the system prompt (without TEXT: remove it)\n"
    "  /save FILE      write the conversation and settings as JSON\n"
    "  /load FILE      continue a conversation saved with /save\n"
    "  /stats          the last answer's speed and the context in use\n"
    "  /quit           leave (also Ctrl-D, or Ctrl-C at an empty prompt)\n"
    "A line ending in '\\' continues on the next line; //text sends \"/text\".\n"
    "Ctrl-C during an answer stops it.\n";

std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  const size_t e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

int to_int(const Args& a, const char* name, int64_t def, int64_t lo, int64_t hi) {
  const int64_t v = a.i64(name, def);
  if (v < lo || v > hi)
    throw Error(std::string("llm chat: --") + name + " must be in [" + std::to_string(lo) + ", " +
                std::to_string(hi) + "], got " + std::to_string(v));
  return static_cast<int>(v);
}

}  // namespace

ChatRepl::ChatRepl(ChatBackend& backend, Conversation conv, ChatSettings settings, ChatOptions opt)
    : backend_(backend), conv_(std::move(conv)), settings_(std::move(settings)), opt_(opt) {
  if (opt_.interactive) editor_ = std::make_unique<LineEditor>(STDIN_FILENO, STDOUT_FILENO);
}

ChatRepl::~ChatRepl() = default;

std::string ChatRepl::paint(const char* sgr, const std::string& s) const {
  return opt_.color ? std::string("\x1b[") + sgr + "m" + s + "\x1b[0m" : s;
}

void ChatRepl::info(const std::string& s) {
  std::FILE* f = opt_.interactive ? stdout : stderr;
  std::fputs(s.c_str(), f);
  if (!s.empty() && s.back() != '\n') std::fputc('\n', f);
  std::fflush(f);
}

void ChatRepl::notice(const std::string& s) {
  std::fprintf(stderr, "%s\n", s.c_str());
  std::fflush(stderr);
}

int ChatRepl::run() {
  install_sigint();
  return opt_.interactive && !opt_.once ? run_interactive() : run_piped();
}

ChatRepl::TurnResult ChatRepl::turn(const std::string& message) {
  conv_.add("user", message);
  const auto on_text = [](std::string_view t) {
    std::fwrite(t.data(), 1, t.size(), stdout);
    std::fflush(stdout);
  };
  const auto stop_requested = [] { return g_sigint != 0; };

  Answer a;
  for (;;) {
    g_sigint = 0;
    g_answering = 1;
    if (editor_) editor_->set_mode(LineEditor::Mode::Generating);
    a = backend_.answer(conv_.messages(), settings_, on_text, stop_requested);
    if (editor_) editor_->set_mode(LineEditor::Mode::Cooked);
    g_answering = 0;
    if (a.kind != Answer::Kind::Overflow) break;
    if (settings_.context_policy == ContextPolicy::Error) {
      notice("llm chat: error: the conversation no longer fits the context (" + a.error +
             "); /reset to start afresh, or run with --context-policy drop");
      conv_.entries.pop_back();
      return TurnResult::Failed;
    }
    if (!conv_.drop_oldest_turn()) {
      notice("llm chat: error: this message alone does not fit the context (" + a.error + ")");
      conv_.entries.pop_back();
      return TurnResult::Failed;
    }
    notice("llm chat: the conversation outgrew the context (" + a.error +
           "); dropped the oldest turn" + (conv_.system.empty() ? "" : ", kept the system prompt"));
  }

  if (a.kind == Answer::Kind::Failed) {
    notice("llm chat: error: " + a.error);
    conv_.entries.pop_back();
    return TurnResult::Failed;
  }
  last_ = a;
  have_last_ = true;
  const bool interrupted = a.kind == Answer::Kind::Interrupted;
  conv_.add("assistant", a.text, interrupted);
  if (interrupted && opt_.interactive) std::fputs(paint("2", " [interrupted]").c_str(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
  return interrupted ? TurnResult::Interrupted : TurnResult::Answered;
}

void ChatRepl::print_stats() {
  if (!have_last_) {
    info("no answer yet");
    return;
  }
  const AnswerStats& s = last_.stats;
  std::string out = "last answer: " + std::to_string(s.generated_tokens) + " tokens";
  if (s.ttft >= 0) out += ", time to first token " + fmt("%.1f", s.ttft * 1e3) + " ms";
  if (s.generated_tokens > 1 && s.gen_s > 0)
    out += ", " + fmt("%.1f", (s.generated_tokens - 1) / s.gen_s) + " tokens/s";
  out += last_.kind == Answer::Kind::Interrupted ? " (interrupted)"
                                                 : " (finish: " + last_.finish + ")";
  out += "\ncontext: ";
  if (s.prompt_tokens >= 0) {
    out += std::to_string(s.prompt_tokens + s.generated_tokens) + " of " +
           (s.context_max > 0 ? std::to_string(s.context_max) : std::string("?")) + " tokens (" +
           std::to_string(s.prompt_tokens) + " prompt + " + std::to_string(s.generated_tokens) +
           " answer)";
  } else {
    out += "unknown";
  }
  out += "\nconversation: " + std::to_string(conv_.user_turns()) + " turns";
  info(out);
}

bool ChatRepl::command(const std::string& line) {
  const size_t sp = line.find_first_of(" \t\n");
  const std::string name = line.substr(0, sp);
  const std::string arg = sp == std::string::npos ? "" : trim(line.substr(sp + 1));
  if (name == "/quit" || name == "/exit" || name == "/bye") return false;
  if (name == "/help" || name == "/?") {
    info(kHelp);
  } else if (name == "/reset" || name == "/clear") {
    conv_.reset();
    have_last_ = false;
    info("conversation cleared" +
         std::string(conv_.system.empty() ? "" : "; the system prompt stays"));
  } else if (name == "/system") {
    conv_.system = arg;
    info(arg.empty() ? "system prompt removed" : "system prompt set");
  } else if (name == "/save") {
    if (arg.empty()) {
      notice("llm chat: /save needs a file name");
      return true;
    }
    std::ofstream f(arg, std::ios::binary | std::ios::trunc);
    f << transcript_json(conv_, settings_).dump(2) << "\n";
    f.close();
    if (!f) {
      notice("llm chat: error: cannot write '" + arg + "'");
      return true;
    }
    info("saved " + std::to_string(conv_.entries.size()) + " messages to " + arg);
  } else if (name == "/load") {
    std::ifstream f(arg, std::ios::binary);
    if (arg.empty() || !f) {
      notice("llm chat: error: cannot read '" + arg + "'");
      return true;
    }
    std::stringstream ss;
    ss << f.rdbuf();
    try {
      load_transcript(ss.str(), conv_, settings_);
    } catch (const Error& e) {
      notice("llm chat: error: " + arg + ": " + e.what());
      return true;
    }
    have_last_ = false;
    info("loaded " + std::to_string(conv_.entries.size()) + " messages (" +
         std::to_string(conv_.user_turns()) + " turns) from " + arg);
  } else if (name == "/stats") {
    print_stats();
  } else {
    notice("llm chat: unknown command " + name + " (/help lists them)");
  }
  return true;
}

int ChatRepl::run_interactive() {
  notice("Type a message and press Enter; /help lists commands; Ctrl-D or /quit leaves.");
  const std::string prompt = paint("1;32", ">") + " ";
  const std::string more = paint("2", "...") + " ";
  std::string pending;  // the lines of a multi-line message so far
  for (;;) {
    const LineEditor::Result r = editor_->read(pending.empty() ? prompt : more);
    if (r.status == LineEditor::Status::Eof) {
      if (pending.empty()) return 0;
      // Ctrl-D after a continuation sends what was written.
    } else if (r.status == LineEditor::Status::Interrupt) {
      if (pending.empty() && r.text.empty()) return 0;
      pending.clear();  // Ctrl-C gives up the message being written
      continue;
    }
    std::string text = r.text;
    editor_->add_history(text);
    const bool backslash = !text.empty() && text.back() == '\\';
    if (backslash) text.pop_back();
    if (r.status == LineEditor::Status::Line && (r.continued || backslash)) {
      pending += text + "\n";
      continue;
    }
    const std::string message = pending + text;
    pending.clear();
    if (trim(message).empty()) {
      if (r.status == LineEditor::Status::Eof) return 0;
      continue;
    }
    if (message[0] == '/' && message.compare(0, 2, "//") != 0) {
      if (!command(trim(message))) return 0;
    } else {
      turn(message[0] == '/' ? message.substr(1) : message);
    }
    if (r.status == LineEditor::Status::Eof) return 0;
  }
}

int ChatRepl::run_piped() {
  if (opt_.once) {
    std::stringstream ss;
    ss << std::cin.rdbuf();
    std::string message = ss.str();
    while (!message.empty() && (message.back() == '\n' || message.back() == '\r'))
      message.pop_back();
    if (trim(message).empty()) throw Error("llm chat: --once: the input is empty");
    const TurnResult t = turn(message);
    return t == TurnResult::Answered ? 0 : t == TurnResult::Interrupted ? 130 : 1;
  }
  std::string line, pending;
  bool more = true;
  while (more) {
    more = static_cast<bool>(std::getline(std::cin, line));
    if (!more && pending.empty()) break;
    if (more && !line.empty() && line.back() == '\r') line.pop_back();
    if (more && !line.empty() && line.back() == '\\') {
      line.pop_back();
      pending += line + "\n";
      continue;
    }
    const std::string message = pending + (more ? line : "");
    pending.clear();
    if (trim(message).empty()) continue;
    if (message[0] == '/' && message.compare(0, 2, "//") != 0) {
      if (!command(trim(message))) return 0;
      continue;
    }
    const TurnResult t = turn(message[0] == '/' ? message.substr(1) : message);
    if (t == TurnResult::Failed) return 1;
    if (t == TurnResult::Interrupted) return 130;
  }
  return 0;
}

int cmd_chat(int argc, char** argv) {
  Args a("chat", "-m MODEL [options] | --url URL [options]",
         "Talks with a model: interactively on a terminal, or answering what is piped in.\n"
         "With --url, the answers come from a running `llm serve` (-m then names its model).\n"
         "Commands inside the chat: /help, /reset, /system, /save, /load, /stats, /quit.");
  add_model_flags(a);
  a.flag("--url", "URL", "answer through the OpenAI API of a running server (http://HOST:PORT)");
  a.flag("--api-key", "KEY", "the server's API key (or env LLM_API_KEY)");
  a.flag("--system", "TEXT", "system prompt");
  a.flag("--chat-template", "NAME|FILE",
         "chat template: a built-in (chatml, llama3, llama2, zephyr, gemma, phi3) or a Jinja "
         "file",
         "the model's own");
  a.flag("--once", "", "read all of stdin as one message, answer it and exit");
  a.flag("--context-policy", "drop|error",
         "when the conversation outgrows the context: drop the oldest turns, or refuse", "drop");
  a.flag("-n, --n-predict", "N", "tokens per answer at most; -1: until end of text or full context",
         "-1");
  a.flag("--temp", "T", "temperature; 0: greedy", "0.8");
  a.flag("--top-k", "K", "keep the K most likely tokens; 0: off", "40");
  a.flag("--top-p", "P", "keep the most likely tokens up to probability mass P; 1: off", "0.95");
  a.flag("--min-p", "P", "drop tokens less likely than P times the best; 0: off", "0.05");
  a.flag("--repeat-penalty", "X", "penalise recently seen tokens; 1: off", "1.0");
  a.flag("--repeat-last-n", "N", "window of the repeat penalty in tokens", "64");
  a.flag("-s, --seed", "S", "random seed", "random");
  a.flag("--ignore-eos", "", "keep generating past end-of-text tokens");
  a.flag("--no-color", "", "no colours even on a terminal (also env NO_COLOR)");
  if (!a.parse(argc, argv)) return 0;

  ChatSettings st;
  SamplingParams& sp = st.sampling;
  sp.temperature = static_cast<float>(a.f64("temp", sp.temperature));
  sp.top_k = to_int(a, "top-k", sp.top_k, 0, 1 << 30);
  sp.top_p = static_cast<float>(a.f64("top-p", sp.top_p));
  sp.min_p = static_cast<float>(a.f64("min-p", sp.min_p));
  sp.repeat_penalty = static_cast<float>(a.f64("repeat-penalty", sp.repeat_penalty));
  sp.repeat_last_n = to_int(a, "repeat-last-n", sp.repeat_last_n, -1, 1 << 30);
  if (a.has("seed")) sp.seed = static_cast<uint64_t>(a.i64("seed", 0));
  st.max_tokens = to_int(a, "n-predict", -1, -1, 1 << 30);
  if (st.max_tokens == 0) throw Error("llm chat: -n must be positive or -1");
  st.context_policy = parse_context_policy(a.str("context-policy", "drop"));
  st.chat_template = a.str("chat-template");
  st.ignore_eos = a.on("ignore-eos");

  const std::string url = a.str("url");
  std::unique_ptr<ChatBackend> backend;
  if (url.empty()) {
    backend = make_local_chat(a);
  } else {
    if (a.has("chat-template"))
      throw Error(
          "llm chat: --chat-template is the server's choice with --url (llm serve "
          "--chat-template)");
    std::string key = a.str("api-key");
    if (key.empty())
      if (const char* env = std::getenv("LLM_API_KEY")) key = env;
    backend = make_remote_chat(url, key, a.str("model"));
  }
  st.model = backend->model_name();

  Conversation conv;
  conv.system = a.str("system");
  ChatOptions opt;
  opt.once = a.on("once");
  // Prompts and line editing need a terminal on both sides; otherwise lines are read
  // plainly and only answers go to stdout.
  opt.interactive = isatty(STDIN_FILENO) && isatty(STDOUT_FILENO) && !opt.once;
  const char* term = std::getenv("TERM");
  opt.color = opt.interactive && !a.on("no-color") && !std::getenv("NO_COLOR") &&
              !(term && std::strcmp(term, "dumb") == 0);
  ChatRepl repl(*backend, std::move(conv), std::move(st), opt);
  return repl.run();
}

}  // namespace llm
