// Writes the seed corpus for fuzz_gguf: small valid GGUFs (tiny llama / qwen2 models in
// several weight types, every metadata type) and a few hand-made edge cases.
// Usage: fuzz_gguf_seeds DIR
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "gguf_fixtures.h"

using namespace llm;
using llm::test::Bytes;

static void write(const std::string& path, const Bytes& b) {
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(b.b.data()), static_cast<std::streamsize>(b.size()));
}

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  const std::string d = argv[1];
  test::write_tiny_model(d + "/llama_f32.gguf", "llama", DType::F32, 1, 8);
  test::write_tiny_model(d + "/llama_f16_2layers.gguf", "llama", DType::F16, 2, 8);
  test::write_tiny_model(d + "/qwen2_q8_0.gguf", "qwen2", DType::Q8_0);
  test::write_tiny_model(d + "/llama_kv_array_rope_linear.gguf", "llama", DType::F32, 2, 8,
                         /*kv_array=*/true, /*rope_linear=*/true);

  // Hyperparameters only, with the one tensor ModelConfig needs: small inputs where most
  // mutations land in the metadata that ModelConfig::from_gguf reads.
  for (int variant = 0; variant < 3; ++variant) {
    const std::string a = variant == 2 ? "qwen2" : "llama";
    GgufWriter w;
    w.set_string("general.architecture", a);
    w.set_u32(a + ".embedding_length", 8);
    w.set_u32(a + ".block_count", 1);
    w.set_u32(a + ".feed_forward_length", 16);
    w.set_u32(a + ".attention.head_count", 2);
    if (variant == 0)
      w.set_i32_array(a + ".attention.head_count_kv", {1});
    else
      w.set_u32(a + ".attention.head_count_kv", 1);
    w.set_u32(a + ".context_length", 64);
    w.set_u32(a + ".attention.key_length", 4);
    w.set_u32(a + ".attention.value_length", 4);
    w.set_u32(a + ".rope.dimension_count", 4);
    w.set_f32(a + ".rope.freq_base", 10000.0f);
    w.set_f32(a + ".attention.layer_norm_rms_epsilon", 1e-6f);
    if (variant == 1) {
      w.set_string(a + ".rope.scaling.type", "linear");
      w.set_f32(a + ".rope.scaling.factor", 2.0f);
    } else {
      w.set_f32(a + ".rope.scale_linear", 2.0f);
    }
    w.add_tensor("token_embd.weight", DType::F16, {8, 4});
    if (variant == 2) w.add_tensor("blk.0.attn_q.bias", DType::F32, {8});
    w.begin(d + "/config_" + std::to_string(variant) + ".gguf");
    for (size_t i = 0; i < w.tensor_count(); ++i) {
      std::vector<uint8_t> zero(w.tensor_bytes(i));
      w.write_tensor_data(zero.data(), zero.size());
    }
    w.finish();
  }
  test::write_all_types(d + "/all_types.gguf");

  // Nested arrays ([[1, 2], []] of u16) and a per-layer head_count_kv array.
  Bytes nested;
  nested.header(0, 3);
  nested.key("general.architecture", GgufType::STRING).str("llama");
  nested.key("n.nested", GgufType::ARRAY).u32(uint32_t(GgufType::ARRAY)).u64(2);
  nested.u32(uint32_t(GgufType::UINT16)).u64(2).put<uint16_t>(1).put<uint16_t>(2);
  nested.u32(uint32_t(GgufType::UINT16)).u64(0);
  nested.key("llama.attention.head_count_kv", GgufType::ARRAY).u32(uint32_t(GgufType::INT32));
  nested.u64(2).put<int32_t>(4).put<int32_t>(4);
  write(d + "/nested.gguf", nested);

  Bytes empty;
  empty.header(0, 0);
  write(d + "/empty.gguf", empty);

  // A v2 file with one tensor and a 64-byte alignment.
  Bytes v2;
  v2.header(1, 1, 2);
  v2.key("general.alignment", GgufType::UINT32).u32(64);
  v2.tensor_info("w", {4, 2}, uint32_t(DType::F32), 0);
  v2.pad_to(64).zeros(32);
  write(d + "/v2_align64.gguf", v2);
  return 0;
}
