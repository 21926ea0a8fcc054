// Subcommands of the `llm` executable. Each takes the arguments after its name,
// prints its own --help, and returns the process exit code. Bad input throws
// llm::Error; main() prints it as one line and exits 1.
#pragma once

namespace llm {

int cmd_run(int argc, char** argv);         // server/cli_run.cpp
int cmd_info(int argc, char** argv);        // server/cli_info.cpp
int cmd_tokenize(int argc, char** argv);    // server/cli_tokenize.cpp
int cmd_make_model(int argc, char** argv);  // server/cli_make_model.cpp
int cmd_quantize(int argc, char** argv);    // server/cli_quantize.cpp
int cmd_bench(int argc, char** argv);       // server/cli_bench.cpp
int cmd_serve(int argc, char** argv);       // server/cli_serve.cpp
int cmd_chat(int argc, char** argv);        // server/chat_cli.cpp

}  // namespace llm
