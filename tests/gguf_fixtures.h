// Small GGUF files for tests and fuzz seeds: a byte builder that knows nothing of
// engine/gguf (so that malformed files can be written and the reader is checked against
// an independent encoding), and tiny valid models written with GgufWriter.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "engine/gguf.h"

namespace llm::test {

// Little-endian GGUF bytes, appended field by field.
struct Bytes {
  std::vector<uint8_t> b;

  template <typename T>
  Bytes& put(T v) {
    // resize + memcpy rather than insert: GCC 12 warns falsely about the latter (PR 106199).
    const size_t n = b.size();
    b.resize(n + sizeof(T));
    std::memcpy(b.data() + n, &v, sizeof(T));
    return *this;
  }
  Bytes& u8(uint8_t v) { return put(v); }
  Bytes& u32(uint32_t v) { return put(v); }
  Bytes& u64(uint64_t v) { return put(v); }
  Bytes& str(std::string_view s) {
    u64(s.size());
    const size_t n = b.size();
    b.resize(n + s.size());
    if (!s.empty()) std::memcpy(b.data() + n, s.data(), s.size());
    return *this;
  }
  // magic, version, n_tensors, n_kv
  Bytes& header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
    return u32(0x46554747).u32(version).u64(n_tensors).u64(n_kv);  // "GGUF"
  }
  // key + type id (the value follows)
  Bytes& key(std::string_view k, GgufType t) { return str(k).u32(static_cast<uint32_t>(t)); }
  // name, dims, type, offset
  Bytes& tensor_info(std::string_view name, const std::vector<uint64_t>& dims, uint32_t type,
                     uint64_t offset) {
    str(name).u32(static_cast<uint32_t>(dims.size()));
    for (uint64_t d : dims) u64(d);
    return u32(type).u64(offset);
  }
  Bytes& pad_to(size_t align) {
    b.resize((b.size() + align - 1) / align * align, 0);
    return *this;
  }
  Bytes& zeros(size_t n) {
    b.resize(b.size() + n, 0);
    return *this;
  }
  size_t size() const { return b.size(); }
};

// A tiny but complete llama (or qwen2, with biases) model: width E (a multiple of 32 for
// block types), 2 heads of E/2, 1 KV head, F=2E, V=32, `n_layer` layers, weights of
// `wtype`, norms f32. Values are a deterministic pattern.
// kv_array: head_count_kv as a per-layer array (as some converters write it);
// rope_linear: linear RoPE scaling by 4.
inline void write_tiny_model(const std::string& path, const std::string& arch, DType wtype,
                             int n_layer = 1, int64_t E = 32, bool kv_array = false,
                             bool rope_linear = false) {
  const int64_t H = 2, HKV = 1, D = E / 2, F = 2 * E, V = 32;
  GgufWriter w;
  w.set_string("general.architecture", arch);
  w.set_string("general.name", "tiny " + arch);
  w.set_u32(arch + ".context_length", 128);
  w.set_u32(arch + ".embedding_length", E);
  w.set_u32(arch + ".block_count", static_cast<uint32_t>(n_layer));
  w.set_u32(arch + ".feed_forward_length", F);
  w.set_u32(arch + ".attention.head_count", H);
  if (kv_array)
    w.set_i32_array(arch + ".attention.head_count_kv", std::vector<int32_t>(size_t(n_layer), HKV));
  else
    w.set_u32(arch + ".attention.head_count_kv", HKV);
  if (rope_linear) {
    w.set_string(arch + ".rope.scaling.type", "linear");
    w.set_f32(arch + ".rope.scaling.factor", 4.0f);
  }
  w.set_u32(arch + ".rope.dimension_count", D);
  w.set_f32(arch + ".rope.freq_base", 10000.0f);
  w.set_f32(arch + ".attention.layer_norm_rms_epsilon", 1e-5f);
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<int32_t> types;
  for (int i = 0; i < V; ++i) {
    tokens.push_back(i < 3 ? std::string(i == 0   ? "<unk>"
                                         : i == 1 ? "<s>"
                                                  : "</s>")
                           : std::string(1, static_cast<char>('a' + i - 3)));
    scores.push_back(-static_cast<float>(i));
    types.push_back(i < 3 ? 3 : 1);
  }
  w.set_string("tokenizer.ggml.model", arch == "llama" ? "llama" : "gpt2");
  w.set_string_array("tokenizer.ggml.tokens", tokens);
  w.set_f32_array("tokenizer.ggml.scores", scores);
  w.set_i32_array("tokenizer.ggml.token_type", types);
  w.set_u32("tokenizer.ggml.bos_token_id", 1);
  w.set_u32("tokenizer.ggml.eos_token_id", 2);

  struct T {
    std::string name;
    DType type;
    std::vector<int64_t> shape;
  };
  std::vector<T> ts;
  ts.push_back({"token_embd.weight", wtype, {E, V}});
  for (int l = 0; l < n_layer; ++l) {
    std::string p = "blk." + std::to_string(l) + ".";
    ts.push_back({p + "attn_norm.weight", DType::F32, {E}});
    ts.push_back({p + "attn_q.weight", wtype, {E, H * D}});
    ts.push_back({p + "attn_k.weight", wtype, {E, HKV * D}});
    ts.push_back({p + "attn_v.weight", wtype, {E, HKV * D}});
    if (arch == "qwen2") {
      ts.push_back({p + "attn_q.bias", DType::F32, {H * D}});
      ts.push_back({p + "attn_k.bias", DType::F32, {HKV * D}});
      ts.push_back({p + "attn_v.bias", DType::F32, {HKV * D}});
    }
    ts.push_back({p + "attn_output.weight", wtype, {H * D, E}});
    ts.push_back({p + "ffn_norm.weight", DType::F32, {E}});
    ts.push_back({p + "ffn_gate.weight", wtype, {E, F}});
    ts.push_back({p + "ffn_up.weight", wtype, {E, F}});
    ts.push_back({p + "ffn_down.weight", wtype, {F, E}});
  }
  ts.push_back({"output_norm.weight", DType::F32, {E}});
  ts.push_back({"output.weight", wtype, {E, V}});
  for (const T& t : ts) w.add_tensor(t.name, t.type, t.shape);
  w.begin(path);
  for (size_t i = 0; i < ts.size(); ++i) {
    std::vector<uint8_t> data(w.tensor_bytes(i));
    for (size_t k = 0; k < data.size(); ++k) data[k] = static_cast<uint8_t>((k * 7 + i) & 0x3f);
    if (ts[i].type == DType::F32) {  // norms of 1.0, biases of 0.0
      std::vector<float> f(data.size() / 4, ts[i].name.find("norm") != std::string::npos);
      std::memcpy(data.data(), f.data(), data.size());
    }
    w.write_tensor_data(data.data(), data.size());
  }
  w.finish();
}

// Scalars of a GGUF type, for copy_value (the writer has setters for a few types only).
inline GgufValue scalar_value(GgufType t, int64_t i, uint64_t u = 0, double f = 0) {
  GgufValue v;
  v.type = t;
  v.i = i;
  v.u = u ? u : static_cast<uint64_t>(i);
  v.f = f;
  return v;
}
// A numeric array over `data` (which must outlive the writer's use).
inline GgufValue array_value(GgufType elem, const void* data, uint64_t count) {
  GgufValue v;
  v.type = GgufType::ARRAY;
  v.arr_type = elem;
  v.arr_count = count;
  v.arr_data = static_cast<const uint8_t*>(data);
  return v;
}

// Every metadata value type and tensors of several types and ranks. The values written
// are the ones test_gguf.cpp checks; keep the two in step.
struct AllTypesArrays {
  uint8_t u8[3] = {0, 7, 255};
  int8_t i8[3] = {-128, 0, 127};
  uint16_t u16[2] = {0, 65535};
  int16_t i16[2] = {-32768, 32767};
  uint32_t u32[2] = {0, 4294967295u};
  int32_t i32[3] = {-2147483647 - 1, 0, 2147483647};
  uint64_t u64[2] = {0, 18446744073709551615ull};
  int64_t i64[2] = {-9223372036854775807ll - 1, 9223372036854775807ll};
  float f32[3] = {-1.5f, 0.0f, 3.25e10f};
  double f64[2] = {-2.5e-300, 1e300};
  uint8_t boolean[3] = {1, 0, 1};
};

inline void write_all_types(const std::string& path) {
  static const AllTypesArrays a;
  GgufWriter w;
  w.set_u32("t.u32", 4000000000u);
  w.set_i32("t.i32", -2000000000);
  w.set_u64("t.u64", 18446744073709551615ull);
  w.set_f32("t.f32", 0.15625f);
  w.set_bool("t.bool_true", true);
  w.set_bool("t.bool_false", false);
  w.set_string("t.string", std::string("h\xc3\xa9llo\0world", 12));
  w.set_string("t.empty_string", "");
  w.copy_value("t.u8", scalar_value(GgufType::UINT8, 200));
  w.copy_value("t.i8", scalar_value(GgufType::INT8, -100));
  w.copy_value("t.u16", scalar_value(GgufType::UINT16, 60000));
  w.copy_value("t.i16", scalar_value(GgufType::INT16, -30000));
  w.copy_value("t.i64", scalar_value(GgufType::INT64, -5000000000ll));
  w.copy_value("t.f64", scalar_value(GgufType::FLOAT64, 0, 0, -1.0 / 3.0));
  w.copy_value("a.u8", array_value(GgufType::UINT8, a.u8, 3));
  w.copy_value("a.i8", array_value(GgufType::INT8, a.i8, 3));
  w.copy_value("a.u16", array_value(GgufType::UINT16, a.u16, 2));
  w.copy_value("a.i16", array_value(GgufType::INT16, a.i16, 2));
  w.copy_value("a.u32", array_value(GgufType::UINT32, a.u32, 2));
  w.set_i32_array("a.i32", {a.i32[0], a.i32[1], a.i32[2]});
  w.copy_value("a.u64", array_value(GgufType::UINT64, a.u64, 2));
  w.copy_value("a.i64", array_value(GgufType::INT64, a.i64, 2));
  w.set_f32_array("a.f32", {a.f32[0], a.f32[1], a.f32[2]});
  w.copy_value("a.f64", array_value(GgufType::FLOAT64, a.f64, 2));
  w.copy_value("a.bool", array_value(GgufType::BOOL, a.boolean, 3));
  w.set_string_array("a.string", {"one", "", "three"});
  w.set_f32_array("a.empty", {});
  w.set_u32("general.alignment", 32);
  // Tensors: ranks 1-4, plain and block types; sizes chosen so the last one ends the
  // file without padding (every proper prefix of the file is then truncated).
  w.add_tensor("t.f32_3d", DType::F32, {3, 2, 2});       // 48 bytes
  w.add_tensor("t.f16_2d", DType::F16, {5, 3});          // 30 bytes
  w.add_tensor("t.q8_0", DType::Q8_0, {64, 2});          // 136 bytes
  w.add_tensor("t.bf16_4d", DType::BF16, {2, 1, 3, 2});  // 24 bytes
  w.add_tensor("t.q4_k", DType::Q4_K, {256});            // 144 bytes
  w.add_tensor("t.last", DType::F32, {8, 2});            // 64 bytes
  w.begin(path);
  for (size_t i = 0; i < w.tensor_count(); ++i) {
    std::vector<uint8_t> data(w.tensor_bytes(i));
    for (size_t k = 0; k < data.size(); ++k) data[k] = static_cast<uint8_t>(i * 16 + k);
    w.write_tensor_data(data.data(), data.size());
  }
  w.finish();
}

}  // namespace llm::test
