#include "engine/error.h"
#include "server/cli.h"

namespace llm {

int cmd_bench(int, char**) { throw Error("'bench' is being built"); }

}  // namespace llm
