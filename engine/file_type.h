// What a whole model file is quantized to, and the type each tensor gets in it.
//
// A file type is either one type for every weight matrix or one of llama.cpp's mixes
// (Q4_K_M, Q5_K_M) where some tensors get more bits. The per-tensor rule follows
// llama.cpp's llama_tensor_get_type (src/llama-quant.cpp) for the types we support:
//   - 1-D tensors (norms, biases, rope_freqs) stay F32: they are tiny and applied in f32.
//   - output.weight (or token_embd.weight when the output is tied to it) gets Q6_K in
//     every file type of 6 bits or fewer, because logits are the most sensitive matmul.
//   - Q4_K_M / Q5_K_M: attn_v and ffn_down get Q6_K in the first and last eighth of the
//     layers and every third layer between (llama.cpp's use_more_bits).
//   - a k-quant needs rows that are a multiple of 256 (Qwen2-0.5B's 896 is not): such
//     tensors fall back to Q5_0 (for Q4_K and Q5_K; llama.cpp uses Q5_1 for Q5_K, which
//     llm does not support) or Q8_0 (for Q6_K).
// TODO(models): move to quant/mix.h once the quant helper's version lands.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "quant/formats.h"

namespace llm {

// Values are llama.cpp's LLAMA_FTYPE, written as general.file_type. llama.cpp has no
// "all Q4_K" or "all Q5_K" type; we record those as Q4_K_S / Q5_K_S, its nearest.
enum class FileType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q8_0 = 7,
  Q5_0 = 8,
  Q4_K = 14,
  Q4_K_M = 15,
  Q5_K = 16,
  Q5_K_M = 17,
  Q6_K = 18,
  BF16 = 32,
};

// "q4_k_m", "Q4_K_M", "f16", ... (case-insensitive); nullopt for anything else.
std::optional<FileType> file_type_from_name(std::string_view name);
const char* file_type_name(FileType t);  // "q4_k_m"
std::string file_type_list();            // "f32|f16|bf16|q8_0|..."
const std::vector<FileType>& all_file_types();

// The type of the weight matrices that are not raised by the mix (Q4_K for Q4_K_M).
DType base_type(FileType t);
// Whether the file stores any block-quantized tensor (general.quantization_version).
bool is_quantized(FileType t);

// What the per-tensor rule needs to know about the model.
struct TensorContext {
  int n_layer = 0;         // blocks in the model (for ffn_down)
  int n_attn_v = 0;        // attn_v.weight tensors in the model (llama.cpp counts them)
  bool has_output = true;  // false when the output is tied to token_embd
};

// The type tensor `name` of ggml shape `shape` gets in a file of type ft.
DType tensor_type(FileType ft, const std::string& name, const std::vector<int64_t>& shape,
                  const TensorContext& ctx);

}  // namespace llm
