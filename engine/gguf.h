// GGUF v2/v3 reader (memory-mapped, every offset and length bounds-checked) and a
// streaming writer. Spec: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md
//
// File layout: magic "GGUF" | u32 version | u64 n_tensors | u64 n_kv | n_kv x KV |
// n_tensors x tensor info | padding to `general.alignment` (default 32) | data.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/error.h"
#include "quant/formats.h"

namespace llm {

enum class GgufType : uint32_t {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
};
const char* gguf_type_name(GgufType t);

// One metadata value. Scalars are decoded; strings and array payloads point into the
// mapped file (valid while the GgufFile lives).
struct GgufValue {
  GgufType type = GgufType::UINT8;
  int64_t i = 0;     // integer and bool scalars (uint64 values above INT64_MAX are kept in u)
  uint64_t u = 0;    // unsigned view of integer scalars
  double f = 0;      // FLOAT32 / FLOAT64
  std::string_view str;  // STRING
  // ARRAY
  GgufType arr_type = GgufType::UINT8;
  uint64_t arr_count = 0;
  const uint8_t* arr_data = nullptr;          // numeric arrays: arr_count packed elements
  std::vector<std::string_view> arr_strings;  // string arrays
};

struct GgufKV {
  std::string key;
  GgufValue value;
};

struct GgufTensor {
  std::string name;
  DType type = DType::F32;
  std::vector<int64_t> shape;  // ggml order: shape[0] is the contiguous (row) dimension
  uint64_t offset = 0;         // from the start of the data section
  size_t bytes = 0;
  const uint8_t* data = nullptr;  // into the mapping
  int64_t n_elements() const;
  int64_t rows() const { return shape.empty() ? 0 : n_elements() / shape[0]; }
};

class GgufFile {
 public:
  // Maps and parses a file. Throws llm::Error("<path>: <what is wrong>") on any defect.
  static GgufFile open(const std::string& path);
  // Parses a buffer the caller keeps alive (fuzzing, tests).
  static GgufFile parse(const uint8_t* data, size_t size, const std::string& name = "<memory>");

  GgufFile() = default;  // an empty file; assign from open() or parse()
  GgufFile(GgufFile&&) noexcept;
  GgufFile& operator=(GgufFile&&) noexcept;
  ~GgufFile();

  uint32_t version() const { return version_; }
  size_t alignment() const { return alignment_; }
  size_t file_size() const { return size_; }
  const std::string& path() const { return path_; }
  const std::vector<GgufKV>& metadata() const { return kvs_; }
  const std::vector<GgufTensor>& tensors() const { return tensors_; }

  const GgufValue* find(std::string_view key) const;
  const GgufTensor* tensor(std::string_view name) const;

  // Typed getters. nullopt when absent; throw llm::Error when present with a type that
  // cannot represent the request (integer getters accept any integer type in range).
  std::optional<std::string> get_string(std::string_view key) const;
  std::optional<int64_t> get_int(std::string_view key) const;
  std::optional<double> get_float(std::string_view key) const;  // accepts integers too
  std::optional<bool> get_bool(std::string_view key) const;
  std::optional<std::vector<std::string_view>> get_string_array(std::string_view key) const;
  std::optional<std::vector<float>> get_float_array(std::string_view key) const;
  std::optional<std::vector<int64_t>> get_int_array(std::string_view key) const;

 private:
  void parse_all();

  std::string path_;
  const uint8_t* base_ = nullptr;
  size_t size_ = 0;
  void* mapping_ = nullptr;  // non-null when we own an mmap
  uint32_t version_ = 0;
  size_t alignment_ = 32;
  std::vector<GgufKV> kvs_;
  std::vector<GgufTensor> tensors_;
};

// Streaming writer: set metadata and tensor infos, then write tensor data in the order
// the tensors were added. Never holds the data of more than one tensor.
class GgufWriter {
 public:
  GgufWriter() = default;
  GgufWriter(const GgufWriter&) = delete;
  GgufWriter& operator=(const GgufWriter&) = delete;
  ~GgufWriter() {
    if (f_) std::fclose(f_);
  }

  void set_u32(const std::string& key, uint32_t v);
  void set_i32(const std::string& key, int32_t v);
  void set_u64(const std::string& key, uint64_t v);
  void set_f32(const std::string& key, float v);
  void set_bool(const std::string& key, bool v);
  void set_string(const std::string& key, const std::string& v);
  void set_string_array(const std::string& key, const std::vector<std::string>& v);
  void set_f32_array(const std::string& key, const std::vector<float>& v);
  void set_i32_array(const std::string& key, const std::vector<int32_t>& v);
  // Copies a value (any type, arrays included) from another file, e.g. a vocabulary.
  void copy_value(const std::string& key, const GgufValue& v);

  // shape in ggml order (shape[0] contiguous).
  void add_tensor(const std::string& name, DType type, const std::vector<int64_t>& shape);
  // A tensor whose info points at the data of tensor `of` (an earlier add_tensor, not
  // itself an alias): same type and shape, same offset, no data of its own. GGUF allows
  // tensor infos to share data; the writers of data skip aliases.
  void add_tensor_alias(const std::string& name, size_t of);

  // Writes header and tensor infos. Throws llm::Error when the file cannot be written.
  void begin(const std::string& path);
  // Data of the next tensor (in add order); bytes must equal its size.
  void write_tensor_data(const void* data, size_t bytes);
  // The next tensor's data in consecutive pieces, so that a tensor larger than memory
  // can be streamed; the tensor is complete once its size has been written.
  void write_tensor_part(const void* data, size_t bytes);
  // Leaves the next tensor's data as a hole that reads as zeros (a sparse file): for
  // tests that need the header and tensor table of a multi-GB model, not its values.
  void skip_tensor_data();
  void finish();

  size_t tensor_count() const { return infos_.size(); }
  size_t tensor_bytes(size_t i) const;

 private:
  struct Info {
    std::string name;
    DType type;
    std::vector<int64_t> shape;
    uint64_t offset;
    size_t bytes;
    bool alias;  // shares an earlier tensor's data: nothing to write
  };
  std::vector<uint8_t> kv_bytes_;
  uint64_t n_kv_ = 0;
  std::vector<Info> infos_;
  uint64_t data_size_ = 0;
  size_t next_ = 0;
  uint64_t written_ = 0;
  size_t part_ = 0;  // bytes of the next tensor already written by write_tensor_part
  std::FILE* f_ = nullptr;
  std::string path_;
  static constexpr size_t kAlign = 32;
  void key(const std::string& k, GgufType t);
  void skip_aliases();  // moves next_ past tensors without data of their own
};

}  // namespace llm
