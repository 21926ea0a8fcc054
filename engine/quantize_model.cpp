// Re-types the weights of an f32/f16/bf16 GGUF model: every row is dequantized to f32
// and quantized to the tensor's new type (engine/file_type.h chooses it).
#include <sys/stat.h>

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

}  // namespace

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
  TensorContext ctx;
  ctx.has_output = in.tensor("output.weight") != nullptr;
  if (auto arch = in.get_string("general.architecture"))
    ctx.n_layer = static_cast<int>(in.get_int(*arch + ".block_count").value_or(0));
  for (const GgufTensor& t : in.tensors())
    if (t.name.size() > 14 && t.name.compare(t.name.size() - 14, 14, ".attn_v.weight") == 0)
      ++ctx.n_attn_v;
  if (ctx.n_layer == 0) ctx.n_layer = ctx.n_attn_v;

  GgufWriter w;
  for (const GgufKV& kv : in.metadata()) {
    // The writer aligns to 32 bytes and the type keys are rewritten below.
    if (kv.key == "general.alignment" || kv.key == "general.file_type" ||
        kv.key == "general.quantization_version")
      continue;
    w.copy_value(kv.key, kv.value);
  }
  w.set_u32("general.file_type", static_cast<uint32_t>(opt.type));
  if (is_quantized(opt.type)) w.set_u32("general.quantization_version", 2);

  std::vector<TensorSource> out;
  for (const GgufTensor& t : in.tensors()) {
    TensorSource s;
    s.name = t.name;
    s.shape = t.shape;
    s.type = tensor_type(opt.type, t.name, t.shape, ctx);
    if (s.shape[0] % traits(s.type).block_elems != 0)
      throw Error(in_path + ": tensor '" + t.name + "' rows of " + std::to_string(s.shape[0]) +
                  " elements cannot be stored as " + dtype_name(s.type));
    const GgufTensor* src = &t;
    s.rows = [src](int64_t row0, int64_t n, float* dst) {
      const int64_t cols = src->shape[0];
      const size_t rb = row_bytes(src->type, cols);
      for (int64_t r = 0; r < n; ++r)
        dequantize_row(src->type, src->data + static_cast<size_t>(row0 + r) * rb, dst + r * cols,
                       cols);
    };
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
    std::fprintf(stderr, "[%4zu/%zu] %-28s %-4s -> %-5s %s\n", i + 1, n, t.name.c_str(),
                 dtype_name(src.type), dtype_name(t.type), dims.c_str());
  };
  write_gguf_streamed(w, out, out_path, so);
  if (opt.progress) {
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::fprintf(
        stderr,
        "quantized %s -> %s (%s): %zu tensors, %.1f MB -> %.1f MB (%.2f bits/weight) in %.1f s\n",
        in_path.c_str(), out_path.c_str(), file_type_name(opt.type), n,
        static_cast<double>(in_bytes) / 1e6, static_cast<double>(out_bytes) / 1e6,
        n_elems ? 8.0 * static_cast<double>(out_bytes) / static_cast<double>(n_elems) : 0.0, s);
  }
}

}  // namespace llm
