// Re-types the weights of an f32/f16/bf16 GGUF model: every row is dequantized to f32
// and quantized to the tensor's new type (tensor_type_in chooses it).
#include <sys/stat.h>

#include <cctype>
#include <chrono>
#include <cstdio>

#include "engine/convert.h"
#include "engine/tensor_stream.h"
#include "quant/quants.h"

namespace llm {
namespace {

bool same_file(const std::string& a, const std::string& b) {
  struct stat sa, sb;
  return stat(a.c_str(), &sa) == 0 && stat(b.c_str(), &sb) == 0 && sa.st_dev == sb.st_dev &&
         sa.st_ino == sb.st_ino;
}

bool is_float(DType t) {
  return t == DType::F32 || t == DType::F16 || t == DType::BF16;
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

std::vector<FileType> all_file_types() {
  // Every general.file_type value quant/mix.h knows, in its numeric order.
  std::vector<FileType> out;
  for (uint32_t v = 0; v < 64; ++v)
    if (auto ft = file_type_from_gguf(v)) out.push_back(*ft);
  return out;
}

std::string file_type_list() {
  std::string s;
  for (FileType ft : all_file_types()) s += (s.empty() ? "" : "|") + lower(file_type_name(ft));
  return s;
}

bool file_type_quantized(FileType ft) {
  return !is_float(default_tensor_type(ft));
}

DType tensor_type_in(FileType ft, const MixModel& m, const std::string& name,
                     const std::vector<int64_t>& shape, bool pure) {
  if (shape.size() < 2) return DType::F32;  // norms and biases are applied in f32
  const int n_dims = static_cast<int>(shape.size());
  const DType def = default_tensor_type(ft);
  if (pure && tensor_is_quantizable(name, n_dims) && shape[0] % traits(def).block_elems == 0)
    return def;
  return choose_tensor_type(ft, m, name, n_dims, shape[0], DType::F32);
}

void quantize_model(const std::string& in_path, const std::string& out_path,
                    const QuantizeOptions& opt) {
  const auto t0 = std::chrono::steady_clock::now();
  if (in_path == out_path || same_file(in_path, out_path))
    throw Error("quantize: the output " + out_path + " is the input; choose another file name");
  const GgufFile in = GgufFile::open(in_path);

  for (const GgufTensor& t : in.tensors()) {
    if (!is_float(t.type))
      throw Error(in_path + ": tensor '" + t.name + "' is already quantized (" +
                  dtype_name(t.type) + "); quantize from the f32, f16 or bf16 model instead");
  }
  MixModel mix;
  const std::string arch = in.get_string("general.architecture").value_or("llama");
  mix.arch = arch;
  mix.n_layer = static_cast<int>(in.get_int(arch + ".block_count").value_or(0));
  mix.n_head = static_cast<int>(in.get_int(arch + ".attention.head_count").value_or(0));
  mix.n_head_kv =
      static_cast<int>(in.get_int(arch + ".attention.head_count_kv").value_or(mix.n_head));
  mix.has_output = in.tensor("output.weight") != nullptr;

  GgufWriter w;
  for (const GgufKV& kv : in.metadata()) {
    // The writer aligns to 32 bytes and the type keys are rewritten below.
    if (kv.key == "general.alignment" || kv.key == "general.file_type" ||
        kv.key == "general.quantization_version")
      continue;
    w.copy_value(kv.key, kv.value);
  }
  w.set_u32("general.file_type", gguf_file_type(opt.type));
  if (file_type_quantized(opt.type)) w.set_u32("general.quantization_version", 2);

  std::vector<TensorSource> out;
  for (const GgufTensor& t : in.tensors()) {
    TensorSource s;
    s.name = t.name;
    s.shape = t.shape;
    s.type = tensor_type_in(opt.type, mix, t.name, t.shape, opt.pure);
    if (s.shape[0] % traits(s.type).block_elems != 0)
      throw Error(in_path + ": tensor '" + t.name + "' rows of " + std::to_string(s.shape[0]) +
                  " elements cannot be stored as " + dtype_name(s.type));
    s.rows = dequantized_rows(t);
    out.push_back(std::move(s));
  }

  uint64_t in_bytes = 0, out_bytes = 0, n_elems = 0;
  const size_t n = out.size();
  StreamOptions so;
  so.n_threads = opt.n_threads;
  so.on_tensor = [&](size_t i, const TensorSource& t) {
    const GgufTensor& src = in.tensors()[i];
    in_bytes += src.bytes;
    out_bytes += row_bytes(t.type, t.shape[0]) * static_cast<uint64_t>(t.n_rows());
    n_elems += static_cast<uint64_t>(src.n_elements());
    if (!opt.progress) return;
    std::string dims;
    for (int64_t d : t.shape) dims += (dims.empty() ? "" : "x") + std::to_string(d);
    std::fprintf(stderr, "[%4zu/%zu] %-28s %-4s \u2192 %-5s %s\n", i + 1, n, t.name.c_str(),
                 dtype_name(src.type), dtype_name(t.type), dims.c_str());
  };
  write_gguf_streamed(w, out, out_path, so);
  if (opt.progress) {
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::fprintf(
        stderr,
        "quantized %s \u2192 %s (%s): %zu tensors, %.1f MB \u2192 %.1f MB (%.2f bits/weight) in "
        "%.1f s\n",
        in_path.c_str(), out_path.c_str(), lower(file_type_name(opt.type)).c_str(), n,
        static_cast<double>(in_bytes) / 1e6, static_cast<double>(out_bytes) / 1e6,
        n_elems ? 8.0 * static_cast<double>(out_bytes) / static_cast<double>(n_elems) : 0.0, s);
  }
}

}  // namespace llm
