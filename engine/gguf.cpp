#include "engine/gguf.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <cstring>
#include <limits>
#include <unordered_set>

namespace llm {
namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" little-endian
constexpr int kMaxDims = 4;               // GGML_MAX_DIMS
constexpr int kMaxArrayDepth = 8;
constexpr uint64_t kMaxStringLen = 1ull << 30;
// Vectors are reserved from counts in the file only up to this many elements; past it
// they grow as elements are actually read, so a lying count cannot make us allocate
// far more memory than the file's size.
constexpr uint64_t kMaxReserve = 1 << 16;
constexpr const char* kTruncated = " (truncated or corrupt file)";

size_t scalar_size(GgufType t) {
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
    case GgufType::UINT64:
    case GgufType::INT64:
    case GgufType::FLOAT64:
      return 8;
    default:
      return 0;
  }
}

bool valid_type(uint32_t t) { return t <= static_cast<uint32_t>(GgufType::FLOAT64); }

template <typename T>
T load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// Bounds-checked cursor over the file. Every read says what it was reading, so that
// an error names the field.
class Reader {
 public:
  Reader(const uint8_t* base, size_t size, const std::string& name)
      : base_(base), size_(size), name_(name) {}

  [[noreturn]] void fail(const std::string& what) const {
    throw Error(name_ + ": invalid GGUF: " + what + " (at byte " + std::to_string(pos_) + ")");
  }
  size_t pos() const { return pos_; }
  size_t remaining() const { return size_ - pos_; }

  const uint8_t* take(uint64_t n, const char* what) {
    if (n > remaining())
      fail(std::string("file truncated while reading ") + what + " (need " + std::to_string(n) +
           " bytes, " + std::to_string(remaining()) + " left)");
    const uint8_t* p = base_ + pos_;
    pos_ += static_cast<size_t>(n);
    return p;
  }
  template <typename T>
  T read(const char* what) {
    return load<T>(take(sizeof(T), what));
  }
  std::string_view string(const char* what) {
    uint64_t len = read<uint64_t>(what);
    if (len > kMaxStringLen) fail(std::string(what) + " has absurd length " + std::to_string(len));
    const uint8_t* p = take(len, what);
    return std::string_view(reinterpret_cast<const char*>(p), static_cast<size_t>(len));
  }

 private:
  const uint8_t* base_;
  size_t size_;
  size_t pos_ = 0;
  const std::string& name_;
};

void read_value(Reader& r, GgufType type, GgufValue& out, int depth, const std::string& key) {
  out.type = type;
  switch (type) {
    case GgufType::UINT8: out.u = r.read<uint8_t>("u8 value"); out.i = (int64_t)out.u; break;
    case GgufType::INT8: out.i = r.read<int8_t>("i8 value"); out.u = (uint64_t)out.i; break;
    case GgufType::UINT16: out.u = r.read<uint16_t>("u16 value"); out.i = (int64_t)out.u; break;
    case GgufType::INT16: out.i = r.read<int16_t>("i16 value"); out.u = (uint64_t)out.i; break;
    case GgufType::UINT32: out.u = r.read<uint32_t>("u32 value"); out.i = (int64_t)out.u; break;
    case GgufType::INT32: out.i = r.read<int32_t>("i32 value"); out.u = (uint64_t)out.i; break;
    case GgufType::UINT64: out.u = r.read<uint64_t>("u64 value"); out.i = (int64_t)out.u; break;
    case GgufType::INT64: out.i = r.read<int64_t>("i64 value"); out.u = (uint64_t)out.i; break;
    case GgufType::FLOAT32: out.f = r.read<float>("f32 value"); break;
    case GgufType::FLOAT64: out.f = r.read<double>("f64 value"); break;
    case GgufType::BOOL: {
      uint8_t b = r.read<uint8_t>("bool value");
      if (b > 1) r.fail("key '" + key + "': bool value " + std::to_string(b) + " is not 0 or 1");
      out.i = b;
      out.u = b;
      break;
    }
    case GgufType::STRING: out.str = r.string("string value"); break;
    case GgufType::ARRAY: {
      if (depth >= kMaxArrayDepth) r.fail("key '" + key + "': arrays nested too deeply");
      uint32_t et = r.read<uint32_t>("array element type");
      if (!valid_type(et))
        r.fail("key '" + key + "': unknown array element type " + std::to_string(et));
      out.arr_type = static_cast<GgufType>(et);
      out.arr_count = r.read<uint64_t>("array length");
      if (out.arr_type == GgufType::STRING) {
        // Each string needs at least its 8-byte length: reject absurd counts up front.
        if (out.arr_count > r.remaining() / 8)
          r.fail("key '" + key + "': array length " + std::to_string(out.arr_count) +
                 " of strings exceeds the file size" + kTruncated);
        out.arr_strings.reserve(static_cast<size_t>(std::min(out.arr_count, kMaxReserve)));
        for (uint64_t k = 0; k < out.arr_count; ++k) out.arr_strings.push_back(r.string("array string"));
      } else if (out.arr_type == GgufType::ARRAY) {
        // Each inner array needs at least its type and length (12 bytes).
        if (out.arr_count > r.remaining() / 12)
          r.fail("key '" + key + "': array length " + std::to_string(out.arr_count) +
                 " of arrays exceeds the file size" + kTruncated);
        for (uint64_t k = 0; k < out.arr_count; ++k) {
          GgufValue inner;
          read_value(r, GgufType::ARRAY, inner, depth + 1, key);
        }
      } else {
        size_t es = scalar_size(out.arr_type);
        if (out.arr_count > r.remaining() / es)
          r.fail("key '" + key + "': array length " + std::to_string(out.arr_count) + " of " +
                 gguf_type_name(out.arr_type) + " exceeds the file size" + kTruncated);
        out.arr_data = r.take(out.arr_count * es, "array data");
        if (out.arr_type == GgufType::BOOL)
          for (uint64_t k = 0; k < out.arr_count; ++k)
            if (out.arr_data[k] > 1) r.fail("key '" + key + "': bool array element is not 0 or 1");
      }
      break;
    }
  }
}

double numeric_element(GgufType t, const uint8_t* p) {
  switch (t) {
    case GgufType::UINT8: return load<uint8_t>(p);
    case GgufType::INT8: return load<int8_t>(p);
    case GgufType::UINT16: return load<uint16_t>(p);
    case GgufType::INT16: return load<int16_t>(p);
    case GgufType::UINT32: return load<uint32_t>(p);
    case GgufType::INT32: return load<int32_t>(p);
    case GgufType::UINT64: return static_cast<double>(load<uint64_t>(p));
    case GgufType::INT64: return static_cast<double>(load<int64_t>(p));
    case GgufType::FLOAT32: return load<float>(p);
    case GgufType::FLOAT64: return load<double>(p);
    case GgufType::BOOL: return load<uint8_t>(p);
    default: return 0;
  }
}

bool is_integer(GgufType t) {
  switch (t) {
    case GgufType::UINT8:
    case GgufType::INT8:
    case GgufType::UINT16:
    case GgufType::INT16:
    case GgufType::UINT32:
    case GgufType::INT32:
    case GgufType::UINT64:
    case GgufType::INT64:
      return true;
    default:
      return false;
  }
}

}  // namespace

const char* gguf_type_name(GgufType t) {
  static const char* names[] = {"u8",  "i8",  "u16",    "i16",   "u32", "i32", "f32",
                                "bool", "string", "array", "u64", "i64", "f64"};
  uint32_t i = static_cast<uint32_t>(t);
  return i < 13 ? names[i] : "?";
}

int64_t GgufTensor::n_elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

GgufFile::GgufFile(GgufFile&& o) noexcept { *this = std::move(o); }

GgufFile& GgufFile::operator=(GgufFile&& o) noexcept {
  if (this != &o) {
    if (mapping_) munmap(mapping_, size_);
    path_ = std::move(o.path_);
    base_ = o.base_;
    size_ = o.size_;
    mapping_ = o.mapping_;
    version_ = o.version_;
    alignment_ = o.alignment_;
    kvs_ = std::move(o.kvs_);
    tensors_ = std::move(o.tensors_);
    o.mapping_ = nullptr;
    o.base_ = nullptr;
    o.size_ = 0;
  }
  return *this;
}

GgufFile::~GgufFile() {
  if (mapping_) munmap(mapping_, size_);
}

GgufFile GgufFile::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(path + ": cannot open: " + std::strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    throw Error(path + ": cannot stat: " + std::strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(path + ": not a regular file");
  }
  GgufFile g;
  g.path_ = path;
  g.size_ = static_cast<size_t>(st.st_size);
  if (g.size_ == 0) {
    ::close(fd);
    throw Error(path + ": invalid GGUF: file is empty");
  }
  void* m = mmap(nullptr, g.size_, PROT_READ, MAP_PRIVATE, fd, 0);
  int e = errno;
  ::close(fd);
  if (m == MAP_FAILED) throw Error(path + ": cannot mmap: " + std::strerror(e));
  g.mapping_ = m;
  g.base_ = static_cast<const uint8_t*>(m);
  g.parse_all();
  return g;
}

GgufFile GgufFile::parse(const uint8_t* data, size_t size, const std::string& name) {
  GgufFile g;
  g.path_ = name;
  g.base_ = data;
  g.size_ = size;
  g.parse_all();
  return g;
}

void GgufFile::parse_all() {
  Reader r(base_, size_, path_);
  if (size_ < 4)
    throw Error(path_ + ": not a GGUF file: only " + std::to_string(size_) + " bytes" + kTruncated);
  if (load<uint32_t>(base_) != kMagic)
    throw Error(path_ + ": not a GGUF file (bad magic; expected \"GGUF\")");
  r.take(4, "magic");
  version_ = r.read<uint32_t>("version");
  if (version_ == 1)
    r.fail("GGUF version 1 is not supported (re-convert the model with a current llama.cpp)");
  if (version_ == 0x02000000 || version_ == 0x03000000)
    r.fail("big-endian GGUF files are not supported (use the little-endian conversion)");
  if (version_ != 2 && version_ != 3)
    r.fail("unsupported GGUF version " + std::to_string(version_) + " (2 and 3 are supported)");
  uint64_t n_tensors = r.read<uint64_t>("tensor count");
  uint64_t n_kv = r.read<uint64_t>("metadata count");
  // A KV needs >= 8 (key len) + 4 (type) + 1 bytes; a tensor info >= 8 + 4 + 8 + 4 + 8.
  if (n_kv > r.remaining() / 13)
    r.fail("metadata count " + std::to_string(n_kv) + " exceeds the file size" + kTruncated);
  if (n_tensors > r.remaining() / 32)
    r.fail("tensor count " + std::to_string(n_tensors) + " exceeds the file size" + kTruncated);

  std::unordered_set<std::string_view> seen_keys;
  kvs_.reserve(static_cast<size_t>(std::min(n_kv, kMaxReserve)));
  for (uint64_t k = 0; k < n_kv; ++k) {
    GgufKV kv;
    std::string_view key = r.string("metadata key");
    kv.key = std::string(key);
    uint32_t t = r.read<uint32_t>("metadata value type");
    if (!valid_type(t)) r.fail("key '" + kv.key + "' has unknown value type " + std::to_string(t));
    read_value(r, static_cast<GgufType>(t), kv.value, 0, kv.key);
    if (!seen_keys.insert(key).second) r.fail("duplicate metadata key '" + kv.key + "'");
    kvs_.push_back(std::move(kv));
  }

  if (const GgufValue* a = find("general.alignment")) {
    if (!is_integer(a->type) || a->i <= 0 || a->i > (1 << 20) || (a->i & (a->i - 1)) != 0)
      throw Error(path_ + ": invalid GGUF: general.alignment must be a power of two");
    alignment_ = static_cast<size_t>(a->i);
  }

  std::unordered_set<std::string> seen_tensors;
  tensors_.reserve(static_cast<size_t>(std::min(n_tensors, kMaxReserve)));
  for (uint64_t k = 0; k < n_tensors; ++k) {
    GgufTensor t;
    t.name = std::string(r.string("tensor name"));
    uint32_t nd = r.read<uint32_t>("tensor dimension count");
    if (nd == 0 || nd > kMaxDims)
      r.fail("tensor '" + t.name + "' has " + std::to_string(nd) + " dimensions (1.." +
             std::to_string(kMaxDims) + " allowed)");
    uint64_t n = 1;
    for (uint32_t d = 0; d < nd; ++d) {
      uint64_t dim = r.read<uint64_t>("tensor dimension");
      if (dim == 0 || dim > (1ull << 40))
        r.fail("tensor '" + t.name + "' has invalid dimension " + std::to_string(dim));
      if (n > (std::numeric_limits<uint64_t>::max() >> 1) / dim)
        r.fail("tensor '" + t.name + "' has too many elements");
      n *= dim;
      t.shape.push_back(static_cast<int64_t>(dim));
    }
    if (n > (1ull << 46)) r.fail("tensor '" + t.name + "' has too many elements");
    uint32_t type = r.read<uint32_t>("tensor type");
    auto tr = dtype_traits(type);
    if (!tr) r.fail("tensor '" + t.name + "' has unknown type id " + std::to_string(type));
    t.type = static_cast<DType>(type);
    if (t.shape[0] % tr->block_elems != 0)
      r.fail("tensor '" + t.name + "' row of " + std::to_string(t.shape[0]) +
             " elements is not a multiple of the " + tr->name + " block size " +
             std::to_string(tr->block_elems));
    t.bytes = static_cast<size_t>(n / tr->block_elems * tr->block_bytes);
    t.offset = r.read<uint64_t>("tensor data offset");
    if (t.offset % alignment_ != 0)
      r.fail("tensor '" + t.name + "' data offset " + std::to_string(t.offset) +
             " is not aligned to " + std::to_string(alignment_));
    if (!seen_tensors.insert(t.name).second) r.fail("duplicate tensor name '" + t.name + "'");
    tensors_.push_back(std::move(t));
  }

  size_t data_start = (r.pos() + alignment_ - 1) / alignment_ * alignment_;
  if (n_tensors > 0 && data_start > size_)
    throw Error(path_ + ": invalid GGUF: file truncated before the tensor data");
  const size_t data_size = n_tensors > 0 ? size_ - data_start : 0;
  for (GgufTensor& t : tensors_) {
    if (t.offset > data_size || t.bytes > data_size - t.offset)
      throw Error(path_ + ": invalid GGUF: tensor '" + t.name + "' data (" + std::to_string(t.bytes) +
                  " bytes at offset " + std::to_string(t.offset) + ") runs past the end of the file" +
                  " (truncated download?)");
    t.data = base_ + data_start + t.offset;
  }
}

const GgufValue* GgufFile::find(std::string_view key) const {
  for (const GgufKV& kv : kvs_)
    if (kv.key == key) return &kv.value;
  return nullptr;
}

const GgufTensor* GgufFile::tensor(std::string_view name) const {
  for (const GgufTensor& t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

namespace {
[[noreturn]] void wrong_type(const std::string& path, std::string_view key, const GgufValue& v,
                             const char* want) {
  throw Error(path + ": metadata '" + std::string(key) + "' is " + gguf_type_name(v.type) +
              ", expected " + want);
}
}  // namespace

std::optional<std::string> GgufFile::get_string(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  if (v->type != GgufType::STRING) wrong_type(path_, key, *v, "string");
  return std::string(v->str);
}

std::optional<int64_t> GgufFile::get_int(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  if (!is_integer(v->type)) wrong_type(path_, key, *v, "an integer");
  if (v->type == GgufType::UINT64 && v->u > static_cast<uint64_t>(INT64_MAX))
    throw Error(path_ + ": metadata '" + std::string(key) + "' is out of range");
  return v->i;
}

std::optional<double> GgufFile::get_float(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  if (v->type == GgufType::FLOAT32 || v->type == GgufType::FLOAT64) return v->f;
  if (is_integer(v->type)) return static_cast<double>(v->i);
  wrong_type(path_, key, *v, "a number");
}

std::optional<bool> GgufFile::get_bool(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  if (v->type != GgufType::BOOL) wrong_type(path_, key, *v, "bool");
  return v->i != 0;
}

std::optional<std::vector<std::string_view>> GgufFile::get_string_array(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  if (v->type != GgufType::ARRAY || v->arr_type != GgufType::STRING)
    wrong_type(path_, key, *v, "array of strings");
  return v->arr_strings;
}

std::optional<std::vector<float>> GgufFile::get_float_array(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  if (v->type != GgufType::ARRAY || scalar_size(v->arr_type) == 0 || v->arr_type == GgufType::BOOL)
    wrong_type(path_, key, *v, "array of numbers");
  std::vector<float> out(static_cast<size_t>(v->arr_count));
  size_t es = scalar_size(v->arr_type);
  for (size_t k = 0; k < out.size(); ++k)
    out[k] = static_cast<float>(numeric_element(v->arr_type, v->arr_data + k * es));
  return out;
}

std::optional<std::vector<int64_t>> GgufFile::get_int_array(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  if (v->type != GgufType::ARRAY || !is_integer(v->arr_type))
    wrong_type(path_, key, *v, "array of integers");
  std::vector<int64_t> out(static_cast<size_t>(v->arr_count));
  size_t es = scalar_size(v->arr_type);
  for (size_t k = 0; k < out.size(); ++k) {
    const uint8_t* p = v->arr_data + k * es;
    switch (v->arr_type) {
      case GgufType::UINT64: {
        const uint64_t u = load<uint64_t>(p);
        if (u > static_cast<uint64_t>(INT64_MAX))
          throw Error(path_ + ": metadata '" + std::string(key) + "' element " + std::to_string(k) +
                      " is out of range");
        out[k] = static_cast<int64_t>(u);
        break;
      }
      case GgufType::INT64: out[k] = load<int64_t>(p); break;
      default: out[k] = static_cast<int64_t>(numeric_element(v->arr_type, p));
    }
  }
  return out;
}

// ------------------------------------------------------------------ writer ---

namespace {
void put_bytes(std::vector<uint8_t>& out, const void* p, size_t n) {
  const uint8_t* b = static_cast<const uint8_t*>(p);
  out.insert(out.end(), b, b + n);
}
template <typename T>
void put(std::vector<uint8_t>& out, T v) {
  put_bytes(out, &v, sizeof v);
}
void put_string(std::vector<uint8_t>& out, std::string_view s) {
  put<uint64_t>(out, s.size());
  put_bytes(out, s.data(), s.size());
}
}  // namespace

void GgufWriter::key(const std::string& k, GgufType t) {
  assert(f_ == nullptr && "metadata must be set before begin()");
  put_string(kv_bytes_, k);
  put<uint32_t>(kv_bytes_, static_cast<uint32_t>(t));
  ++n_kv_;
}

void GgufWriter::set_u32(const std::string& k, uint32_t v) { key(k, GgufType::UINT32); put(kv_bytes_, v); }
void GgufWriter::set_i32(const std::string& k, int32_t v) { key(k, GgufType::INT32); put(kv_bytes_, v); }
void GgufWriter::set_u64(const std::string& k, uint64_t v) { key(k, GgufType::UINT64); put(kv_bytes_, v); }
void GgufWriter::set_f32(const std::string& k, float v) { key(k, GgufType::FLOAT32); put(kv_bytes_, v); }
void GgufWriter::set_bool(const std::string& k, bool v) {
  key(k, GgufType::BOOL);
  put<uint8_t>(kv_bytes_, v ? 1 : 0);
}
void GgufWriter::set_string(const std::string& k, const std::string& v) {
  key(k, GgufType::STRING);
  put_string(kv_bytes_, v);
}
void GgufWriter::set_string_array(const std::string& k, const std::vector<std::string>& v) {
  key(k, GgufType::ARRAY);
  put<uint32_t>(kv_bytes_, static_cast<uint32_t>(GgufType::STRING));
  put<uint64_t>(kv_bytes_, v.size());
  for (const std::string& s : v) put_string(kv_bytes_, s);
}
void GgufWriter::set_f32_array(const std::string& k, const std::vector<float>& v) {
  key(k, GgufType::ARRAY);
  put<uint32_t>(kv_bytes_, static_cast<uint32_t>(GgufType::FLOAT32));
  put<uint64_t>(kv_bytes_, v.size());
  put_bytes(kv_bytes_, v.data(), v.size() * sizeof(float));
}
void GgufWriter::set_i32_array(const std::string& k, const std::vector<int32_t>& v) {
  key(k, GgufType::ARRAY);
  put<uint32_t>(kv_bytes_, static_cast<uint32_t>(GgufType::INT32));
  put<uint64_t>(kv_bytes_, v.size());
  put_bytes(kv_bytes_, v.data(), v.size() * sizeof(int32_t));
}

void GgufWriter::copy_value(const std::string& k, const GgufValue& v) {
  // Checked before anything is written, so that a refused value leaves the writer as it was.
  if (v.type == GgufType::ARRAY && v.arr_type == GgufType::ARRAY)
    throw Error("gguf writer: nested arrays cannot be copied (key '" + k + "')");
  key(k, v.type);
  size_t es = scalar_size(v.type);
  if (v.type == GgufType::STRING) {
    put_string(kv_bytes_, v.str);
  } else if (v.type == GgufType::ARRAY) {
    put<uint32_t>(kv_bytes_, static_cast<uint32_t>(v.arr_type));
    if (v.arr_type == GgufType::STRING) {
      put<uint64_t>(kv_bytes_, v.arr_strings.size());
      for (std::string_view s : v.arr_strings) put_string(kv_bytes_, s);
    } else {
      put<uint64_t>(kv_bytes_, v.arr_count);
      put_bytes(kv_bytes_, v.arr_data, v.arr_count * scalar_size(v.arr_type));
    }
  } else if (v.type == GgufType::FLOAT32) {
    put<float>(kv_bytes_, static_cast<float>(v.f));
  } else if (v.type == GgufType::FLOAT64) {
    put<double>(kv_bytes_, v.f);
  } else {
    uint64_t u = v.u;
    put_bytes(kv_bytes_, &u, es);  // little-endian: the low bytes are the value
  }
}

void GgufWriter::add_tensor(const std::string& name, DType type, const std::vector<int64_t>& shape) {
  assert(f_ == nullptr);
  assert(!shape.empty() && shape.size() <= 4);
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  const size_t bytes = row_bytes(type, shape[0]) * static_cast<size_t>(n / shape[0]);
  Info info{name, type, shape, data_size_, bytes, false};
  data_size_ += (info.bytes + kAlign - 1) / kAlign * kAlign;
  infos_.push_back(std::move(info));
}

void GgufWriter::add_tensor_alias(const std::string& name, size_t of) {
  assert(f_ == nullptr);
  assert(of < infos_.size() && !infos_[of].alias);
  Info info = infos_[of];
  info.name = name;
  info.alias = true;
  infos_.push_back(std::move(info));
}

void GgufWriter::skip_aliases() {
  while (next_ < infos_.size() && infos_[next_].alias && part_ == 0) ++next_;
}

size_t GgufWriter::tensor_bytes(size_t i) const { return infos_.at(i).bytes; }

void GgufWriter::begin(const std::string& path) {
  path_ = path;
  f_ = std::fopen(path.c_str(), "wb");
  if (!f_) throw Error(path + ": cannot create: " + std::strerror(errno));
  std::vector<uint8_t> head;
  put<uint32_t>(head, kMagic);
  put<uint32_t>(head, 3);
  put<uint64_t>(head, infos_.size());
  put<uint64_t>(head, n_kv_);
  put_bytes(head, kv_bytes_.data(), kv_bytes_.size());
  for (const Info& t : infos_) {
    put_string(head, t.name);
    put<uint32_t>(head, static_cast<uint32_t>(t.shape.size()));
    for (int64_t d : t.shape) put<uint64_t>(head, static_cast<uint64_t>(d));
    put<uint32_t>(head, static_cast<uint32_t>(t.type));
    put<uint64_t>(head, t.offset);
  }
  head.resize((head.size() + kAlign - 1) / kAlign * kAlign, 0);
  if (std::fwrite(head.data(), 1, head.size(), f_) != head.size())
    throw Error(path_ + ": write failed: " + std::strerror(errno));
}

void GgufWriter::write_tensor_data(const void* data, size_t bytes) {
  skip_aliases();
  assert(f_ && next_ < infos_.size());
  assert(bytes == infos_[next_].bytes);
  assert(written_ == infos_[next_].offset);
  if (std::fwrite(data, 1, bytes, f_) != bytes) throw Error(path_ + ": write failed: " + std::strerror(errno));
  size_t pad = (bytes + kAlign - 1) / kAlign * kAlign - bytes;
  static const uint8_t zeros[kAlign] = {};
  if (pad && std::fwrite(zeros, 1, pad, f_) != pad) throw Error(path_ + ": write failed: " + std::strerror(errno));
  written_ += bytes + pad;
  ++next_;
}

void GgufWriter::write_tensor_part(const void* data, size_t bytes) {
  skip_aliases();
  assert(f_ && next_ < infos_.size());
  assert(part_ + bytes <= infos_[next_].bytes);
  if (bytes && std::fwrite(data, 1, bytes, f_) != bytes)
    throw Error(path_ + ": write failed: " + std::strerror(errno));
  part_ += bytes;
  if (part_ < infos_[next_].bytes) return;
  const size_t total = part_;
  part_ = 0;
  size_t pad = (total + kAlign - 1) / kAlign * kAlign - total;
  static const uint8_t zeros[kAlign] = {};
  if (pad && std::fwrite(zeros, 1, pad, f_) != pad) throw Error(path_ + ": write failed: " + std::strerror(errno));
  written_ += total + pad;
  ++next_;
}

void GgufWriter::skip_tensor_data() {
  skip_aliases();
  assert(f_ && next_ < infos_.size() && part_ == 0);
  const uint64_t padded = (infos_[next_].bytes + kAlign - 1) / kAlign * kAlign;
  if (fseeko(f_, static_cast<off_t>(padded), SEEK_CUR) != 0)
    throw Error(path_ + ": seek failed: " + std::strerror(errno));
  written_ += padded;
  ++next_;
}

void GgufWriter::finish() {
  skip_aliases();
  assert(next_ == infos_.size() && "every tensor's data must be written");
  if (f_) {
    // A trailing skipped tensor leaves the file short: extend it to its full size.
    if (std::fflush(f_) != 0 || ftruncate(fileno(f_), ftello(f_)) != 0)
      throw Error(path_ + ": write failed: " + std::strerror(errno));
    int rc = std::fclose(f_);
    f_ = nullptr;
    if (rc != 0) throw Error(path_ + ": write failed: " + std::strerror(errno));
  }
}

}  // namespace llm
