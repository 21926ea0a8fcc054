// Helpers shared by the tests: where ../shared is, temporary files, running the binary.
#pragma once
#include <string>
#include <vector>

namespace llm::test {

// Path of a file under ../shared, or "" when ../shared (or the file) is absent.
// Tests that need it print a message and return early ("skipped: ...").
std::string shared_file(const std::string& rel);

// A fresh path in a per-process temporary directory (the file is not created).
std::string temp_path(const std::string& name);

// Path of the built `llm` executable.
std::string llm_binary();

struct CommandResult {
  int exit_code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};
// Runs a shell command line, capturing stdout and stderr separately.
CommandResult run_command(const std::string& cmdline);

// Whole-file helpers.
std::string read_text(const std::string& path);
void write_bytes(const std::string& path, const std::vector<unsigned char>& bytes);

}  // namespace llm::test

// Skip the rest of a test case with a visible message.
#define LLM_SKIP(msg)                   \
  do {                                  \
    MESSAGE("skipped: " << (msg));      \
    return;                             \
  } while (0)
