// The GGUF reader against files written two ways: by GgufWriter (round trips) and byte
// by byte with test::Bytes (an encoding of the spec independent of engine/gguf), and
// against malformed input, which must always give an llm::Error naming the problem.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <random>

#include "engine/gguf.h"
#include "engine/model.h"
#include "gguf_fixtures.h"
#include "test_util.h"

using namespace llm;
using llm::test::Bytes;

namespace {

std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

// The llm::Error message of parsing `b`, or "" when it parses. Any other exception is
// a test failure.
std::string parse_error(const std::vector<uint8_t>& b) {
  try {
    GgufFile::parse(b.data(), b.size(), "t.gguf");
  } catch (const Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    FAIL("non-llm::Error exception: " << e.what());
  }
  return "";
}
std::string parse_error(const Bytes& b) {
  return parse_error(b.b);
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

#define CHECK_GGUF_ERROR(bytes, part)                                                   \
  do {                                                                                  \
    std::string msg_ = parse_error(bytes);                                              \
    INFO("message: " << msg_);                                                          \
    CHECK_MESSAGE(contains(msg_, part), "expected an error naming '" << (part) << "'"); \
  } while (0)

// Exercises every getter on every key and ModelConfig, as a loader would; only
// llm::Error may come out of them.
void exercise(const GgufFile& f) {
  auto ok = [](auto&& fn) {
    try {
      fn();
    } catch (const Error&) {
    }
  };
  for (const GgufKV& kv : f.metadata()) {
    ok([&] { (void)f.get_string(kv.key); });
    ok([&] { (void)f.get_int(kv.key); });
    ok([&] { (void)f.get_float(kv.key); });
    ok([&] { (void)f.get_bool(kv.key); });
    ok([&] { (void)f.get_string_array(kv.key); });
    ok([&] { (void)f.get_float_array(kv.key); });
    ok([&] { (void)f.get_int_array(kv.key); });
  }
  uint8_t x = 0;
  for (const GgufTensor& t : f.tensors())
    if (t.bytes) x ^= t.data[0] ^ t.data[t.bytes - 1];  // inside the buffer (ASan checks)
  (void)x;
  ok([&] { (void)ModelConfig::from_gguf(f); });
}

size_t elem_size(GgufType t) {
  switch (t) {
    case GgufType::UINT8:
    case GgufType::INT8:
    case GgufType::BOOL:
      return 1;
    case GgufType::UINT16:
    case GgufType::INT16:
      return 2;
    case GgufType::UINT32:
    case GgufType::INT32:
    case GgufType::FLOAT32:
      return 4;
    default:
      return 8;
  }
}

// A file with one f32 tensor "w" of `dims` at `offset`, for tensor-info defects.
Bytes one_tensor(const std::vector<uint64_t>& dims, uint32_t type = 0, uint64_t offset = 0,
                 size_t data_bytes = 64) {
  Bytes b;
  b.header(1, 0).tensor_info("w", dims, type, offset).pad_to(32).zeros(data_bytes);
  return b;
}

}  // namespace

// ---------------------------------------------------------------- round trip ---

TEST_CASE("gguf: every metadata type and several tensors round-trip through GgufWriter") {
  const std::string path = test::temp_path("all_types.gguf");
  test::write_all_types(path);
  const std::vector<uint8_t> bytes = read_file(path);
  CHECK(GgufFile::open(path).metadata().size() == 28);  // mmap path and memory path agree
  const GgufFile f = GgufFile::parse(bytes.data(), bytes.size());
  const test::AllTypesArrays a;
  CHECK(f.version() == 3);
  CHECK(f.alignment() == 32);
  CHECK(f.metadata().size() == 28);

  // Scalars, with the GGUF type each was written as.
  auto type_of = [&](const char* k) {
    const GgufValue* v = f.find(k);
    REQUIRE(v != nullptr);
    return v->type;
  };
  CHECK(type_of("t.u8") == GgufType::UINT8);
  CHECK(type_of("t.i8") == GgufType::INT8);
  CHECK(type_of("t.u16") == GgufType::UINT16);
  CHECK(type_of("t.i16") == GgufType::INT16);
  CHECK(type_of("t.u32") == GgufType::UINT32);
  CHECK(type_of("t.i32") == GgufType::INT32);
  CHECK(type_of("t.u64") == GgufType::UINT64);
  CHECK(type_of("t.i64") == GgufType::INT64);
  CHECK(type_of("t.f32") == GgufType::FLOAT32);
  CHECK(type_of("t.f64") == GgufType::FLOAT64);
  CHECK(type_of("t.bool_true") == GgufType::BOOL);
  CHECK(type_of("t.string") == GgufType::STRING);
  CHECK(f.get_int("t.u8") == 200);
  CHECK(f.get_int("t.i8") == -100);
  CHECK(f.get_int("t.u16") == 60000);
  CHECK(f.get_int("t.i16") == -30000);
  CHECK(f.get_int("t.u32") == 4000000000ll);
  CHECK(f.get_int("t.i32") == -2000000000);
  CHECK(f.get_int("t.i64") == -5000000000ll);
  CHECK(f.find("t.u64")->u == 18446744073709551615ull);
  CHECK_THROWS_AS(f.get_int("t.u64"), Error);  // does not fit int64
  CHECK(f.get_float("t.f32") == 0.15625);
  CHECK(f.get_float("t.f64") == -1.0 / 3.0);
  CHECK(f.get_float("t.i16") == -30000.0);  // integers are numbers too
  CHECK(f.get_bool("t.bool_true") == true);
  CHECK(f.get_bool("t.bool_false") == false);
  CHECK(f.get_string("t.string") == std::string("h\xc3\xa9llo\0world", 12));
  CHECK(f.get_string("t.empty_string") == "");

  // Arrays of each element type.
  auto arr = [&](const char* k, GgufType elem, uint64_t n) {
    const GgufValue* v = f.find(k);
    REQUIRE(v != nullptr);
    CHECK(v->type == GgufType::ARRAY);
    CHECK(v->arr_type == elem);
    CHECK(v->arr_count == n);
  };
  arr("a.u8", GgufType::UINT8, 3);
  arr("a.i8", GgufType::INT8, 3);
  arr("a.u16", GgufType::UINT16, 2);
  arr("a.i16", GgufType::INT16, 2);
  arr("a.u32", GgufType::UINT32, 2);
  arr("a.i32", GgufType::INT32, 3);
  arr("a.u64", GgufType::UINT64, 2);
  arr("a.i64", GgufType::INT64, 2);
  arr("a.f32", GgufType::FLOAT32, 3);
  arr("a.f64", GgufType::FLOAT64, 2);
  arr("a.bool", GgufType::BOOL, 3);
  arr("a.string", GgufType::STRING, 3);
  arr("a.empty", GgufType::FLOAT32, 0);
  CHECK(f.get_int_array("a.u8") == std::vector<int64_t>{0, 7, 255});
  CHECK(f.get_int_array("a.i8") == std::vector<int64_t>{-128, 0, 127});
  CHECK(f.get_int_array("a.u16") == std::vector<int64_t>{0, 65535});
  CHECK(f.get_int_array("a.i16") == std::vector<int64_t>{-32768, 32767});
  CHECK(f.get_int_array("a.u32") == std::vector<int64_t>{0, 4294967295ll});
  CHECK(f.get_int_array("a.i32") == std::vector<int64_t>{a.i32[0], 0, a.i32[2]});
  CHECK(f.get_int_array("a.i64") == std::vector<int64_t>{a.i64[0], a.i64[1]});
  CHECK_THROWS_AS(f.get_int_array("a.u64"), Error);  // 2^64-1 does not fit int64
  CHECK(f.find("a.u64")->arr_data[8] == 0xff);
  CHECK(f.get_float_array("a.f32") == std::vector<float>{-1.5f, 0.0f, 3.25e10f});
  CHECK(f.get_float_array("a.f64") ==
        std::vector<float>{static_cast<float>(-2.5e-300), static_cast<float>(1e300)});
  CHECK(f.get_float_array("a.i8") == std::vector<float>{-128.0f, 0.0f, 127.0f});
  CHECK(f.get_float_array("a.empty") == std::vector<float>{});
  CHECK(std::memcmp(f.find("a.bool")->arr_data, a.boolean, 3) == 0);
  auto strs = f.get_string_array("a.string");
  REQUIRE(strs);
  CHECK(*strs == std::vector<std::string_view>{"one", "", "three"});

  // Wrong-type requests are errors naming the key; absent keys are nullopt.
  CHECK_THROWS_AS(f.get_string("t.u32"), Error);
  CHECK_THROWS_AS(f.get_int("t.f32"), Error);
  CHECK_THROWS_AS(f.get_float("t.string"), Error);
  CHECK_THROWS_AS(f.get_bool("t.u8"), Error);
  CHECK_THROWS_AS(f.get_string_array("a.f32"), Error);
  CHECK_THROWS_AS(f.get_float_array("a.string"), Error);
  CHECK_THROWS_AS(f.get_float_array("a.bool"), Error);
  CHECK_THROWS_AS(f.get_int_array("a.f32"), Error);
  try {
    (void)f.get_int("t.string");
  } catch (const Error& e) {
    CHECK(contains(e.what(), "t.string"));
  }
  CHECK_FALSE(f.get_int("absent").has_value());
  CHECK_FALSE(f.get_string_array("absent").has_value());

  // Tensors: shape, type, size, data, alignment.
  struct Want {
    const char* name;
    DType type;
    std::vector<int64_t> shape;
    size_t bytes;
  };
  const std::vector<Want> want = {
      {"t.f32_3d", DType::F32, {3, 2, 2}, 48}, {"t.f16_2d", DType::F16, {5, 3}, 30},
      {"t.q8_0", DType::Q8_0, {64, 2}, 136},   {"t.bf16_4d", DType::BF16, {2, 1, 3, 2}, 24},
      {"t.q4_k", DType::Q4_K, {256}, 144},     {"t.last", DType::F32, {8, 2}, 64}};
  REQUIRE(f.tensors().size() == want.size());
  const uint8_t* base = f.tensors()[0].data;  // start of the data section
  CHECK((base - bytes.data()) % 32 == 0);
  for (size_t i = 0; i < want.size(); ++i) {
    const GgufTensor* t = f.tensor(want[i].name);
    REQUIRE(t != nullptr);
    CHECK(t == &f.tensors()[i]);
    CHECK(t->type == want[i].type);
    CHECK(t->shape == want[i].shape);
    CHECK(t->bytes == want[i].bytes);
    CHECK(t->offset % 32 == 0);
    CHECK(t->data == base + t->offset);
    for (size_t k = 0; k < t->bytes; ++k) REQUIRE(t->data[k] == uint8_t(i * 16 + k));
  }
  CHECK(f.tensor("t.f32_3d")->n_elements() == 12);
  CHECK(f.tensor("t.f32_3d")->rows() == 4);
  CHECK(f.tensor("t.q4_k")->rows() == 1);
  CHECK(f.tensor("absent") == nullptr);
  // The last tensor ends the file exactly (the truncation test relies on it).
  const GgufTensor& last = f.tensors().back();
  CHECK(last.data + last.bytes == bytes.data() + bytes.size());

  SUBCASE("copy_value reproduces every value") {
    GgufWriter w;
    for (const GgufKV& kv : f.metadata()) w.copy_value(kv.key, kv.value);
    const std::string p2 = test::temp_path("copied.gguf");
    w.begin(p2);
    w.finish();
    const GgufFile g = GgufFile::open(p2);
    REQUIRE(g.metadata().size() == f.metadata().size());
    for (size_t i = 0; i < g.metadata().size(); ++i) {
      const GgufValue& x = f.metadata()[i].value;
      const GgufValue& y = g.metadata()[i].value;
      INFO("key " << f.metadata()[i].key);
      CHECK(g.metadata()[i].key == f.metadata()[i].key);
      CHECK(y.type == x.type);
      CHECK(y.u == x.u);
      CHECK(y.i == x.i);
      CHECK(y.f == x.f);
      CHECK(y.str == x.str);
      CHECK(y.arr_type == x.arr_type);
      CHECK(y.arr_count == x.arr_count);
      CHECK(y.arr_strings == x.arr_strings);
      if (x.arr_data)
        CHECK(std::memcmp(y.arr_data, x.arr_data, x.arr_count * elem_size(x.arr_type)) == 0);
    }
  }
}

TEST_CASE("gguf: the byte-level encoding matches the spec (v2, alignment, nested arrays)") {
  // Written by hand: a v2 file, 64-byte alignment, a nested array, a string with a NUL.
  Bytes b;
  b.header(2, 4, 2);
  b.key("general.alignment", GgufType::UINT32).u32(64);
  b.key("n.nested", GgufType::ARRAY).u32(uint32_t(GgufType::ARRAY)).u64(3);
  b.u32(uint32_t(GgufType::UINT16)).u64(2).put<uint16_t>(1).put<uint16_t>(2);
  b.u32(uint32_t(GgufType::STRING)).u64(1).str("x");
  b.u32(uint32_t(GgufType::ARRAY)).u64(1).u32(uint32_t(GgufType::INT8)).u64(0);
  b.key("s", GgufType::STRING).str(std::string("a\0b", 3));
  b.key("after", GgufType::INT32).put<int32_t>(-7);
  b.tensor_info("x", {4}, uint32_t(DType::F32), 0);
  b.tensor_info("y", {2, 2}, uint32_t(DType::F16), 64);
  b.pad_to(64);
  const size_t data_start = b.size();
  for (int i = 0; i < 4; ++i) b.put<float>(float(i) + 0.5f);
  b.zeros(48);
  for (uint16_t h : {0x3c00, 0x4000, 0x4200, 0x4400}) b.put<uint16_t>(h);

  const GgufFile f = GgufFile::parse(b.b.data(), b.size());
  CHECK(f.version() == 2);
  CHECK(f.alignment() == 64);
  const GgufValue* n = f.find("n.nested");
  REQUIRE(n != nullptr);
  CHECK(n->type == GgufType::ARRAY);
  CHECK(n->arr_type == GgufType::ARRAY);
  CHECK(n->arr_count == 3);
  CHECK_THROWS_AS(f.get_int_array("n.nested"), Error);
  CHECK(f.get_string("s") == std::string("a\0b", 3));
  CHECK(f.get_int("after") == -7);  // the reader skipped the nested array exactly
  REQUIRE(f.tensors().size() == 2);
  CHECK(f.tensors()[0].data == b.b.data() + data_start);
  float x3;
  std::memcpy(&x3, f.tensor("x")->data + 12, 4);
  CHECK(x3 == 3.5f);
  CHECK(f.tensor("y")->data == b.b.data() + data_start + 64);
}

TEST_CASE("gguf: the tiny fixture models load") {
  struct Case {
    const char* arch;
    DType type;
    int layers;
    int64_t width;
    bool kv_array, rope_linear;
  };
  for (const Case& c :
       {Case{"llama", DType::F32, 1, 8, false, false}, Case{"llama", DType::F16, 2, 8, true, true},
        Case{"qwen2", DType::Q8_0, 1, 32, false, false}}) {
    const std::string path = test::temp_path(std::string("tiny_") + c.arch + ".gguf");
    test::write_tiny_model(path, c.arch, c.type, c.layers, c.width, c.kv_array, c.rope_linear);
    auto m = Model::load(path);
    CHECK(m->config.arch_name == c.arch);
    CHECK(m->config.n_embd == c.width);
    CHECK(m->config.n_layer == c.layers);
    CHECK(m->config.n_head == 2);
    CHECK(m->config.n_head_kv == 1);
    CHECK(m->config.head_dim == c.width / 2);
    CHECK(m->config.n_vocab == 32);
    CHECK(m->config.has_qkv_bias == (std::string(c.arch) == "qwen2"));
    CHECK(m->config.rope_freq_scale == (c.rope_linear ? 0.25f : 1.0f));
    CHECK(m->weights.layers.size() == size_t(c.layers));
  }
}

TEST_CASE("gguf: stories260K parses with the expected hyperparameters") {
  std::string p = test::shared_file("models/stories260K.gguf");
  if (p.empty()) LLM_SKIP("../shared/models/stories260K.gguf absent");
  GgufFile f = GgufFile::open(p);
  CHECK(f.version() == 3);
  CHECK(f.get_string("general.architecture") == "llama");
  CHECK(f.tensor("token_embd.weight") != nullptr);
  const ModelConfig c = ModelConfig::from_gguf(f);
  CHECK(c.n_embd == 64);
  CHECK(c.n_layer == 5);
  CHECK(c.n_head == 8);
  CHECK(c.n_head_kv == 4);
  CHECK(c.n_vocab == 512);
  CHECK(c.n_ctx_train == 2048);
  CHECK(c.head_dim == 8);
  auto tokens = f.get_string_array("tokenizer.ggml.tokens");
  REQUIRE(tokens);
  CHECK(tokens->size() == 512);
  // Every tensor lies inside the file, aligned.
  for (const GgufTensor& t : f.tensors()) {
    CHECK(t.offset % f.alignment() == 0);
    CHECK(t.bytes == row_bytes(t.type, t.shape[0]) * size_t(t.rows()));
  }
}

// ------------------------------------------------------------- malformed input ---

TEST_CASE("gguf: bad magic and unsupported versions") {
  Bytes b;
  b.header(0, 0);
  b.b[3] = 'X';
  CHECK_GGUF_ERROR(b, "bad magic");
  CHECK_GGUF_ERROR(std::vector<uint8_t>{}, "truncated");
  CHECK_GGUF_ERROR(Bytes().header(0, 0, 1), "version 1");
  CHECK_GGUF_ERROR(Bytes().header(0, 0, 4), "version 4");
  CHECK_GGUF_ERROR(Bytes().header(0, 0, 0), "version 0");
  // A big-endian file (GGUF v3 allows them; we read little-endian only).
  Bytes be;
  be.b = {'G', 'G', 'U', 'F', 0, 0, 0, 3};
  be.zeros(16);
  CHECK_GGUF_ERROR(be, "big-endian");
  // Not even the header.
  CHECK_GGUF_ERROR(std::vector<uint8_t>({'G', 'G', 'U', 'F', 3, 0}), "truncated");
}

TEST_CASE("gguf: open() reports missing, empty and non-regular files") {
  auto open_error = [](const std::string& path) -> std::string {
    try {
      GgufFile::open(path);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  CHECK(contains(open_error("/nonexistent/dir/x.gguf"), "cannot open"));
  const std::string empty = test::temp_path("empty.gguf");
  test::write_bytes(empty, {});
  CHECK(contains(open_error(empty), "empty"));
  CHECK(contains(open_error("/tmp"), "not a regular file"));
}

TEST_CASE("gguf: truncation at every byte offset is an error") {
  const std::string path = test::temp_path("trunc.gguf");
  test::write_all_types(path);
  const std::vector<uint8_t> full = read_file(path);
  REQUIRE(full.size() > 1000);
  REQUIRE(full.size() < 8192);
  CHECK(parse_error(full).empty());
  int failures = 0;
  for (size_t n = 0; n < full.size(); ++n) {
    // A fresh heap copy of exactly n bytes, so that a sanitizer build sees any overread.
    std::vector<uint8_t> cut(full.begin(), full.begin() + ptrdiff_t(n));
    std::string msg = parse_error(cut);
    if (!contains(msg, "truncated")) {
      if (++failures <= 5) FAIL_CHECK("prefix of " << n << " bytes: '" << msg << "'");
    }
  }
  CHECK(failures == 0);
}

TEST_CASE("gguf: absurd counts and lengths") {
  const uint64_t huge = uint64_t(1) << 62;
  CHECK_GGUF_ERROR(Bytes().header(0, huge), "metadata count");
  CHECK_GGUF_ERROR(Bytes().header(~uint64_t(0), 0), "tensor count");
  CHECK_GGUF_ERROR(Bytes().header(huge, huge), "count");
  // Strings: a key, a value, an array element, a tensor name.
  Bytes key;
  key.header(0, 1).u64(huge).zeros(64);
  CHECK_GGUF_ERROR(key, "metadata key");
  Bytes val;
  val.header(0, 1).key("k", GgufType::STRING).u64(~uint64_t(0)).zeros(64);
  CHECK_GGUF_ERROR(val, "string value");
  Bytes just_over;
  just_over.header(0, 1).key("k", GgufType::STRING).u64(11).zeros(10);
  CHECK_GGUF_ERROR(just_over, "truncated");
  Bytes elem;
  elem.header(0, 1).key("k", GgufType::ARRAY).u32(uint32_t(GgufType::STRING)).u64(2);
  elem.str("ok").u64(huge);
  CHECK_GGUF_ERROR(elem, "array string");
  Bytes tname;
  tname.header(1, 0).u64(huge).zeros(64);
  CHECK_GGUF_ERROR(tname, "tensor name");
  // Arrays of each kind with absurd lengths.
  for (GgufType t : {GgufType::UINT8, GgufType::UINT32, GgufType::FLOAT64, GgufType::BOOL,
                     GgufType::STRING, GgufType::ARRAY}) {
    for (uint64_t n : {huge, ~uint64_t(0), uint64_t(1000)}) {
      Bytes a;
      a.header(0, 1).key("k", GgufType::ARRAY).u32(uint32_t(t)).u64(n).zeros(16);
      INFO("element type " << gguf_type_name(t) << ", length " << n);
      CHECK_GGUF_ERROR(a, "array length");
    }
  }
}

TEST_CASE("gguf: unknown types and bad values") {
  for (uint32_t t : {13u, 100u, 0xffffffffu}) {
    Bytes b;
    b.header(0, 1).key("k", GgufType(t)).zeros(16);
    CHECK_GGUF_ERROR(b, "unknown value type");
    Bytes a;
    a.header(0, 1).key("k", GgufType::ARRAY).u32(t).u64(1).zeros(16);
    CHECK_GGUF_ERROR(a, "unknown array element type");
  }
  for (uint32_t t : {4u, 5u, 31u, 1000u, 0x80000000u}) {  // 4, 5: removed Q4_2 / Q4_3
    INFO("tensor type " << t);
    CHECK_GGUF_ERROR(one_tensor({32}, t), "unknown type");
  }
  Bytes b;
  b.header(0, 1).key("flag", GgufType::BOOL).u8(2);
  CHECK_GGUF_ERROR(b, "bool");
  Bytes ba;
  ba.header(0, 1).key("flags", GgufType::ARRAY).u32(uint32_t(GgufType::BOOL)).u64(2).u8(1).u8(7);
  CHECK_GGUF_ERROR(ba, "bool");
  // Arrays nested 9 deep.
  Bytes deep;
  deep.header(0, 1).key("k", GgufType::ARRAY);
  for (int i = 0; i < 9; ++i) deep.u32(uint32_t(GgufType::ARRAY)).u64(1);
  deep.u32(uint32_t(GgufType::UINT8)).u64(0);
  CHECK_GGUF_ERROR(deep, "nested too deeply");
}

TEST_CASE("gguf: bad tensor infos") {
  CHECK(parse_error(one_tensor({16})).empty());  // the base case is valid
  CHECK_GGUF_ERROR(one_tensor({}), "dimensions");
  CHECK_GGUF_ERROR(one_tensor({1, 1, 1, 1, 1}), "dimensions");
  CHECK_GGUF_ERROR(one_tensor({16, 0}), "invalid dimension");
  CHECK_GGUF_ERROR(one_tensor({~uint64_t(0)}), "invalid dimension");
  // Products that overflow 64 bits, and ones that fit but are absurd.
  CHECK_GGUF_ERROR(one_tensor({1ull << 32, 1ull << 32, 1ull << 32}), "too many elements");
  CHECK_GGUF_ERROR(one_tensor({1ull << 40, 1ull << 40}), "too many elements");
  CHECK_GGUF_ERROR(one_tensor({1ull << 24, 1ull << 24}), "too many elements");
  CHECK_GGUF_ERROR(one_tensor({3ull << 20, 3ull << 20, 3ull << 20, 3ull << 20}),
                   "too many elements");
  // Block types need whole blocks per row.
  CHECK_GGUF_ERROR(one_tensor({31, 2}, uint32_t(DType::Q8_0)), "block size");
  CHECK_GGUF_ERROR(one_tensor({128}, uint32_t(DType::Q4_K)), "block size");
  // Offsets: misaligned, past the end, and where offset + size wraps around.
  CHECK_GGUF_ERROR(one_tensor({16}, 0, 1), "not aligned");
  CHECK_GGUF_ERROR(one_tensor({16}, 0, 33), "not aligned");
  CHECK_GGUF_ERROR(one_tensor({16}, 0, 32), "past the end");  // 64 bytes of data, needs 96
  CHECK_GGUF_ERROR(one_tensor({16}, 0, 0, 63), "past the end");
  CHECK_GGUF_ERROR(one_tensor({16}, 0, ~uint64_t(31)), "past the end");
  CHECK_GGUF_ERROR(one_tensor({1ull << 40}, 0, 0), "past the end");
  // Tensor infos that end where the data would start.
  Bytes b;
  b.header(1, 0).tensor_info("w", {16}, 0, 0);
  CHECK_GGUF_ERROR(b, "truncated");
}

TEST_CASE("gguf: duplicates") {
  Bytes k;
  k.header(0, 3).key("a", GgufType::UINT8).u8(1).key("b", GgufType::UINT8).u8(2);
  k.key("a", GgufType::STRING).str("again");
  CHECK_GGUF_ERROR(k, "duplicate metadata key 'a'");
  Bytes t;
  t.header(2, 0).tensor_info("w", {8}, 0, 0).tensor_info("w", {8}, 0, 32).pad_to(32).zeros(64);
  CHECK_GGUF_ERROR(t, "duplicate tensor name 'w'");
}

TEST_CASE("gguf: general.alignment must be a sane power of two") {
  auto with_alignment = [](GgufType type, uint64_t value, size_t width) {
    Bytes b;
    b.header(1, 1).key("general.alignment", type);
    for (size_t i = 0; i < width; ++i) b.u8(uint8_t(value >> (8 * i)));
    b.tensor_info("w", {4}, 0, 0).pad_to(64).zeros(64);
    return b;
  };
  CHECK(parse_error(with_alignment(GgufType::UINT32, 64, 4)).empty());
  CHECK(parse_error(with_alignment(GgufType::UINT64, 16, 8)).empty());
  for (uint64_t bad : {0ull, 3ull, 48ull, 1ull << 31, 0xffffffffull}) {
    INFO("alignment " << bad);
    CHECK_GGUF_ERROR(with_alignment(GgufType::UINT32, bad, 4), "general.alignment");
  }
  CHECK_GGUF_ERROR(with_alignment(GgufType::INT32, 0xffffffc0u, 4), "general.alignment");  // -64
  CHECK_GGUF_ERROR(with_alignment(GgufType::UINT64, ~uint64_t(0), 8), "general.alignment");
  Bytes f;
  f.header(0, 1).key("general.alignment", GgufType::FLOAT32).put<float>(32.0f);
  CHECK_GGUF_ERROR(f, "general.alignment");
  Bytes s;
  s.header(0, 1).key("general.alignment", GgufType::STRING).str("32");
  CHECK_GGUF_ERROR(s, "general.alignment");
}

// ----------------------------------------------------------------- robustness ---

TEST_CASE("gguf: thousands of random byte flips never crash") {
  // Fixed seed: deterministic. Each mutant must parse or throw llm::Error; what parses is
  // run through every getter and ModelConfig. A sanitizer build makes this stronger.
  std::vector<std::vector<uint8_t>> bases;
  const std::string p1 = test::temp_path("flip_all.gguf"), p2 = test::temp_path("flip_llama.gguf");
  test::write_all_types(p1);
  test::write_tiny_model(p2, "llama", DType::F32, 1, 8, true, true);
  bases.push_back(read_file(p1));
  bases.push_back(read_file(p2));
  std::mt19937_64 rng(20240611);
  int parsed = 0, rejected = 0;
  for (int iter = 0; iter < 6000; ++iter) {
    std::vector<uint8_t> b = bases[size_t(iter) % bases.size()];
    // Mostly in the header and metadata, where the structure is; sometimes anywhere.
    const size_t span = (iter % 4 == 0) ? b.size() : std::min<size_t>(b.size(), 768);
    const int flips = 1 + int(rng() % 4);
    for (int k = 0; k < flips; ++k) {
      const size_t pos = rng() % span;
      if (rng() % 2)
        b[pos] ^= uint8_t(1u << (rng() % 8));
      else
        b[pos] = uint8_t(rng());
    }
    try {
      GgufFile f = GgufFile::parse(b.data(), b.size());
      exercise(f);
      ++parsed;
    } catch (const Error&) {
      ++rejected;
    } catch (const std::exception& e) {
      FAIL("iteration " << iter << ": non-llm::Error exception " << e.what());
    }
  }
  MESSAGE(parsed << " mutants parsed, " << rejected << " rejected");
  CHECK(parsed > 100);
  CHECK(rejected > 100);
}

// ------------------------------------------------- ModelConfig on hostile values ---

namespace {

// The tiny llama model with some metadata replaced: keys in `drop` are left out and
// `add` writes replacements. Returns the llm::Error message of ModelConfig::from_gguf
// ("" when it accepts the file).
template <typename Add>
std::string config_error(const std::vector<std::string>& drop, Add add) {
  const std::string src = test::temp_path("cfg_src.gguf"), dst = test::temp_path("cfg.gguf");
  test::write_tiny_model(src, "llama", DType::F32, 2, 8);
  const GgufFile f = GgufFile::open(src);
  GgufWriter w;
  for (const GgufKV& kv : f.metadata())
    if (std::find(drop.begin(), drop.end(), kv.key) == drop.end()) w.copy_value(kv.key, kv.value);
  add(w);
  for (const GgufTensor& t : f.tensors()) w.add_tensor(t.name, t.type, t.shape);
  w.begin(dst);
  for (const GgufTensor& t : f.tensors()) w.write_tensor_data(t.data, t.bytes);
  w.finish();
  try {
    const GgufFile g = GgufFile::open(dst);
    (void)ModelConfig::from_gguf(g);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("gguf: ModelConfig rejects out-of-range hyperparameters with an llm::Error") {
  const std::string kv = "llama.attention.head_count_kv";
  CHECK(config_error({}, [](GgufWriter&) {}).empty());
  CHECK(config_error({kv}, [&](GgufWriter& w) { w.set_i32_array(kv, {1, 1}); }).empty());
  // Regression: a per-layer head_count_kv of 0 divided by zero (SIGFPE) in from_gguf.
  CHECK(contains(config_error({kv}, [&](GgufWriter& w) { w.set_i32_array(kv, {0, 0}); }), kv));
  CHECK(contains(config_error({kv}, [&](GgufWriter& w) { w.set_i32_array(kv, {0}); }), kv));
  CHECK(contains(config_error({kv}, [&](GgufWriter& w) { w.set_i32_array(kv, {-2, -2}); }), kv));
  CHECK(contains(config_error({kv}, [&](GgufWriter& w) { w.set_i32_array(kv, {}); }), kv));
  CHECK(contains(config_error({kv}, [&](GgufWriter& w) { w.set_i32_array(kv, {1, 2}); }), kv));
  // Values that do not fit an int used to be truncated silently (2^32 + 4 became 4).
  for (const char* k : {"llama.attention.key_length", "llama.rope.dimension_count",
                        "llama.context_length", "llama.embedding_length"}) {
    INFO(k);
    CHECK(contains(config_error({k}, [&](GgufWriter& w) { w.set_u64(k, (1ull << 32) + 4); }), k));
  }
  // n_head * head_dim must not overflow.
  CHECK(contains(
      config_error({"llama.attention.key_length"},
                   [](GgufWriter& w) { w.set_u32("llama.attention.key_length", 1u << 30); }),
      "key_length"));
  // NaN and infinite floats.
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  for (float bad : {nan, inf, -1.0f, 0.0f}) {
    INFO("value " << bad);
    CHECK(contains(config_error({"llama.attention.layer_norm_rms_epsilon"},
                                [&](GgufWriter& w) {
                                  w.set_f32("llama.attention.layer_norm_rms_epsilon", bad);
                                }),
                   "epsilon"));
    CHECK(contains(config_error({"llama.rope.freq_base"},
                                [&](GgufWriter& w) { w.set_f32("llama.rope.freq_base", bad); }),
                   "freq_base"));
    CHECK(contains(config_error({},
                                [&](GgufWriter& w) {
                                  w.set_string("llama.rope.scaling.type", "linear");
                                  w.set_f32("llama.rope.scaling.factor", bad);
                                }),
                   "scaling.factor"));
  }
}
