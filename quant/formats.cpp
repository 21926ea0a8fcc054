#include "quant/formats.h"

#include <cassert>
#include <cctype>
#include <string>

namespace llm {
namespace {

struct Entry {
  DType type;
  DTypeTraits traits;
};

constexpr Entry kTable[] = {
    {DType::F32, {"f32", 1, 4, true}},
    {DType::F16, {"f16", 1, 2, true}},
    {DType::Q4_0, {"q4_0", QK4_0, sizeof(BlockQ4_0), true}},
    {DType::Q4_1, {"q4_1", QK4_1, sizeof(BlockQ4_1), true}},
    {DType::Q5_0, {"q5_0", QK5_0, sizeof(BlockQ5_0), true}},
    {DType::Q5_1, {"q5_1", QK5_1, sizeof(BlockQ5_1), true}},
    {DType::Q8_0, {"q8_0", QK8_0, sizeof(BlockQ8_0), true}},
    {DType::Q8_1, {"q8_1", QK8_1, sizeof(BlockQ8_1), false}},
    {DType::Q2_K, {"q2_K", QK_K, sizeof(BlockQ2_K), false}},
    {DType::Q3_K, {"q3_K", QK_K, sizeof(BlockQ3_K), false}},
    {DType::Q4_K, {"q4_K", QK_K, sizeof(BlockQ4_K), true}},
    {DType::Q5_K, {"q5_K", QK_K, sizeof(BlockQ5_K), true}},
    {DType::Q6_K, {"q6_K", QK_K, sizeof(BlockQ6_K), true}},
    {DType::Q8_K, {"q8_K", QK_K, sizeof(BlockQ8_K), false}},
    {DType::BF16, {"bf16", 1, 2, true}},
};

}  // namespace

std::optional<DTypeTraits> dtype_traits(uint32_t raw) {
  for (const Entry& e : kTable)
    if (static_cast<uint32_t>(e.type) == raw) return e.traits;
  return std::nullopt;
}

const DTypeTraits& traits(DType t) {
  for (const Entry& e : kTable)
    if (e.type == t) return e.traits;
  assert(false && "unknown DType");
  return kTable[0].traits;
}

const char* dtype_name(DType t) {
  return traits(t).name;
}

std::optional<DType> dtype_from_name(std::string_view name) {
  std::string lower(name);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const Entry& e : kTable) {
    std::string n = e.traits.name;
    for (char& c : n) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (n == lower) return e.type;
  }
  return std::nullopt;
}

size_t row_bytes(DType t, int64_t n) {
  const DTypeTraits& tr = traits(t);
  assert(n % tr.block_elems == 0);
  return static_cast<size_t>(n / tr.block_elems) * static_cast<size_t>(tr.block_bytes);
}

}  // namespace llm
