// Writing model files: synthetic models of real models' shapes (make_model), and
// re-typing the weights of an f32/f16/bf16 model (quantize_model). Both stream tensor by
// tensor (engine/tensor_stream.h), so a 7B model needs well under 1 GB of memory.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/model.h"
#include "quant/mix.h"

namespace llm {

// The hyperparameters of a real model (from its Hugging Face config.json).
struct ModelShape {
  const char* name;         // "llama2-7b": what --shape takes
  const char* description;  // "Llama 2 7B": written as general.name (+ " (synthetic)")
  Arch arch;
  int n_vocab, n_embd, n_layer, n_head, n_head_kv, n_ff, n_ctx;
  float rms_eps, rope_base;
  bool tied_output;     // no output.weight: the output matrix is token_embd
  bool qkv_bias;        // Qwen2's attn_{q,k,v}.bias
  float llama3_factor;  // Llama 3.1-style RoPE scaling (rope_freqs.weight); 0 = none
  float init_std;       // std of the matrices' weights
  float embd_std;       // std of token_embd (also the output matrix when tied)

  int64_t n_params() const;  // weights, counting a tied output once
};

const std::vector<ModelShape>& model_shapes();
// Throws llm::Error listing the shape names when `name` is unknown.
const ModelShape& find_shape(std::string_view name);

// Llama 3.1's RoPE frequency factors (rope_freqs.weight), (rope_dim / 2): convert_hf_to_gguf's
// formula with low_freq_factor 1, high_freq_factor 4, original context 8192.
std::vector<float> llama3_rope_factors(float factor, float rope_base, int rope_dim);

// The file types make-model and quantize write (quant/mix.h), in a fixed order, and
// their names for --help ("f32|f16|...|q6_k").
std::vector<FileType> all_file_types();
std::string file_type_list();
// Whether a file of this type holds block-quantized tensors (general.quantization_version).
bool file_type_quantized(FileType ft);

// The type tensor `name` of ggml shape `shape` gets in a file of type ft: 1-D tensors
// (norms, biases, rope factors) f32, matrices by quant/mix.h's llama.cpp rule. `pure`
// gives every matrix the file type's default type instead (llama-quantize --pure), where
// its rows divide into blocks: one matrix type throughout, for kernel benchmarks.
DType tensor_type_in(FileType ft, const MixModel& m, const std::string& name,
                     const std::vector<int64_t>& shape, bool pure);

struct MakeModelOptions {
  std::string shape = "tiny";
  FileType type = FileType::F16;
  std::string vocab_path;  // a GGUF whose tokenizer.* keys are copied; "" = synthesise SPM
  uint64_t seed = 1;
  int n_layers = 0;       // 0 = the shape's own; else fewer layers (quick tests)
  int n_threads = 0;      // 0 = hardware threads
  bool pure = false;      // every matrix in the file type's default type (tensor_type_in)
  bool data = true;       // false: matrices left as zero holes (sparse file), 1-D tensors written
  // Every layer holds layer 0's values, stored once: the tensor infos of blk.L.X point at
  // the data of blk.0.X (or, where a mix gives layer L another type, at the first layer
  // with that type, which holds layer 0's values in it). A 70B-shaped F16 file is then
  // 2.8 GB, not 138 GB; a loader still makes n_layer copies. For benchmarks only.
  bool share_layers = false;
  bool progress = false;  // per-tensor lines and a summary on stderr
};

// Writes a deterministic synthetic model: same options -> same bytes, whatever the
// thread count. Weights are seeded per tensor from (seed, tensor name), so a file with
// fewer layers holds the same values for the layers it has.
void make_model(const MakeModelOptions& opt, const std::string& out_path);

// Bytes of tensor data the model of these options will have on disk (for --list), without
// writing it (shared tensors counted once).
uint64_t model_file_bytes(const MakeModelOptions& opt);

struct QuantizeOptions {
  FileType type = FileType::Q4_K_M;
  int n_threads = 0;
  bool pure = false;
  bool progress = false;
};

// Converts every weight matrix of an f32/f16/bf16 model to `type` (per-tensor choice:
// tensor_type_in); 1-D tensors become f32. Copies all metadata, updating
// general.file_type and general.quantization_version. Throws llm::Error for quantized
// input, an unwritable output, or out_path naming the input.
void quantize_model(const std::string& in_path, const std::string& out_path,
                    const QuantizeOptions& opt);

}  // namespace llm
