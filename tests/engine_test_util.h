// Requests and references shared by the engine tests on the CPU (test_engine) and on
// CUDA (test_cuda_backend): greedy requests, random prompts, each request run alone, and
// the mixed batch of the batch-invariance checks.
#pragma once
#include <doctest/doctest.h>

#include <random>
#include <vector>

#include "engine/engine.h"

namespace llm::test {

inline Request greedy(std::vector<int32_t> prompt, int max_tokens) {
  Request r;
  r.prompt = std::move(prompt);
  r.sampling.temperature = 0;
  r.stop.max_tokens = max_tokens;
  return r;
}

inline std::vector<int32_t> random_tokens(std::mt19937& rng, int n, int lo, int hi) {
  std::vector<int32_t> t;
  for (int i = 0; i < n; ++i) t.push_back(std::uniform_int_distribution<int>(lo, hi)(rng));
  return t;
}

// Each request alone on a fresh engine with a roomy pool: the reference outputs.
inline std::vector<GenerationResult> run_alone(Backend& be, const EngineConfig& cfg,
                                               const std::vector<Request>& reqs) {
  std::vector<GenerationResult> out;
  for (const Request& r : reqs) {
    Engine e(be, cfg);
    out.push_back(e.generate_all({r})[0]);
    CHECK(e.metrics().preemptions == 0);
  }
  return out;
}

// Requests with mixed prompt lengths, some sharing a prefix (a whole block or more), one
// identical to another, greedy; a few sampled with a fixed seed.
inline std::vector<Request> invariance_requests(int n_vocab,
                                                const std::vector<int32_t>& seed_text) {
  std::mt19937 rng(11);
  std::vector<Request> reqs;
  for (int i = 0; i < 10; ++i) {
    std::vector<int32_t> p;
    if (i % 2 == 0)
      p.assign(seed_text.begin(), seed_text.begin() + 20 + i);  // shared start
    else
      p.push_back(seed_text[0]);
    const std::vector<int32_t> tail = random_tokens(rng, (13 * i) % 37, 0, n_vocab - 1);
    p.insert(p.end(), tail.begin(), tail.end());
    Request r = greedy(p, 12 + (7 * i) % 30);
    if (i == 7) {
      r.sampling.temperature = 1.0f;
      r.sampling.top_k = 0;
      r.sampling.top_p = 1.0f;
      r.sampling.min_p = 0.0f;
      r.sampling.seed = 77;
    }
    reqs.push_back(r);
  }
  reqs.push_back(reqs[4]);  // the same prompt twice: a prefix hit up to its last full block
  // Two block-aligned prompts: the second hits every block and recomputes its last token
  // in a copy of the first one's block (copy-on-write), or takes it over if it is free.
  reqs.push_back(greedy(std::vector<int32_t>(seed_text.begin(), seed_text.begin() + 32), 20));
  reqs.push_back(reqs.back());
  return reqs;
}

}  // namespace llm::test
