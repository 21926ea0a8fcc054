// Grammar-constrained decoding through the whole engine on a real model: every answer
// parses and validates, whatever the sampling, and several constrained requests batched
// together keep their own grammar state.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "engine/backend.h"
#include "engine/engine.h"
#include "engine/model.h"
#include "engine/token_constraint.h"
#include "engine/tokenizer.h"
#include "test_util.h"

using namespace llm;

TEST_CASE("engine: json_schema constraint on stories260K, batched, greedy and sampled") {
  std::string path = test::shared_file("models/stories260K.gguf");
  if (path.empty()) LLM_SKIP("../shared/models/stories260K.gguf absent");
  auto model = Model::load(path);
  Tokenizer tok = Tokenizer::from_gguf(model->file);
  BackendOptions bo;
  bo.n_threads = 1;
  bo.kv_tokens = 4096;
  auto backend = make_cpu_backend(*model, bo);
  EngineConfig cfg;
  cfg.eog_ids = tok.eog_ids();
  Engine engine(*backend, cfg);

  const auto schema = nlohmann::ordered_json::parse(R"({
    "type": "object",
    "properties": {
      "name": {"type": "string", "maxLength": 16},
      "age": {"type": "integer", "minimum": 0, "maximum": 120},
      "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}, "maxItems": 3}
    },
    "required": ["name", "age", "tags"],
    "additionalProperties": false
  })");
  auto index = TokenIndex::build(tok);
  std::shared_ptr<const TokenConstraint> c = make_json_constraint(index, &schema);

  std::vector<Request> reqs;
  for (int i = 0; i < 6; ++i) {
    Request r;
    r.prompt = tok.encode("Once upon a time", true, false);
    r.sampling.temperature = i == 0 ? 0.0f : 1.0f;
    r.sampling.seed = 100 + static_cast<uint64_t>(i);
    r.stop.max_tokens = 200;
    r.constraint = c;  // the same start state for all: the engine clones it per sequence
    reqs.push_back(r);
  }
  Request free_req = reqs[0];
  free_req.constraint = nullptr;
  reqs.push_back(free_req);

  auto results = engine.generate_all(reqs);
  for (size_t i = 0; i + 1 < results.size(); ++i) {
    CAPTURE(i);
    CHECK(results[i].finish_reason == FinishReason::Stop);
    std::string text = tok.decode(results[i].tokens);
    CAPTURE(text);
    nlohmann::json j;
    REQUIRE_NOTHROW(j = nlohmann::json::parse(text));
    REQUIRE(j.is_object());
    CHECK(j.size() == 3);
    REQUIRE(j["name"].is_string());
    // maxLength counts characters (code points), not bytes.
    const std::string name = j["name"].get<std::string>();
    size_t chars = 0;
    for (unsigned char ch : name) chars += (ch & 0xC0) != 0x80;
    CHECK(chars <= 16);
    REQUIRE(j["age"].is_number_integer());
    CHECK(j["age"].get<int>() >= 0);
    CHECK(j["age"].get<int>() <= 120);
    REQUIRE(j["tags"].is_array());
    CHECK(j["tags"].size() <= 3);
    for (const auto& t : j["tags"]) CHECK((t == "a" || t == "b" || t == "c"));
  }
  // The unconstrained request in the same batch is the model's plain story, not JSON.
  std::string story = tok.decode(results.back().tokens);
  CHECK(story.find("Once") == std::string::npos);  // the continuation, not the prompt
  CHECK_FALSE(nlohmann::json::accept(story));
}
