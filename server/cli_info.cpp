#include "engine/error.h"
#include "server/cli.h"

namespace llm {

int cmd_info(int, char**) { throw Error("'info' is being built"); }

}  // namespace llm
