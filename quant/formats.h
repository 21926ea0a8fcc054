// Tensor element types and quantization block layouts, bit-exact with GGUF / ggml.
// Reference: ggml/src/ggml-common.h (block structs) and the GGUF spec
// (https://github.com/ggml-org/ggml/blob/master/docs/gguf.md).
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

namespace llm {

// Values are ggml's `enum ggml_type`, as stored in GGUF tensor infos.
enum class DType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  BF16 = 30,
};

struct DTypeTraits {
  const char* name;  // "q4_0", as ggml prints it
  int block_elems;   // elements per block (1 for plain floats)
  int block_bytes;   // bytes per block
  bool supported;    // this project can load and compute with it
};

// Traits of a raw GGUF type id; nullopt for ids we do not know at all.
std::optional<DTypeTraits> dtype_traits(uint32_t raw);
const DTypeTraits& traits(DType t);
const char* dtype_name(DType t);
// Parses "f32", "q4_0", "Q4_K", ... (case-insensitive).
std::optional<DType> dtype_from_name(std::string_view name);

// Bytes of a row of n elements; n must be a multiple of the block size (asserted).
size_t row_bytes(DType t, int64_t n);

// --- half precision ---------------------------------------------------------
using f16_t = uint16_t;   // IEEE 754 binary16 bits
using bf16_t = uint16_t;  // bfloat16 bits

inline float f16_to_f32(f16_t h) {
  const uint32_t sign = (uint32_t)(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ff;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: renormalise
      exp = 127 - 15 + 1;
      while ((mant & 0x400) == 0) {
        mant <<= 1;
        exp--;
      }
      mant &= 0x3ff;
      bits = sign | (exp << 23) | (mant << 13);
    }
  } else if (exp == 0x1f) {  // inf, or NaN made quiet (as ggml and the F16C instruction do)
    bits = sign | 0x7f800000u | (mant << 13) | (mant != 0 ? 0x400000u : 0u);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Round-to-nearest-even conversion, as ggml's GGML_FP32_TO_FP16 on x86.
inline f16_t f32_to_f16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000;
  const uint32_t abs = x & 0x7fffffff;
  if (abs >= 0x7f800000u) return (f16_t)(sign | 0x7c00 | (abs > 0x7f800000u ? 0x200 : 0));
  if (abs >= 0x477ff000u) return (f16_t)(sign | 0x7c00);  // overflow -> inf
  if (abs < 0x38800000u) {                                // subnormal or zero
    if (abs < 0x33000000u) return (f16_t)sign;
    const uint32_t e = abs >> 23;
    const uint32_t m = (abs & 0x7fffff) | 0x800000;
    const uint32_t shift = 126 - e;  // 14..24
    uint32_t r = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1);
    const uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (r & 1))) r++;
    return (f16_t)(sign | r);
  }
  uint32_t r = ((abs - 0x38000000u) >> 13);
  const uint32_t rem = abs & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (r & 1))) r++;
  return (f16_t)(sign | r);
}

inline float bf16_to_f32(bf16_t h) {
  uint32_t bits = (uint32_t)h << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

inline bf16_t f32_to_bf16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7fffffff) > 0x7f800000u) return (bf16_t)((x >> 16) | 0x40);  // quiet NaN
  return (bf16_t)((x + 0x7fff + ((x >> 16) & 1)) >> 16);
}

// --- block layouts (ggml-common.h) -------------------------------------------
constexpr int QK4_0 = 32, QK4_1 = 32, QK5_0 = 32, QK5_1 = 32, QK8_0 = 32, QK8_1 = 32;
constexpr int QK_K = 256;         // super-block size of the k-quants
constexpr int K_SCALE_SIZE = 12;  // packed 6-bit scales and mins of Q4_K / Q5_K

struct BlockQ4_0 {
  f16_t d;                // scale
  uint8_t qs[QK4_0 / 2];  // nibbles: element j in low nibble of qs[j], element j+16 in high
};
struct BlockQ4_1 {
  f16_t d, m;  // scale, min
  uint8_t qs[QK4_1 / 2];
};
struct BlockQ5_0 {
  f16_t d;
  uint8_t qh[4];  // fifth bits, little-endian uint32: bit j for element j
  uint8_t qs[QK5_0 / 2];
};
struct BlockQ5_1 {
  f16_t d, m;
  uint8_t qh[4];
  uint8_t qs[QK5_1 / 2];
};
struct BlockQ8_0 {
  f16_t d;
  int8_t qs[QK8_0];
};
struct BlockQ8_1 {
  f16_t d, s;  // scale, d * sum(qs)
  int8_t qs[QK8_1];
};
struct BlockQ2_K {
  uint8_t scales[QK_K / 16];
  uint8_t qs[QK_K / 4];
  f16_t d, dmin;
};
struct BlockQ3_K {
  uint8_t hmask[QK_K / 8];
  uint8_t qs[QK_K / 4];
  uint8_t scales[12];
  f16_t d;
};
struct BlockQ4_K {
  f16_t d, dmin;                 // super-block scale for scales, and for mins
  uint8_t scales[K_SCALE_SIZE];  // 8 sub-blocks of 32: 6-bit scale and 6-bit min each
  uint8_t qs[QK_K / 2];          // 4-bit quants
};
struct BlockQ5_K {
  f16_t d, dmin;
  uint8_t scales[K_SCALE_SIZE];
  uint8_t qh[QK_K / 8];  // high bits
  uint8_t qs[QK_K / 2];  // low 4 bits
};
struct BlockQ6_K {
  uint8_t ql[QK_K / 2];      // low 4 bits
  uint8_t qh[QK_K / 4];      // high 2 bits
  int8_t scales[QK_K / 16];  // 16 sub-blocks of 16, 8-bit scales
  f16_t d;                   // super-block scale
};
struct BlockQ8_K {
  float d;
  int8_t qs[QK_K];
  int16_t bsums[QK_K / 16];  // sums of groups of 16
};

static_assert(sizeof(BlockQ4_0) == 18);
static_assert(sizeof(BlockQ4_1) == 20);
static_assert(sizeof(BlockQ5_0) == 22);
static_assert(sizeof(BlockQ5_1) == 24);
static_assert(sizeof(BlockQ8_0) == 34);
static_assert(sizeof(BlockQ8_1) == 36);
static_assert(sizeof(BlockQ2_K) == 84);
static_assert(sizeof(BlockQ3_K) == 110);
static_assert(sizeof(BlockQ4_K) == 144);
static_assert(sizeof(BlockQ5_K) == 176);
static_assert(sizeof(BlockQ6_K) == 210);
static_assert(sizeof(BlockQ8_K) == 292);

}  // namespace llm
