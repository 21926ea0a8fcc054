#include "engine/error.h"
#include "server/cli.h"

namespace llm {

int cmd_run(int, char**) { throw Error("'run' is being built"); }

}  // namespace llm
