// llm — one executable: GGUF models on a local GPU (or CPU), from the command line
// or behind an OpenAI-compatible server.
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

#include "engine/error.h"
#include "server/cli.h"

namespace {

struct Command {
  const char* name;
  int (*fn)(int, char**);
  const char* summary;
};

const Command kCommands[] = {
    {"serve", llm::cmd_serve, "serve the OpenAI API, a web chat and metrics over HTTP"},
    {"run", llm::cmd_run, "generate text from a prompt, streamed to stdout"},
    {"info", llm::cmd_info, "show a model's architecture, hyperparameters and tensor types"},
    {"tokenize", llm::cmd_tokenize, "print the token ids of a text"},
    {"chat", llm::cmd_chat, "talk with a model in the terminal, or answer what is piped in"},
    {"bench", llm::cmd_bench, "measure prefill and generation speed against the hardware ceiling"},
    {"make-model", llm::cmd_make_model, "write a synthetic GGUF model of a real model's shape"},
    {"quantize", llm::cmd_quantize, "convert a GGUF model's weights to another type"},
};

void usage(FILE* out) {
  std::fprintf(out,
               "usage: llm <command> [options]\n\n"
               "Run GGUF language models locally.\n\ncommands:\n");
  for (const Command& c : kCommands) std::fprintf(out, "  %-12s %s\n", c.name, c.summary);
  std::fprintf(out, "\n'llm <command> --help' describes a command's options.\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  std::string cmd = argv[1];
  if (cmd == "-h" || cmd == "--help" || cmd == "help") {
    usage(stdout);
    return 0;
  }
  if (cmd == "--version" || cmd == "version") {
    std::printf("llm 0.1.0\n");
    return 0;
  }
  for (const Command& c : kCommands) {
    if (cmd != c.name) continue;
    try {
      return c.fn(argc - 2, argv + 2);
    } catch (const llm::Error& e) {
      std::fprintf(stderr, "error: %s\n", e.what());
      return 1;
    } catch (const std::bad_alloc&) {
      std::fprintf(stderr, "error: out of memory\n");
      return 1;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "error: %s\n", e.what());
      return 1;
    }
  }
  std::fprintf(stderr, "llm: unknown command '%s'\n\n", cmd.c_str());
  usage(stderr);
  return 2;
}
