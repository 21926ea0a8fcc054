// Tests of quant/: block sizes, dequantization of hand-built blocks, quantize round trips,
// the reference quantizers on hand-derived vectors, vec_dot on both code paths, half
// precision edge cases. Expected values come from the GGUF/ggml block layouts as
// documented in ggml-common.h, restated here independently of the decoders under test.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "quant/formats.h"
#include "quant/quants.h"

using namespace llm;

namespace {

const DType kAllTypes[] = {DType::F32,  DType::F16,  DType::BF16, DType::Q4_0,
                           DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0,
                           DType::Q4_K, DType::Q5_K, DType::Q6_K};

// fp16 bit patterns of a few exactly representable values.
constexpr f16_t kH1 = 0x3C00, kH05 = 0x3800, kH025 = 0x3400, kH0125 = 0x3000, kH2 = 0x4000,
                kHm1 = 0xBC00;

std::vector<float> dequant(DType t, const void* src, int64_t n) {
  std::vector<float> out(static_cast<size_t>(n));
  dequantize_row(t, src, out.data(), n);
  return out;
}

std::vector<float> random_floats(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& f : v) f = dist(rng);
  return v;
}

double dot_double(const std::vector<float>& a, const float* b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}

// Packs eight 6-bit scales and mins into the 12 bytes of Q4_K / Q5_K (ggml-common.h):
// bytes 0-3: low 6 bits of sc[0..3], top 2 bits = high bits of sc[4..7]
// bytes 4-7: low 6 bits of m[0..3],  top 2 bits = high bits of m[4..7]
// bytes 8-11: low nibble = low 4 bits of sc[4..7], high nibble = low 4 bits of m[4..7]
void pack_scales_k(const int sc[8], const int m[8], uint8_t out[12]) {
  for (int j = 0; j < 4; ++j) {
    out[j] = static_cast<uint8_t>(sc[j] | ((sc[j + 4] >> 4) << 6));
    out[j + 4] = static_cast<uint8_t>(m[j] | ((m[j + 4] >> 4) << 6));
    out[j + 8] = static_cast<uint8_t>((sc[j + 4] & 15) | ((m[j + 4] & 15) << 4));
  }
}

}  // namespace

TEST_CASE("quant: block sizes and traits") {
  CHECK(traits(DType::Q4_0).block_bytes == 18);
  CHECK(traits(DType::Q4_1).block_bytes == 20);
  CHECK(traits(DType::Q5_0).block_bytes == 22);
  CHECK(traits(DType::Q5_1).block_bytes == 24);
  CHECK(traits(DType::Q8_0).block_bytes == 34);
  CHECK(traits(DType::Q4_K).block_bytes == 144);
  CHECK(traits(DType::Q5_K).block_bytes == 176);
  CHECK(traits(DType::Q6_K).block_bytes == 210);
  CHECK(traits(DType::Q4_K).block_elems == 256);
  CHECK(traits(DType::Q8_0).block_elems == 32);
  CHECK(row_bytes(DType::Q4_K, 4096) == 16 * 144);
  CHECK(row_bytes(DType::Q6_K, 11008) == 43 * 210);
  CHECK(row_bytes(DType::F16, 10) == 20);
  CHECK(row_bytes(DType::BF16, 10) == 20);
  for (DType t : kAllTypes) {
    CHECK(quant_supported(t));
    CHECK(traits(t).supported);
  }
  CHECK_FALSE(quant_supported(DType::Q2_K));
  // Bits per weight, as llama.cpp documents them: 4.5, 5.5, 6.5625 for Q4_K/Q5_K/Q6_K.
  CHECK(traits(DType::Q4_K).block_bytes * 8.0 / 256 == 4.5);
  CHECK(traits(DType::Q5_K).block_bytes * 8.0 / 256 == 5.5);
  CHECK(traits(DType::Q6_K).block_bytes * 8.0 / 256 == 6.5625);
}

TEST_CASE("quant: dequantize hand-built Q4_0 / Q4_1 / Q8_0 blocks") {
  SUBCASE("Q4_0: element j = low nibble of qs[j], element j+16 = high nibble; (q-8)*d") {
    BlockQ4_0 b{};
    b.d = kH05;
    for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>(j | ((15 - j) << 4));
    auto y = dequant(DType::Q4_0, &b, 32);
    for (int j = 0; j < 16; ++j) {
      CHECK(y[j] == (j - 8) * 0.5f);
      CHECK(y[j + 16] == (7 - j) * 0.5f);
    }
    CHECK(y[0] == -4.0f);
    CHECK(y[16] == 3.5f);
  }
  SUBCASE("Q4_1: q*d + m") {
    BlockQ4_1 b[2]{};
    b[0].d = kH025;
    b[0].m = kHm1;
    b[1].d = kH2;
    b[1].m = kH1;
    for (int j = 0; j < 16; ++j) {
      b[0].qs[j] = static_cast<uint8_t>(j | (j << 4));
      b[1].qs[j] = 0xF0;
    }
    auto y = dequant(DType::Q4_1, b, 64);
    for (int j = 0; j < 16; ++j) {
      CHECK(y[j] == j * 0.25f - 1.0f);
      CHECK(y[j + 16] == j * 0.25f - 1.0f);
      CHECK(y[32 + j] == 1.0f);
      CHECK(y[48 + j] == 31.0f);
    }
  }
  SUBCASE("Q8_0: q*d, two blocks") {
    BlockQ8_0 b[2]{};
    b[0].d = kH0125;
    b[1].d = kHm1;
    for (int j = 0; j < 32; ++j) {
      b[0].qs[j] = static_cast<int8_t>(j * 8 - 128);
      b[1].qs[j] = static_cast<int8_t>(127 - j);
    }
    auto y = dequant(DType::Q8_0, b, 64);
    for (int j = 0; j < 32; ++j) {
      CHECK(y[j] == (j * 8 - 128) * 0.125f);
      CHECK(y[32 + j] == -(127 - j));
    }
  }
}

TEST_CASE("quant: dequantize hand-built Q5_0 / Q5_1 blocks (fifth bit in qh)") {
  // qh bit k is the fifth bit of element k, elements 16..31 use the qs high nibbles.
  const uint32_t qh = 0xA5C3F00Fu;
  BlockQ5_0 b0{};
  BlockQ5_1 b1{};
  b0.d = kH05;
  b1.d = kH025;
  b1.m = kH2;
  std::memcpy(b0.qh, &qh, 4);
  std::memcpy(b1.qh, &qh, 4);
  for (int j = 0; j < 16; ++j) {
    b0.qs[j] = b1.qs[j] = static_cast<uint8_t>(((j * 7) & 15) | (((j * 3 + 5) & 15) << 4));
  }
  auto y0 = dequant(DType::Q5_0, &b0, 32);
  auto y1 = dequant(DType::Q5_1, &b1, 32);
  for (int k = 0; k < 32; ++k) {
    const int nib = k < 16 ? ((k * 7) & 15) : ((((k - 16) * 3 + 5)) & 15);
    const int q = nib | (((qh >> k) & 1) << 4);
    CHECK(y0[k] == (q - 16) * 0.5f);
    CHECK(y1[k] == q * 0.25f + 2.0f);
  }
  // Spot values worked out by hand: element 0: nib 0, bit 1 -> 16; element 4: nib 12, bit 0.
  CHECK(y0[0] == 0.0f);
  CHECK(y0[4] == (12 - 16) * 0.5f);
  CHECK(y0[31] == ((((15 * 3 + 5) & 15) | 16) - 16) * 0.5f);
}

TEST_CASE("quant: dequantize hand-built Q4_K / Q5_K blocks (6-bit packed scales)") {
  const int sc[8] = {1, 2, 3, 17, 33, 40, 62, 63};
  const int mn[8] = {0, 5, 63, 16, 48, 31, 7, 60};
  BlockQ4_K b4{};
  BlockQ5_K b5{};
  b4.d = b5.d = kH05;
  b4.dmin = b5.dmin = kH025;
  pack_scales_k(sc, mn, b4.scales);
  pack_scales_k(sc, mn, b5.scales);
  // Literal check of the packing itself for sub-block 4 (sc 33 = 0b100001, m 48 = 0b110000):
  // byte 0 top bits = 33 >> 4 = 2, byte 4 top bits = 48 >> 4 = 3, byte 8 = 1 | 0 << 4.
  CHECK(b4.scales[0] == (1 | (2 << 6)));
  CHECK(b4.scales[4] == (0 | (3 << 6)));
  CHECK(b4.scales[8] == 1);

  std::mt19937 rng(7);
  int q[256];  // the 4- or 5-bit quant of each element
  for (int& v : q) v = static_cast<int>(rng() % 32);
  for (int e = 0; e < 256; ++e) {
    const int c = e / 64, i = e % 64, byte = 32 * c + (i % 32);
    const int lo4 = q[e] & 15;
    b4.qs[byte] |= static_cast<uint8_t>(i < 32 ? lo4 : lo4 << 4);
    b5.qs[byte] |= static_cast<uint8_t>(i < 32 ? lo4 : lo4 << 4);
    // fifth bit: element 64c + l -> bit 2c of qh[l]; element 64c + 32 + l -> bit 2c + 1
    if (q[e] & 16) b5.qh[i % 32] |= static_cast<uint8_t>(1 << (2 * c + (i < 32 ? 0 : 1)));
  }
  auto y4 = dequant(DType::Q4_K, &b4, 256);
  auto y5 = dequant(DType::Q5_K, &b5, 256);
  for (int e = 0; e < 256; ++e) {
    const int s = e / 32;
    // All factors are small dyadic numbers: the float results are exact.
    CHECK(y4[e] == 0.5f * sc[s] * (q[e] & 15) - 0.25f * mn[s]);
    CHECK(y5[e] == 0.5f * sc[s] * q[e] - 0.25f * mn[s]);
  }
}

TEST_CASE("quant: dequantize hand-built Q6_K block") {
  BlockQ6_K b{};
  b.d = kH0125;
  for (int s = 0; s < 16; ++s) b.scales[s] = static_cast<int8_t>(s % 2 ? -(s * 8) : s * 8 + 1);
  std::mt19937 rng(11);
  int q[256];  // 6-bit quant 0..63 of each element; value = d * scale * (q - 32)
  for (int& v : q) v = static_cast<int>(rng() % 64);
  for (int e = 0; e < 256; ++e) {
    // Half h of 128; in it, quarter k of 32 and lane l: k 0/1 take the low nibble of
    // ql[l] / ql[l+32], k 2/3 the high nibble; the two high bits sit at bits 2k of qh[l].
    const int h = e / 128, r = e % 128, k = r / 32, l = r % 32;
    const int qli = 64 * h + l + (k % 2) * 32;
    b.ql[qli] |= static_cast<uint8_t>(k < 2 ? (q[e] & 15) : (q[e] & 15) << 4);
    b.qh[32 * h + l] |= static_cast<uint8_t>((q[e] >> 4) << (2 * k));
  }
  auto y = dequant(DType::Q6_K, &b, 256);
  for (int e = 0; e < 256; ++e) {
    CHECK(y[e] == 0.125f * static_cast<float>(b.scales[e / 16]) * static_cast<float>(q[e] - 32));
  }
  // A literal element: e = 200 is half 1, quarter 2 (high nibble of ql[64 + 8]), scale 12.
  CHECK(y[200] == 0.125f * 97.0f * static_cast<float>(q[200] - 32));
}

TEST_CASE("quant: F16 / BF16 conversions, edge cases") {
  // f16: exact values, subnormals, overflow, ties to even, inf, NaN.
  CHECK(f16_to_f32(0x3C00) == 1.0f);
  CHECK(f16_to_f32(0xC000) == -2.0f);
  CHECK(f16_to_f32(0x7BFF) == 65504.0f);
  CHECK(f16_to_f32(0x0001) == std::ldexp(1.0f, -24));  // smallest subnormal
  CHECK(f16_to_f32(0x03FF) == std::ldexp(1023.0f, -24));
  CHECK(f16_to_f32(0x0400) == std::ldexp(1.0f, -14));  // smallest normal
  CHECK(std::signbit(f16_to_f32(0x8000)));
  CHECK(std::isinf(f16_to_f32(0x7C00)));
  CHECK(std::isnan(f16_to_f32(0x7E00)));
  CHECK(f32_to_f16(1.0f) == 0x3C00);
  CHECK(f32_to_f16(-0.0f) == 0x8000);
  CHECK(f32_to_f16(65504.0f) == 0x7BFF);
  CHECK(f32_to_f16(65519.0f) == 0x7BFF);  // below the midpoint to 65536
  CHECK(f32_to_f16(65520.0f) == 0x7C00);  // the midpoint rounds to even = infinity
  CHECK(f32_to_f16(1e6f) == 0x7C00);
  CHECK(f32_to_f16(-INFINITY) == 0xFC00);
  const f16_t hn = f32_to_f16(NAN);
  CHECK((hn & 0x7C00) == 0x7C00);
  CHECK((hn & 0x03FF) != 0);
  // ties: 1 + 2^-11 is halfway between 1 and 1 + 2^-10 -> even (1.0);
  // 1 + 3*2^-11 is halfway between 1+2^-10 and 1+2^-9 -> even (1 + 2^-9).
  CHECK(f32_to_f16(1.0f + std::ldexp(1.0f, -11)) == 0x3C00);
  CHECK(f32_to_f16(1.0f + 3 * std::ldexp(1.0f, -11)) == 0x3C02);
  CHECK(f32_to_f16(1.0f + std::ldexp(1.0f, -11) + std::ldexp(1.0f, -20)) == 0x3C01);
  // subnormal results and their ties
  CHECK(f32_to_f16(std::ldexp(1.0f, -24)) == 0x0001);
  CHECK(f32_to_f16(std::ldexp(1.0f, -25)) == 0x0000);            // tie -> even (0)
  CHECK(f32_to_f16(std::ldexp(3.0f, -25)) == 0x0002);            // 1.5 ulp tie -> 2
  CHECK(f32_to_f16(std::ldexp(1.0f, -25) * 1.0001f) == 0x0001);  // just above the tie
  CHECK(f32_to_f16(std::ldexp(1023.5f, -24)) == 0x0400);         // rounds up into the normals
  CHECK(f32_to_f16(std::ldexp(1.0f, -30)) == 0x0000);
  // every finite f16 survives f16 -> f32 -> f16
  int bad = 0;
  for (uint32_t h = 0; h < 0x10000; ++h) {
    if ((h & 0x7C00) == 0x7C00) continue;
    if (f32_to_f16(f16_to_f32(static_cast<f16_t>(h))) != h) ++bad;
  }
  CHECK(bad == 0);

  // bf16: truncated f32 with round-to-nearest-even; NaN stays NaN (quiet).
  CHECK(bf16_to_f32(0x3F80) == 1.0f);
  CHECK(f32_to_bf16(1.0f) == 0x3F80);
  CHECK(f32_to_bf16(1.0f + std::ldexp(1.0f, -8)) == 0x3F80);      // tie -> even
  CHECK(f32_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)) == 0x3F82);  // tie -> even
  CHECK(f32_to_bf16(1.0f + std::ldexp(1.0f, -8) + std::ldexp(1.0f, -20)) == 0x3F81);
  CHECK(f32_to_bf16(INFINITY) == 0x7F80);
  CHECK(f32_to_bf16(3.4e38f) == 0x7F80);  // rounds past the largest bf16 -> inf
  CHECK(std::isnan(bf16_to_f32(f32_to_bf16(NAN))));
  uint32_t snan_bits = 0x7F800001u;  // a NaN whose payload lives only in the low bits
  float snan;
  std::memcpy(&snan, &snan_bits, 4);
  CHECK(std::isnan(bf16_to_f32(f32_to_bf16(snan))));
  CHECK(bf16_to_f32(f32_to_bf16(std::ldexp(1.0f, -130))) == std::ldexp(1.0f, -130));  // subnormal
  CHECK(f32_to_bf16(-0.0f) == 0x8000);

  // Row conversions go through the same functions.
  const float src[4] = {1.0f, -2.5f, 65520.0f, std::ldexp(1.0f, -24)};
  f16_t h[4];
  quantize_row(DType::F16, src, h, 4);
  CHECK(h[0] == 0x3C00);
  CHECK(h[1] == 0xC100);
  CHECK(h[2] == 0x7C00);
  CHECK(h[3] == 0x0001);
  auto back = dequant(DType::F16, h, 4);
  CHECK(back[1] == -2.5f);
  CHECK(back[3] == std::ldexp(1.0f, -24));
}

TEST_CASE("quant: vec_dot equals dot(dequantize_row, x) on both paths") {
  const bool have_avx2 = dot_path_available(DotPath::Avx2);
  if (!have_avx2) MESSAGE("AVX2 path unavailable on this CPU; checking the scalar path only");
  for (DType t : kAllTypes) {
    CAPTURE(dtype_name(t));
    for (int64_t n : {256, 1024, 4096, 11008 / 256 * 256}) {
      const auto w = random_floats(static_cast<size_t>(n), 100 + static_cast<uint32_t>(n), 0.05f);
      const auto x = random_floats(static_cast<size_t>(n), 200 + static_cast<uint32_t>(n));
      std::vector<uint8_t> row(row_bytes(t, n));
      quantize_row(t, w.data(), row.data(), n);
      const auto deq = dequant(t, row.data(), n);
      const double ref = dot_double(deq, x.data());
      double mag = 0;  // sum |w x|: the scale of float rounding in the sum
      for (int64_t i = 0; i < n; ++i) mag += std::fabs(deq[i] * x[i]);
      const double tol = 1e-5 * mag + 1e-6;
      CHECK(std::fabs(vec_dot(DotPath::Scalar, t, row.data(), x.data(), n) - ref) <= tol);
      if (have_avx2) {
        CHECK(std::fabs(vec_dot(DotPath::Avx2, t, row.data(), x.data(), n) - ref) <= tol);
      }
      CHECK(std::fabs(vec_dot(t, row.data(), x.data(), n) - ref) <= tol);
    }
  }
  // Plain-float rows of any length, including tails shorter than a vector.
  for (DType t : {DType::F32, DType::F16, DType::BF16}) {
    for (int64_t n : {1, 7, 8, 15, 17, 33, 255, 257, 1023}) {
      CAPTURE(n);
      const auto w = random_floats(static_cast<size_t>(n), 5, 1.0f);
      const auto x = random_floats(static_cast<size_t>(n), 6, 1.0f);
      std::vector<uint8_t> row(row_bytes(t, n));
      quantize_row(t, w.data(), row.data(), n);
      const auto deq = dequant(t, row.data(), n);
      const double ref = dot_double(deq, x.data());
      CHECK(std::fabs(vec_dot(DotPath::Scalar, t, row.data(), x.data(), n) - ref) <= 1e-4 * n);
      if (have_avx2) {
        CHECK(std::fabs(vec_dot(DotPath::Avx2, t, row.data(), x.data(), n) - ref) <= 1e-4 * n);
      }
    }
  }
}
