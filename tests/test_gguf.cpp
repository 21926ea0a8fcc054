#include <doctest/doctest.h>

#include "engine/gguf.h"
#include "test_util.h"

using namespace llm;

TEST_CASE("gguf: stories260K parses") {
  std::string p = test::shared_file("models/stories260K.gguf");
  if (p.empty()) LLM_SKIP("../shared/models/stories260K.gguf absent");
  GgufFile f = GgufFile::open(p);
  CHECK(f.version() == 3);
  CHECK(f.get_string("general.architecture") == "llama");
  CHECK(f.tensor("token_embd.weight") != nullptr);
}
