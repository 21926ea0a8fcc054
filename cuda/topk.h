// Logit candidates on the device (engine/topk.h): each logits row reduced to its k best
// (id, logit) and the row's lse, max and count of finite logits, so that a step copies
// k pairs and 16 bytes per row back instead of the whole vocabulary. Checked against
// select_candidates (the CPU reference) in tests/test_cuda_topk.cpp.
//
// Two kernels. select: grid (n_chunks, n_rows), each block loads one chunk of a row into
// shared memory (sanitised as the sampler does), sums exp(l - chunk max) in double and
// radix-selects the chunk's k best by an order-preserving 32-bit key, then sorts them.
// merge: one block per row selects the k best of the chunks' lists the same way and
// combines the chunks' (max, sum) into the row's log-sum-exp. Selection order is the
// sampler's: logit descending, then id ascending.
#pragma once
#include "cuda/cuda_types.h"
#include "engine/topk.h"

namespace llm::cuda {

// Device bytes of the workspace for up to n_rows rows of n_vocab.
size_t candidates_workspace_bytes(int n_rows, int n_vocab);

// logits: (n_rows, n_vocab) f32;  workspace: candidates_workspace_bytes(n_rows, n_vocab);
// out: ids (n_rows, k), vals (n_rows, k), stats (n_rows); 1 <= k <= min(kMaxCandidates,
// n_vocab). Throws llm::Error for a k out of range or a vocabulary beyond 3.7M.
void select_candidates(const float* logits, int n_rows, int n_vocab, int k, void* workspace,
                       int32_t* ids, float* vals, CandidateStats* stats, cudaStream_t stream);

}  // namespace llm::cuda
