#include "engine/file_type.h"

#include <cctype>
#include <cstdlib>

namespace llm {
namespace {

struct Entry {
  FileType type;
  const char* name;
  DType base;
};

constexpr Entry kTypes[] = {
    {FileType::F32, "f32", DType::F32},        {FileType::F16, "f16", DType::F16},
    {FileType::BF16, "bf16", DType::BF16},     {FileType::Q8_0, "q8_0", DType::Q8_0},
    {FileType::Q4_0, "q4_0", DType::Q4_0},     {FileType::Q4_1, "q4_1", DType::Q4_1},
    {FileType::Q5_0, "q5_0", DType::Q5_0},     {FileType::Q4_K, "q4_k", DType::Q4_K},
    {FileType::Q5_K, "q5_k", DType::Q5_K},     {FileType::Q6_K, "q6_k", DType::Q6_K},
    {FileType::Q4_K_M, "q4_k_m", DType::Q4_K}, {FileType::Q5_K_M, "q5_k_m", DType::Q5_K},
};

const Entry& entry(FileType t) {
  for (const Entry& e : kTypes)
    if (e.type == t) return e;
  std::abort();  // every enumerator is in the table
}

// The layer index of "blk.<i>.<rest>", or -1.
int layer_of(const std::string& name) {
  if (name.rfind("blk.", 0) != 0) return -1;
  return std::atoi(name.c_str() + 4);
}

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// llama.cpp's use_more_bits: the first and last eighth of the layers, and every third
// layer in between, get more bits in the _M mixes.
bool use_more_bits(int i, int n) {
  return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

// A k-quant's row must hold whole 256-element super-blocks; else the nearest block type.
DType fit_to_row(DType t, int64_t cols) {
  if (cols % QK_K == 0) return t;
  switch (t) {
    case DType::Q4_K:
    case DType::Q5_K:
      return DType::Q5_0;
    case DType::Q6_K:
      return DType::Q8_0;
    default:
      return t;
  }
}

}  // namespace

std::optional<FileType> file_type_from_name(std::string_view name) {
  std::string lower(name);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const Entry& e : kTypes)
    if (lower == e.name) return e.type;
  return std::nullopt;
}

const char* file_type_name(FileType t) {
  return entry(t).name;
}

std::string file_type_list() {
  std::string s;
  for (const Entry& e : kTypes) s += (s.empty() ? "" : "|") + std::string(e.name);
  return s;
}

const std::vector<FileType>& all_file_types() {
  static const std::vector<FileType> v = [] {
    std::vector<FileType> out;
    for (const Entry& e : kTypes) out.push_back(e.type);
    return out;
  }();
  return v;
}

DType base_type(FileType t) {
  return entry(t).base;
}

bool is_quantized(FileType t) {
  return t != FileType::F32 && t != FileType::F16 && t != FileType::BF16;
}

DType tensor_type(FileType ft, const std::string& name, const std::vector<int64_t>& shape,
                  const TensorContext& ctx) {
  if (shape.size() < 2) return DType::F32;
  const DType base = base_type(ft);
  if (!is_quantized(ft)) return base;
  DType t = base;
  const bool is_output =
      name == "output.weight" || (!ctx.has_output && name == "token_embd.weight");
  if (is_output) {
    if (base != DType::Q8_0) t = DType::Q6_K;
  } else if (ft == FileType::Q4_K_M || ft == FileType::Q5_K_M) {
    const int layer = layer_of(name);
    if (ends_with(name, ".attn_v.weight") && use_more_bits(layer, ctx.n_attn_v)) t = DType::Q6_K;
    if (ends_with(name, ".ffn_down.weight") && use_more_bits(layer, ctx.n_layer)) t = DType::Q6_K;
  }
  return fit_to_row(t, shape[0]);
}

}  // namespace llm
