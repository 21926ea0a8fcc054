// `llm bench` for speculative decoding: a benchmark harness that measures the factors of
// the speed-up separately (random weights make drafts useless, so acceptance cannot be
// measured on the synthetic models of real shapes that reach the GPU machine):
//   r(k)  target forward over k+1 positions per sequence / over 1, at each batch
//   c     draft forward / target forward, one position per sequence, at each batch
//   replay (--spec-replay ALPHA): end to end through the engine with a replay proposer
//         that guesses the target's own greedy continuation recorded in an earlier pass,
//         each guess kept with probability ALPHA (else a wrong token), while the draft
//         model (--draft-model) runs on the same tokens for its real cost; the measured
//         speed-up over the target alone is printed next to the ideal
//         (1 - α^(k+1)) / ((1 - α)(c·k + r(k))) and their ratio.
// The replay proposer exists only here: it is never a serving option.
#pragma once
#include "engine/backend.h"
#include "server/args.h"

namespace llm {

// --spec-bench, --spec-replay, --draft-model, --spec-k, --spec-batches.
void add_bench_spec_flags(Args& a);
bool bench_spec_requested(const Args& a);
// Runs the harness with the model of -m on the device of `opt` (kv_tokens is chosen here).
int run_bench_spec(const Args& a, BackendOptions opt);

}  // namespace llm
