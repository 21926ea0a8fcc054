#include "engine/error.h"
#include "server/cli.h"

namespace llm {

int cmd_make_model(int, char**) { throw Error("'make_model' is being built"); }

}  // namespace llm
