// The speculative-decoding flags of the engine-driving commands (run, serve, chat, bench)
// and building the proposer they ask for (engine/spec_decode.h, engine/draft_model.h).
#pragma once
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>

#include "engine/backend.h"
#include "engine/model.h"
#include "engine/spec_decode.h"
#include "server/args.h"

namespace llm {

// --spec, --draft-model, --draft-quant, --spec-k, --spec-off-batch.
void add_spec_flags(Args& a);

struct SpecSetup {
  SpecMethod method = SpecMethod::None;
  std::unique_ptr<Proposer> proposer;  // null for --spec none
  SpecConfig config;                   // config.proposer points at `proposer`

  // "ngram, k <= 5" / "draft model F (q4_0), k <= 5" / "none".
  std::string describe() const;
};

// Reads the flags and builds the proposer: loads --draft-model (vocabulary checked against
// the target) or quantizes the target's weights (--spec self) onto a backend like `bo`
// with a KV cache of draft_kv_tokens. Call it before making the target's backend: on CUDA
// the target's KV cache takes most of the memory left. Throws llm::Error for bad flags.
SpecSetup make_spec(const Args& a, const Model& target, const BackendOptions& bo,
                    int64_t draft_kv_tokens);

// KV tokens for a draft serving sequences of up to ctx tokens: room for a few of them
// (sequences whose draft cache is evicted catch up again).
int64_t draft_kv_tokens_for(int64_t ctx);

// The speculation lines of a run's statistics (nothing when nothing was drafted).
void print_spec_stats(std::FILE* f, const SpecSetup& s, const SpecStats& st);

}  // namespace llm
