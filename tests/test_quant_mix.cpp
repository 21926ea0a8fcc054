// Tests of quant/mix: llama.cpp's per-tensor type choices for its quantization mixes,
// checked against the tensor type counts that llama.cpp prints when it loads published
// GGUF files, and against its source (src/llama-quant.cpp) where no count is published.
#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "quant/mix.h"

using namespace llm;

namespace {

struct Tensor {
  std::string name;
  int n_dims;
  int64_t n_cols;  // ne[0]
};

// The tensor list of a dense Llama/Qwen2 model as convert_hf_to_gguf writes it.
std::vector<Tensor> model_tensors(int n_layer, int64_t n_embd, int64_t n_ff, bool qkv_bias,
                                  bool has_output) {
  std::vector<Tensor> t = {{"token_embd.weight", 2, n_embd}, {"output_norm.weight", 1, n_embd}};
  if (has_output) t.push_back({"output.weight", 2, n_embd});
  for (int i = 0; i < n_layer; ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    for (const char* n : {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up"})
      t.push_back({p + n + ".weight", 2, n_embd});
    t.push_back({p + "ffn_down.weight", 2, n_ff});
    t.push_back({p + "attn_norm.weight", 1, n_embd});
    t.push_back({p + "ffn_norm.weight", 1, n_embd});
    if (qkv_bias)
      for (const char* n : {"attn_q.bias", "attn_k.bias", "attn_v.bias"})
        t.push_back({p + n, 1, n_embd});
  }
  return t;
}

std::map<DType, int> count_types(FileType ft, const MixModel& m, const std::vector<Tensor>& ts) {
  std::map<DType, int> c;
  for (const Tensor& t : ts) ++c[choose_tensor_type(ft, m, t.name, t.n_dims, t.n_cols, DType::F32)];
  return c;
}

DType type_of(FileType ft, const MixModel& m, const std::vector<Tensor>& ts,
              const std::string& name) {
  for (const Tensor& t : ts)
    if (t.name == name) return choose_tensor_type(ft, m, t.name, t.n_dims, t.n_cols, DType::F32);
  FAIL("no tensor " << name);
  return DType::F32;
}

}  // namespace

TEST_CASE("mix: file type names and GGUF numbers") {
  CHECK(file_type_from_name("q4_k_m") == FileType::Q4_K_M);
  CHECK(file_type_from_name("Q4_K_M") == FileType::Q4_K_M);
  CHECK(file_type_from_name("Q4_K") == FileType::Q4_K_M);  // llama-quantize alias
  CHECK(file_type_from_name("q5_k_m") == FileType::Q5_K_M);
  CHECK(file_type_from_name("Q5_K_S") == FileType::Q5_K_S);
  CHECK(file_type_from_name("f16") == FileType::F16);
  CHECK(file_type_from_name("bf16") == FileType::BF16);
  CHECK(file_type_from_name("q8_0") == FileType::Q8_0);
  CHECK_FALSE(file_type_from_name("q2_k").has_value());
  CHECK_FALSE(file_type_from_name("").has_value());
  // llama.h enum llama_ftype
  CHECK(gguf_file_type(FileType::F32) == 0);
  CHECK(gguf_file_type(FileType::F16) == 1);
  CHECK(gguf_file_type(FileType::Q4_0) == 2);
  CHECK(gguf_file_type(FileType::Q4_1) == 3);
  CHECK(gguf_file_type(FileType::Q8_0) == 7);
  CHECK(gguf_file_type(FileType::Q5_0) == 8);
  CHECK(gguf_file_type(FileType::Q5_1) == 9);
  CHECK(gguf_file_type(FileType::Q4_K_S) == 14);
  CHECK(gguf_file_type(FileType::Q4_K_M) == 15);
  CHECK(gguf_file_type(FileType::Q5_K_S) == 16);
  CHECK(gguf_file_type(FileType::Q5_K_M) == 17);
  CHECK(gguf_file_type(FileType::Q6_K) == 18);
  CHECK(gguf_file_type(FileType::BF16) == 32);
  CHECK(file_type_from_gguf(15) == FileType::Q4_K_M);
  CHECK_FALSE(file_type_from_gguf(4).has_value());  // Q4_1_SOME_F16, removed
  CHECK(std::string(file_type_name(FileType::Q5_K_M)) == "Q5_K_M");
  CHECK(default_tensor_type(FileType::Q4_K_M) == DType::Q4_K);
  CHECK(default_tensor_type(FileType::Q5_K_S) == DType::Q5_K);
  CHECK(default_tensor_type(FileType::Q8_0) == DType::Q8_0);
}

TEST_CASE("mix: Llama-2-7B Q4_K_M / Q5_K_M match llama.cpp's published files") {
  // Llama-2-7B: 32 layers, n_embd 4096, n_ff 11008, separate output.weight.
  const MixModel m{"llama", 32, 32, 32, true};
  const auto ts = model_tensors(32, 4096, 11008, false, true);
  REQUIRE(ts.size() == 291);

  // llama.cpp prints, loading Llama-2-7B Q4_K_M files (many logs in GitHub issues, e.g.
  // "type  f32:   65 tensors / type q4_K:  193 tensors / type q6_K:   33 tensors"),
  // and for Q5_K_M: f32 65, q5_K 193, q6_K 33.
  auto c4 = count_types(FileType::Q4_K_M, m, ts);
  CHECK(c4.size() == 3);
  CHECK(c4[DType::F32] == 65);
  CHECK(c4[DType::Q4_K] == 193);
  CHECK(c4[DType::Q6_K] == 33);
  auto c5 = count_types(FileType::Q5_K_M, m, ts);
  CHECK(c5.size() == 3);
  CHECK(c5[DType::F32] == 65);
  CHECK(c5[DType::Q5_K] == 193);
  CHECK(c5[DType::Q6_K] == 33);

  // Individual tensors as listed by llama.cpp for a 7B Llama (4096 x 11008) Q4_K_M file in
  // ggml-org/llama.cpp PR #3436 (LLaVA): blk.5.ffn_down q4_K, blk.6.attn_v q6_K,
  // blk.6.ffn_down q6_K, blk.6.attn_q q4_K, blk.29.ffn_down q6_K, blk.30.attn_v q6_K,
  // blk.30.ffn_up q4_K, output q6_K.
  const FileType q4m = FileType::Q4_K_M;
  CHECK(type_of(q4m, m, ts, "blk.5.ffn_down.weight") == DType::Q4_K);
  CHECK(type_of(q4m, m, ts, "blk.6.attn_v.weight") == DType::Q6_K);
  CHECK(type_of(q4m, m, ts, "blk.6.ffn_down.weight") == DType::Q6_K);
  CHECK(type_of(q4m, m, ts, "blk.6.attn_q.weight") == DType::Q4_K);
  CHECK(type_of(q4m, m, ts, "blk.29.ffn_down.weight") == DType::Q6_K);
  CHECK(type_of(q4m, m, ts, "blk.30.attn_v.weight") == DType::Q6_K);
  CHECK(type_of(q4m, m, ts, "blk.30.ffn_up.weight") == DType::Q4_K);
  CHECK(type_of(q4m, m, ts, "output.weight") == DType::Q6_K);
  CHECK(type_of(q4m, m, ts, "token_embd.weight") == DType::Q4_K);
  CHECK(type_of(q4m, m, ts, "output_norm.weight") == DType::F32);

  // The layers that get Q6_K attn_v and ffn_down in both _M mixes (use_more_bits for 32
  // layers: the first and last 4, and layers 6, 9, ..., 27).
  const std::vector<int> more = {0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31};
  for (int i = 0; i < 32; ++i) {
    CAPTURE(i);
    const bool bump = std::find(more.begin(), more.end(), i) != more.end();
    const std::string p = "blk." + std::to_string(i) + ".";
    CHECK(type_of(q4m, m, ts, p + "attn_v.weight") == (bump ? DType::Q6_K : DType::Q4_K));
    CHECK(type_of(q4m, m, ts, p + "ffn_down.weight") == (bump ? DType::Q6_K : DType::Q4_K));
    CHECK(type_of(FileType::Q5_K_M, m, ts, p + "ffn_down.weight") ==
          (bump ? DType::Q6_K : DType::Q5_K));
    CHECK(type_of(q4m, m, ts, p + "attn_k.weight") == DType::Q4_K);
  }
}

TEST_CASE("mix: Qwen2.5-0.5B Q4_K_M (rows of 896: fallbacks) matches the published file") {
  // Qwen2.5-0.5B: 24 layers, n_embd 896 (not a multiple of 256), n_ff 4864, q/k/v biases.
  // llama.cpp prints for the published Q4_K_M (which carries output.weight):
  // f32 121, q5_0 133, q8_0 13, q4_K 12, q6_K 12.
  const MixModel m{"qwen2", 24, 14, 2, true};
  const auto ts = model_tensors(24, 896, 4864, true, true);
  auto c = count_types(FileType::Q4_K_M, m, ts);
  CHECK(c.size() == 5);
  CHECK(c[DType::F32] == 121);
  CHECK(c[DType::Q5_0] == 133);
  CHECK(c[DType::Q8_0] == 13);
  CHECK(c[DType::Q4_K] == 12);
  CHECK(c[DType::Q6_K] == 12);
  CHECK(type_of(FileType::Q4_K_M, m, ts, "output.weight") == DType::Q8_0);
  CHECK(type_of(FileType::Q4_K_M, m, ts, "token_embd.weight") == DType::Q5_0);
  CHECK(type_of(FileType::Q4_K_M, m, ts, "blk.0.attn_v.weight") == DType::Q8_0);  // Q6_K -> Q8_0
  CHECK(type_of(FileType::Q4_K_M, m, ts, "blk.3.attn_v.weight") == DType::Q5_0);  // Q4_K -> Q5_0
  CHECK(type_of(FileType::Q4_K_M, m, ts, "blk.0.ffn_down.weight") == DType::Q6_K);
  CHECK(type_of(FileType::Q4_K_M, m, ts, "blk.0.attn_q.bias") == DType::F32);

  // Tied embeddings (no output.weight): token_embd takes the output's rule -> Q8_0 here.
  const MixModel tied{"qwen2", 24, 14, 2, false};
  const auto tt = model_tensors(24, 896, 4864, true, false);
  CHECK(type_of(FileType::Q4_K_M, tied, tt, "token_embd.weight") == DType::Q8_0);
  // Q5_K_M: Q5_K rows of 896 fall back to Q5_1.
  CHECK(type_of(FileType::Q5_K_M, tied, tt, "blk.3.attn_q.weight") == DType::Q5_1);
}

TEST_CASE("mix: other file types and rules from llama-quant.cpp") {
  const MixModel m{"llama", 32, 32, 32, true};
  const auto ts = model_tensors(32, 4096, 11008, false, true);
  // Legacy types: everything in that type except the output matrix, which gets Q6_K
  // (also visible in llama.cpp PR #2685's log of a Q4_0 stories110M: output.weight q6_K).
  CHECK(type_of(FileType::Q4_0, m, ts, "output.weight") == DType::Q6_K);
  CHECK(type_of(FileType::Q4_0, m, ts, "blk.0.attn_v.weight") == DType::Q4_0);
  CHECK(type_of(FileType::Q4_0, m, ts, "token_embd.weight") == DType::Q4_0);
  CHECK(type_of(FileType::Q8_0, m, ts, "output.weight") == DType::Q8_0);
  CHECK(type_of(FileType::Q6_K, m, ts, "output.weight") == DType::Q6_K);
  CHECK(type_of(FileType::Q6_K, m, ts, "blk.7.ffn_down.weight") == DType::Q6_K);
  // Float files convert every matrix, 1-D tensors keep their type.
  CHECK(type_of(FileType::F16, m, ts, "output.weight") == DType::F16);
  CHECK(type_of(FileType::BF16, m, ts, "blk.0.attn_q.weight") == DType::BF16);
  CHECK(choose_tensor_type(FileType::F16, m, "blk.0.attn_norm.weight", 1, 4096, DType::F32) ==
        DType::F32);
  CHECK(choose_tensor_type(FileType::Q4_K_M, m, "blk.0.attn_norm.weight", 1, 4096, DType::F16) ==
        DType::F16);
  // Q4_K_S: the first 4 attn_v and the first n/8 ffn_down get Q5_K.
  auto c = count_types(FileType::Q4_K_S, m, ts);
  CHECK(c[DType::Q5_K] == 8);
  CHECK(c[DType::Q6_K] == 1);
  CHECK(c[DType::Q4_K] == 217);
  CHECK(type_of(FileType::Q4_K_S, m, ts, "blk.3.attn_v.weight") == DType::Q5_K);
  CHECK(type_of(FileType::Q4_K_S, m, ts, "blk.4.attn_v.weight") == DType::Q4_K);
  // Q5_K_S: all Q5_K but the output.
  auto c5s = count_types(FileType::Q5_K_S, m, ts);
  CHECK(c5s[DType::Q5_K] == 225);
  CHECK(c5s[DType::Q6_K] == 1);
  // Llama-70B (80 layers, GQA): attn_v that would be Q4_K becomes Q5_K.
  const MixModel m70{"llama", 80, 64, 8, true};
  CHECK(choose_tensor_type(FileType::Q4_K_M, m70, "blk.40.attn_v.weight", 2, 8192, DType::F16) ==
        DType::Q5_K);
  CHECK(choose_tensor_type(FileType::Q4_K_M, m70, "blk.42.attn_v.weight", 2, 8192, DType::F16) ==
        DType::Q6_K);  // use_more_bits(42, 80): (42 - 10) % 3 == 2
  // Rows not divisible by 32: F16 (llama.cpp's last resort).
  CHECK(choose_tensor_type(FileType::Q4_K_M, m, "blk.0.attn_q.weight", 2, 100, DType::F32) ==
        DType::F16);
  CHECK(choose_tensor_type(FileType::Q8_0, m, "blk.0.attn_q.weight", 2, 100, DType::F32) ==
        DType::F16);
  // Not quantized: norms, 1-D, non-weights.
  CHECK_FALSE(tensor_is_quantizable("blk.0.ffn_norm.weight", 2));
  CHECK_FALSE(tensor_is_quantizable("blk.0.attn_q.bias", 2));
  CHECK_FALSE(tensor_is_quantizable("blk.0.attn_q.weight", 1));
  CHECK(tensor_is_quantizable("blk.0.attn_q.weight", 2));
}
