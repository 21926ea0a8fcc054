// `llm info` on stories260K (its shape is documented in ../shared/README.md) and on a
// tokenizer-only file.
#include <doctest/doctest.h>

#include "test_util.h"

using namespace llm;

TEST_CASE("llm info: stories260K hyperparameters, tokenizer and tensor table") {
  const std::string m = test::shared_file("models/stories260K.gguf");
  if (m.empty()) LLM_SKIP("../shared/models/stories260K.gguf absent");
  auto r = test::run_command(test::llm_binary() + " info -m " + m);
  REQUIRE(r.exit_code == 0);
  for (const char* want :
       {"architecture:    llama", "vocab:           512", "embedding:       64",
        "layers:          5", "heads:           8", "kv heads:        4 (GQA)",
        "head dim:        8", "feed-forward:    172", "rope:            base 10000",
        "tokenizer:       llama", "bos 1 '<s>'", "eos 2 '</s>'", "chat template:   absent",
        "tensors:         48", "32.00 bits per weight"}) {
    CAPTURE(want);
    CHECK(r.out.find(want) != std::string::npos);
  }
  CHECK(r.out.find("blk.4.ffn_down.weight") == std::string::npos);

  r = test::run_command(test::llm_binary() + " info --tensors -m " + m);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("blk.4.ffn_down.weight") != std::string::npos);
  CHECK(r.out.find("172 x 64") != std::string::npos);
}

TEST_CASE("llm info: vocab-only files and bad input") {
  const std::string v = test::shared_file("vocab/ggml-vocab-qwen2.gguf");
  if (v.empty()) LLM_SKIP("../shared/vocab absent");
  auto r = test::run_command(test::llm_binary() + " info -m " + v);
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("not runnable") != std::string::npos);
  CHECK(r.out.find("pre qwen2") != std::string::npos);
  CHECK(r.out.find("tensors:         0") != std::string::npos);

  r = test::run_command(test::llm_binary() + " info -m /nonexistent.gguf");
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("error:") != std::string::npos);
  r = test::run_command(test::llm_binary() + " info");
  CHECK(r.exit_code == 1);
}
