#include "quant/mix.h"

#include <cctype>
#include <string>

namespace llm {
namespace {

struct NamedFileType {
  FileType ft;
  const char* name;
  DType default_type;
};

constexpr NamedFileType kFileTypes[] = {
    {FileType::F32, "F32", DType::F32},        {FileType::F16, "F16", DType::F16},
    {FileType::BF16, "BF16", DType::BF16},     {FileType::Q4_0, "Q4_0", DType::Q4_0},
    {FileType::Q4_1, "Q4_1", DType::Q4_1},     {FileType::Q5_0, "Q5_0", DType::Q5_0},
    {FileType::Q5_1, "Q5_1", DType::Q5_1},     {FileType::Q8_0, "Q8_0", DType::Q8_0},
    {FileType::Q4_K_S, "Q4_K_S", DType::Q4_K}, {FileType::Q4_K_M, "Q4_K_M", DType::Q4_K},
    {FileType::Q5_K_S, "Q5_K_S", DType::Q5_K}, {FileType::Q5_K_M, "Q5_K_M", DType::Q5_K},
    {FileType::Q6_K, "Q6_K", DType::Q6_K},
};

const NamedFileType& entry(FileType ft) {
  for (const NamedFileType& e : kFileTypes)
    if (e.ft == ft) return e;
  return kFileTypes[0];  // unreachable for valid enumerators
}

bool contains(std::string_view s, std::string_view part) {
  return s.find(part) != std::string_view::npos;
}
bool ends_with(std::string_view s, std::string_view tail) {
  return s.size() >= tail.size() && s.substr(s.size() - tail.size()) == tail;
}

// Tensor roles that the mixes treat differently (llama-quant.cpp tensor_get_category).
enum class Role { TokenEmbd, Output, AttnV, FfnDown, Other };

Role role_of(std::string_view name) {
  if (name == "output.weight") return Role::Output;
  if (name == "token_embd.weight") return Role::TokenEmbd;
  // Fused QKV and MLA kv_b count as attention-V ("more sensitive to quantization").
  if (contains(name, "attn_qkv.weight") || contains(name, "attn_kv_b.weight") ||
      contains(name, "attn_v.weight"))
    return Role::AttnV;
  if (contains(name, "ffn_down")) return Role::FfnDown;
  return Role::Other;
}

// N of a "blk.N." prefix, or -1.
int layer_of(std::string_view name) {
  if (name.substr(0, 4) != "blk.") return -1;
  int v = 0;
  size_t i = 4;
  if (i >= name.size() || !std::isdigit(static_cast<unsigned char>(name[i]))) return -1;
  for (; i < name.size() && std::isdigit(static_cast<unsigned char>(name[i])); ++i)
    v = v * 10 + (name[i] - '0');
  return i < name.size() && name[i] == '.' ? v : -1;
}

// The first and last eighth of the layers, and every third one in between, get more
// bits in the _M mixes: half of all layers (llama.cpp use_more_bits).
bool use_more_bits(int i_layer, int n_layers) {
  return i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 || (i_layer - n_layers / 8) % 3 == 2;
}

bool is_quantized(DType t) {
  return t != DType::F32 && t != DType::F16 && t != DType::BF16;
}

// llama_tensor_get_type_impl, restricted to the file types above and dense models.
DType mix_type(FileType ft, const MixModel& m, std::string_view name, int64_t n_cols, DType t) {
  const Role role = role_of(name);
  if (role == Role::Output || (!m.has_output && role == Role::TokenEmbd)) {
    // The output matrix gets Q6_K unless the mix is Q8_0 already; rows that do not
    // split into blocks of the default type go to Q8_0.
    if (m.arch == "falcon" || n_cols % traits(t).block_elems != 0) return DType::Q8_0;
    return t == DType::Q8_0 ? t : DType::Q6_K;
  }
  const bool medium = ft == FileType::Q4_K_M || ft == FileType::Q5_K_M;
  const int layer = layer_of(name);
  if (role == Role::AttnV) {
    if (medium && layer >= 0 && use_more_bits(layer, m.n_layer)) {
      t = DType::Q6_K;
    } else if (ft == FileType::Q4_K_S && layer >= 0 && layer < 4) {
      t = DType::Q5_K;
    }
    // In the 70B, 8 heads share each V head: V is 8x smaller than Q and cheap to widen.
    const bool llama_70b = m.arch == "llama" && m.n_layer == 80 && m.n_head != m.n_head_kv;
    if (llama_70b && t == DType::Q4_K) t = DType::Q5_K;
    return t;
  }
  if (role == Role::FfnDown && layer >= 0) {
    const int n = m.n_layer;
    if (ft == FileType::Q4_K_M) {
      if (m.arch == "falcon") {
        return layer < n / 16 ? DType::Q6_K : use_more_bits(layer, n) ? DType::Q5_K : DType::Q4_K;
      }
      if (use_more_bits(layer, n)) t = DType::Q6_K;
    } else if (ft == FileType::Q5_K_M && use_more_bits(layer, n)) {
      t = DType::Q6_K;
    } else if (ft == FileType::Q4_K_S && m.arch != "falcon" && layer < n / 8) {
      t = DType::Q5_K;
    }
  }
  return t;
}

// tensor_type_fallback: a type whose block does not divide the row length.
DType fallback_type(DType t, int64_t n_cols) {
  if (n_cols % traits(t).block_elems == 0) return t;
  switch (t) {
    case DType::Q4_K:
      t = DType::Q5_0;
      break;
    case DType::Q5_K:
      t = DType::Q5_1;
      break;
    case DType::Q6_K:
      t = DType::Q8_0;
      break;
    default:
      return DType::F16;  // llama.cpp has no fallback here and refuses the tensor
  }
  return n_cols % traits(t).block_elems == 0 ? t : DType::F16;
}

}  // namespace

std::optional<FileType> file_type_from_name(std::string_view name) {
  std::string up(name);
  for (char& c : up) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (up == "Q4_K") return FileType::Q4_K_M;  // llama-quantize's aliases
  if (up == "Q5_K") return FileType::Q5_K_M;
  for (const NamedFileType& e : kFileTypes)
    if (up == e.name) return e.ft;
  return std::nullopt;
}

const char* file_type_name(FileType ft) {
  return entry(ft).name;
}

std::optional<FileType> file_type_from_gguf(uint32_t v) {
  for (const NamedFileType& e : kFileTypes)
    if (static_cast<uint32_t>(e.ft) == v) return e.ft;
  return std::nullopt;
}

DType default_tensor_type(FileType ft) {
  return entry(ft).default_type;
}

bool tensor_is_quantizable(std::string_view name, int n_dims) {
  if (n_dims < 2) return false;
  if (!ends_with(name, "weight")) return false;
  if (contains(name, "_norm.weight")) return false;
  // Small or special matrices llama.cpp also leaves alone.
  for (std::string_view keep : {"ffn_gate_inp.weight", "pos_embd.weight", "token_types.weight",
                                "ssm_conv1d", "attn_rel_b.weight"})
    if (contains(name, keep)) return false;
  return true;
}

DType choose_tensor_type(FileType ft, const MixModel& model, std::string_view name, int n_dims,
                         int64_t n_cols, DType current) {
  if (!tensor_is_quantizable(name, n_dims)) return current;
  DType t = default_tensor_type(ft);
  if (!is_quantized(t)) return t;  // F32 / F16 / BF16 files convert every matrix
  t = mix_type(ft, model, name, n_cols, t);
  return fallback_type(t, n_cols);
}

}  // namespace llm
