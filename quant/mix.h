// Per-tensor type choice of llama.cpp's quantization mixes ("file types", e.g. Q4_K_M):
// which tensors of a model get which DType when a model is quantized to a file type.
// Follows llama.cpp's src/llama-quant.cpp (tensor_allows_quantization,
// llama_tensor_get_type_impl, tensor_type_fallback) without an importance matrix, for
// the dense (non-MoE) architectures this project runs.
#pragma once
#include <cstdint>
#include <optional>
#include <string_view>

#include "quant/formats.h"

namespace llm {

// Values are llama.cpp's `enum llama_ftype`, stored in GGUF as `general.file_type`.
enum class FileType : uint32_t {
  F32 = 0,  // LLAMA_FTYPE_ALL_F32
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q8_0 = 7,
  Q5_0 = 8,
  Q5_1 = 9,
  Q4_K_S = 14,
  Q4_K_M = 15,
  Q5_K_S = 16,
  Q5_K_M = 17,
  Q6_K = 18,
  BF16 = 32,
};

// "q4_k_m", "Q4_K_M", "Q4_K" (= Q4_K_M, as llama-quantize), "f16", "bf16", "f32", ...
// Case-insensitive; nullopt for names this project cannot produce.
std::optional<FileType> file_type_from_name(std::string_view name);
// "Q4_K_M", "F16", ...: the name llama-quantize takes on its command line.
const char* file_type_name(FileType ft);
// The `general.file_type` value of a file type, and back (nullopt for values this project
// does not produce, e.g. Q2_K or the IQ types).
inline uint32_t gguf_file_type(FileType ft) {
  return static_cast<uint32_t>(ft);
}
std::optional<FileType> file_type_from_gguf(uint32_t v);

// The type most tensors get (llama_ftype_get_default_type): Q4_K for Q4_K_M, etc.
DType default_tensor_type(FileType ft);

// What llama.cpp's choice looks at besides the tensor itself.
struct MixModel {
  std::string_view arch = "llama";  // general.architecture
  int n_layer = 0;                  // number of blocks
  int n_head = 0, n_head_kv = 0;    // a llama with 80 layers and GQA counts as "70B"
  bool has_output = true;           // false: token_embd doubles as the output matrix
};

// Whether llama.cpp quantizes a tensor at all: 2-D or more, named "*weight", not a norm
// (1-D tensors and norms keep their type).
bool tensor_is_quantizable(std::string_view name, int n_dims);

// The type `name` gets in a file of type `ft`. `n_dims` and `n_cols` (ne[0], the row
// length) are the tensor's shape; `current` its type in the source file, kept for tensors
// that are not quantized. The layer of a per-block tensor is read from its "blk.N." prefix.
// Rows whose length is not a multiple of the chosen type's block fall back as in
// llama.cpp (Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, and F16 when even that does not
// fit; where llama.cpp refuses a 32-element type outright, this returns F16).
DType choose_tensor_type(FileType ft, const MixModel& model, std::string_view name, int n_dims,
                         int64_t n_cols, DType current);

}  // namespace llm
