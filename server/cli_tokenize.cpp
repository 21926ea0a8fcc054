#include "engine/error.h"
#include "server/cli.h"

namespace llm {

int cmd_tokenize(int, char**) { throw Error("'tokenize' is being built"); }

}  // namespace llm
