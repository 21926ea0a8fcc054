// `llm chat`: a conversation with a model in the terminal, or a question piped in and its
// answer read out.
//
// Interactive (stdin is a terminal): a prompt with line editing and history
// (server/line_editor.h), answers streamed as they are generated, slash commands, Ctrl-C
// to stop an answer, Ctrl-C or Ctrl-D at an empty prompt to leave. Piped: no prompts,
// colours or escape codes; every input line (or, with --once, the whole input) is one
// message, and its answer plus a newline is all that goes to stdout.
//
// In both, a line ending in '\' continues on the next line, and a line starting with '/'
// is a command (//text sends "/text").
#pragma once
#include <cstdio>
#include <memory>
#include <string>

#include "server/chat_backend.h"
#include "server/chat_session.h"
#include "server/line_editor.h"

namespace llm {

struct ChatOptions {
  bool interactive = false;  // stdin is a terminal
  bool color = false;        // stdout is a terminal that takes colours
  bool once = false;         // all of stdin is one message
};

class ChatRepl {
 public:
  ChatRepl(ChatBackend& backend, Conversation conv, ChatSettings settings, ChatOptions opt);
  ~ChatRepl();
  int run();  // the process exit code

 private:
  enum class TurnResult { Answered, Interrupted, Failed };
  int run_interactive();
  int run_piped();
  TurnResult turn(const std::string& message);
  // Runs a slash command; false when it asks to quit. Bad arguments print an error.
  bool command(const std::string& line);
  void print_stats();
  void info(const std::string& s);    // command output: stdout when interactive, else stderr
  void notice(const std::string& s);  // warnings and errors: stderr
  std::string paint(const char* sgr, const std::string& s) const;

  ChatBackend& backend_;
  Conversation conv_;
  ChatSettings settings_;
  ChatOptions opt_;
  std::unique_ptr<LineEditor> editor_;  // interactive only
  bool have_last_ = false;
  Answer last_;  // the last answer's stats, for /stats
};

}  // namespace llm
