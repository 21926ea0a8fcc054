// AVX2 dequantization of weight rows for the CPU backend's matmul tiles, bit-identical
// to quant/quants.h's dequantize_row (the same integer unpacking and the same float
// products, unfused), only 8 lanes at a time.
#pragma once
#include <cstdint>

#include "quant/formats.h"

namespace llm::cpu {

// Whether dequantize_row_avx2 can run on this CPU and handles type t.
bool has_dequantize_avx2(DType t);

// dst (n) = dequantize_row(t, src, n), faster. Requires has_dequantize_avx2(t).
void dequantize_row_avx2(DType t, const void* src, float* dst, int64_t n);

}  // namespace llm::cpu
