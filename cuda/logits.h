// Greedy selection on the device: the argmax of each logits row, so that greedy decoding
// copies 4 bytes per row back instead of the whole vocabulary.
#pragma once
#include "cuda/cuda_types.h"

namespace llm::cuda {

// logits: (n_rows, n_vocab) f32;  out: (n_rows) index of the largest logit (the lowest
// index among equal maxima; NaN never wins).
void argmax_rows(const float* logits, int n_rows, int n_vocab, int32_t* out, cudaStream_t stream);

}  // namespace llm::cuda
