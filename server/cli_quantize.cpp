#include "engine/error.h"
#include "server/cli.h"

namespace llm {

int cmd_quantize(int, char**) { throw Error("'quantize' is being built"); }

}  // namespace llm
