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
#include "test_util.h"

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

// Deterministic inputs built from std::mt19937 (whose output the C++ standard fixes) with
// exact float arithmetic only, so every platform sees the same floats.
std::vector<float> ref_input(int kind, size_t n) {
  std::mt19937 rng(1000u + static_cast<uint32_t>(kind));
  auto u = [&] { return static_cast<float>(rng() >> 8) * (1.0f / 16777216.0f); };  // [0, 1)
  auto g = [&] { return u() + u() + u() - 1.5f; };  // bell-shaped, sd 0.5
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) {
    switch (kind) {
      case 0:
        v[i] = g() * 0.05f;
        break;  // weight-like
      case 1:
        v[i] = g() * ((rng() % 64 == 0) ? 20.0f : 1.0f);
        break;  // outliers
      case 2:
        v[i] = u() + 0.25f;
        break;  // positive only
      case 3:
        v[i] = -3.0f * u();
        break;  // non-positive
      case 4:
        v[i] = (rng() % 4 == 0) ? g() : 0.0f;
        break;  // sparse
      case 5:
        v[i] = static_cast<float>(static_cast<int>(rng() % 17) - 8);
        break;  // integers
      case 6:
        v[i] = (i / 32) % 3 == 0 ? 0.0f : (i / 32) % 3 == 1 ? 0.75f : g();
        break;
      default:
        v[i] = g() * 1e-7f;
        break;  // tiny scales
    }
  }
  return v;
}

// Random bytes for a row of type t, with every fp16 scale field kept finite (|d| < 2).
std::vector<uint8_t> ref_random_row(DType t, int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> r(row_bytes(t, n));
  for (uint8_t& c : r) c = static_cast<uint8_t>(rng() >> 24);
  const int bb = traits(t).block_bytes;
  const size_t off = t == DType::Q6_K ? static_cast<size_t>(bb - 2) : 0;  // Q6_K: d is last
  const bool two = t == DType::Q4_1 || t == DType::Q5_1 || t == DType::Q4_K || t == DType::Q5_K;
  for (size_t k = 0; k < r.size() / static_cast<size_t>(bb); ++k) {
    uint8_t* blk = &r[k * static_cast<size_t>(bb)];
    blk[off + 1] &= 0xBF;  // clear the exponent's top bit of the fp16 scale
    if (two) blk[off + 3] &= 0xBF;
  }
  return r;
}

uint64_t fnv1a(const void* p, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; ++i) {
    h ^= static_cast<const uint8_t*>(p)[i];
    h *= 0x100000001b3ull;
  }
  return h;
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
  const bool have_avx2 = kernel_path_available(KernelPath::Avx2);
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
      CHECK(std::fabs(vec_dot(KernelPath::Scalar, t, row.data(), x.data(), n) - ref) <= tol);
      if (have_avx2) {
        CHECK(std::fabs(vec_dot(KernelPath::Avx2, t, row.data(), x.data(), n) - ref) <= tol);
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
      CHECK(std::fabs(vec_dot(KernelPath::Scalar, t, row.data(), x.data(), n) - ref) <= 1e-4 * n);
      if (have_avx2) {
        CHECK(std::fabs(vec_dot(KernelPath::Avx2, t, row.data(), x.data(), n) - ref) <= 1e-4 * n);
      }
    }
  }
}

TEST_CASE("quant: byte-identical to ggml's reference quantizers and dequantizers") {
  // Recorded from ggml itself: quantize_row_*_ref, ggml_fp32_to_fp16_row,
  // ggml_fp32_to_bf16_row_ref and dequantize_row_* / ggml_*_to_fp32_row of libggml-base.so
  // from llama.cpp as built in the npm package @node-llama-cpp/linux-x64 3.22.1 (an x86-64
  // build whose quantizers contain no FMA), run on ref_input(kind, 4096) for kinds 0..7
  // and on ref_random_row(t, 4096, 77); FNV-1a 64 of the output bytes. (A direct
  // comparison against that library on 400 super-blocks of 14 input families per type,
  // and on all 2^32 floats for F16/BF16, also matched exactly.)
  struct Expect {
    DType t;
    uint64_t quantized[8];  // per input kind
    uint64_t dequantized;   // of the random row
  };
  const Expect expects[] = {
      {DType::F16,
       {0x5198c93699627ec2ull, 0x9f061127c109ebc3ull, 0x45da3d2dafb90171ull, 0xabd0eb963db9a303ull,
        0x68b9ffb175627394ull, 0x12f0761f1310d90bull, 0x5c306f5f5f6a01a2ull, 0x3731edf09afcc8f4ull},
       0x8b6f789b173706deull},
      {DType::BF16,
       {0x441c6a8e160fff6dull, 0xbe0612fec405862cull, 0x4e2fe6c551115d05ull, 0x56f911a56c20b809ull,
        0x7c7bee961cd4e50eull, 0xc185664f7472a1d8ull, 0x175a1c36506f426full, 0xcdd7329b47811439ull},
       0x3677592bdd6b6e93ull},
      {DType::Q4_0,
       {0xe6e09dcc7310b43eull, 0xb533bb685bad18e5ull, 0x2af96a620776d645ull, 0xc33a25f7b2237b3eull,
        0xe88f85a1d2068b98ull, 0x97729a4fe29de1aeull, 0x61287036b2650e49ull, 0x7cdbb9281c869531ull},
       0xd54b8919d6681efeull},
      {DType::Q4_1,
       {0xbefe113e18a33dc8ull, 0xf5c0572d5bbaed19ull, 0xca43354ff4ed0c10ull, 0x19dfae4c45ea2b7full,
        0xe2a069f6db955bc1ull, 0x07f6dfe7d61c78c5ull, 0xdb024d1bfd6cac66ull, 0xe48943721ceeb94aull},
       0x935a855a8aea5b0eull},
      {DType::Q5_0,
       {0xb943e3da8ff9b9faull, 0xbd45280609ef58a7ull, 0x59229343657f0bb4ull, 0x449f91b0d7db3628ull,
        0xccfee2b9bc976dd5ull, 0x4c8e6606eea8826dull, 0x84ece02fe61d6604ull, 0xd4c19a9c84c1edd3ull},
       0x4e21b8e002dbb742ull},
      {DType::Q5_1,
       {0xc9905fbba3fdf6f5ull, 0x818b021cdea16a32ull, 0xc5dd7c190b8ea09dull, 0x1cbf84ac52beb647ull,
        0x7a448c6c1a3a7230ull, 0x65b50dc1a76c3cb4ull, 0x5d1f02e295b31038ull, 0x41eb675a74309473ull},
       0x769d55d83f4b0ce6ull},
      {DType::Q8_0,
       {0xd5549034904fc3ddull, 0xc6742ce28bc95982ull, 0xd6881d5b9ccc4769ull, 0xeab0d33e778f7016ull,
        0x0e3f65798aa44101ull, 0x1775db32a3a47c16ull, 0xe29c0005d1516274ull, 0x471b7360c15b3614ull},
       0x07ca6bc715a8776eull},
      {DType::Q4_K,
       {0x01eb537500967154ull, 0x158051559b86ba04ull, 0x2b59e9900a193823ull, 0x78411b4930734fcaull,
        0xa95334351c3a3aecull, 0xe3b165bf40cd9b28ull, 0x456d913cf61998e7ull, 0xd73339d500021da2ull},
       0xff80d21f8513f394ull},
      {DType::Q5_K,
       {0x31356a307613e57cull, 0x49525c17434a59ccull, 0xebae7240ead398b2ull, 0xc274cf3423ea8e7full,
        0x9639bab7bdf2ec36ull, 0x73509be14cef8fb0ull, 0x3ad3052922e7368bull, 0xcb5d199ce060a709ull},
       0x1550557c93104940ull},
      {DType::Q6_K,
       {0x61abbe78ed43703bull, 0xe6a2dc9a708e7a0aull, 0x320b78cbce0c8564ull, 0x257929249e1271d3ull,
        0xe953c1cade4fa6fcull, 0xb80f0daafd0ea832ull, 0x7e02cdec213754d4ull, 0x70a5d0841e39b051ull},
       0xf0f0703376267d43ull},

  };
  const int64_t n = 4096;
  for (const Expect& e : expects) {
    CAPTURE(dtype_name(e.t));
    for (int kind = 0; kind < 8; ++kind) {
      CAPTURE(kind);
      const auto x = ref_input(kind, n);
      std::vector<uint8_t> q(row_bytes(e.t, n));
      quantize_row(e.t, x.data(), q.data(), n);
      CHECK(fnv1a(q.data(), q.size()) == e.quantized[kind]);
    }
    const auto r = ref_random_row(e.t, n, 77);
    for (KernelPath p : {KernelPath::Scalar, KernelPath::Avx2}) {
      if (!kernel_path_available(p)) continue;
      std::vector<float> y(static_cast<size_t>(n));
      dequantize_row(p, e.t, r.data(), y.data(), n);
      CHECK(fnv1a(y.data(), y.size() * 4) == e.dequantized);
    }
  }
}

TEST_CASE("quant: reference quantizers on hand-derived vectors") {
  SUBCASE("Q8_0: d = amax/127, q = round half away from zero") {
    float x[32];
    x[0] = -127.0f;  // amax 127: d = 1 and 1/d = 1 exactly, so every k + 0.5 below is a tie
    for (int j = 1; j < 32; ++j) x[j] = static_cast<float>(j - 16) + 0.5f;
    BlockQ8_0 b;
    quantize_row(DType::Q8_0, x, &b, 32);
    CHECK(b.d == kH1);
    CHECK(b.qs[0] == -127);
    for (int j = 1; j < 32; ++j) CHECK(b.qs[j] == (j - 16) + (j >= 16 ? 1 : 0));  // -2.5 -> -3
    CHECK(b.qs[14] == -2);                                                        // -1.5
    CHECK(b.qs[15] == -1);                                                        // -0.5
    CHECK(b.qs[16] == 1);                                                         // 0.5
    CHECK(b.qs[18] == 3);  // 2.5 (ties-to-even would give 2)

    for (int j = 0; j < 32; ++j) x[j] = static_cast<float>(j - 16);
    quantize_row(DType::Q8_0, x, &b, 32);
    CHECK(b.d == 0x3008);  // 16/127 = 0.12598 -> fp16 2^-3 * (1 + 8/1024)
    CHECK(b.qs[0] == -127);
    CHECK(b.qs[16] == 0);
    CHECK(b.qs[17] == 8);    // 7.94
    CHECK(b.qs[31] == 119);  // 119.06
  }
  SUBCASE("Q4_0: the largest-magnitude value maps to -8") {
    float x[32];
    for (int j = 0; j < 16; ++j) {
      x[j] = (j - 8) * 0.5f;
      x[j + 16] = (7 - j) * 0.5f;
    }
    BlockQ4_0 b;
    quantize_row(DType::Q4_0, x, &b, 32);
    CHECK(b.d == kH05);
    for (int j = 0; j < 16; ++j) CHECK(b.qs[j] == (j | ((15 - j) << 4)));
    // A positive extreme gives a negative scale; -4 then clamps to 15 (= -3.5).
    for (float& v : x) v = 0.0f;
    x[0] = 4.0f;
    x[1] = -4.0f;
    x[2] = -3.5f;
    quantize_row(DType::Q4_0, x, &b, 32);
    CHECK(b.d == 0xB800);  // -0.5
    CHECK((b.qs[0] & 15) == 0);
    CHECK((b.qs[1] & 15) == 15);
    CHECK((b.qs[2] & 15) == 15);
    CHECK((b.qs[3] & 15) == 8);
    // An all-zero block stores d = -0 (0 / -8) and q = 8.
    for (float& v : x) v = 0.0f;
    quantize_row(DType::Q4_0, x, &b, 32);
    CHECK(b.d == 0x8000);
    CHECK(b.qs[5] == 0x88);
  }
  SUBCASE("Q4_1: d = (max - min)/15, m = min") {
    float x[32];
    for (int j = 0; j < 32; ++j) x[j] = (j % 16) * 0.25f - 1.0f;
    BlockQ4_1 b;
    quantize_row(DType::Q4_1, x, &b, 32);
    CHECK(b.d == kH025);
    CHECK(b.m == kHm1);
    for (int j = 0; j < 16; ++j) CHECK(b.qs[j] == (j | (j << 4)));
  }
  SUBCASE("Q5_0: d = max/-16, fifth bits into qh") {
    float x[32];
    for (int j = 0; j < 32; ++j) x[j] = (j - 16) * 0.25f;
    BlockQ5_0 b;
    quantize_row(DType::Q5_0, x, &b, 32);
    CHECK(b.d == kH025);
    uint32_t qh;
    std::memcpy(&qh, b.qh, 4);
    CHECK(qh == 0xFFFF0000u);  // q_j = j: elements 16..31 have the fifth bit
    for (int j = 0; j < 16; ++j) CHECK(b.qs[j] == (j | (j << 4)));
  }
  SUBCASE("Q6_K / Q4_K / Q5_K: an all-zero super-block") {
    std::vector<float> z(256, 0.0f);
    BlockQ6_K b6;
    std::memset(&b6, 0xAB, sizeof b6);
    quantize_row(DType::Q6_K, z.data(), &b6, 256);
    CHECK(b6.d == 0);
    CHECK(b6.scales[3] == 0);
    CHECK(b6.ql[100] == 0);
    BlockQ4_K b4;
    quantize_row(DType::Q4_K, z.data(), &b4, 256);
    CHECK(b4.d == 0);
    CHECK(b4.dmin == 0);
    for (float v : dequant(DType::Q4_K, &b4, 256)) CHECK(v == 0.0f);
  }
}

TEST_CASE("quant: quantize -> dequantize round trip error") {
  // Relative RMS error on N(0, 1) data. The bounds sit ~10% above what ggml's algorithms
  // reach (a wrong packing or a naive scale search would exceed them: e.g. Q4_K must beat
  // Q4_0, and a mis-placed nibble gives errors of order 1).
  struct Bound {
    DType t;
    double max_rel_rms;
  };
  const Bound bounds[] = {{DType::F32, 0.0},    {DType::F16, 3e-4},   {DType::BF16, 2.5e-3},
                          {DType::Q8_0, 0.007}, {DType::Q4_0, 0.095}, {DType::Q4_1, 0.087},
                          {DType::Q5_0, 0.048}, {DType::Q5_1, 0.043}, {DType::Q4_K, 0.08},
                          {DType::Q5_K, 0.04},  {DType::Q6_K, 0.02}};
  const int64_t n = 256 * 64;
  for (const Bound& b : bounds) {
    CAPTURE(dtype_name(b.t));
    const auto x = random_floats(static_cast<size_t>(n), 42, 1.0f);
    std::vector<uint8_t> q(row_bytes(b.t, n));
    quantize_row(b.t, x.data(), q.data(), n);
    const auto y = dequant(b.t, q.data(), n);
    double err = 0, sig = 0;
    for (int64_t i = 0; i < n; ++i) {
      err += (x[i] - y[i]) * static_cast<double>(x[i] - y[i]);
      sig += x[i] * static_cast<double>(x[i]);
    }
    CHECK(std::sqrt(err / sig) <= b.max_rel_rms);

    // ggml's own acceptance test (test-quantize-fns.cpp): data 0.1 + 2 cos(i), error
    // sqrt(sum diff^2) / n below 0.002 for every one of these types.
    std::vector<float> c(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) c[i] = 0.1f + 2 * std::cos(static_cast<float>(i));
    quantize_row(b.t, c.data(), q.data(), n);
    const auto yc = dequant(b.t, q.data(), n);
    double e2 = 0;
    for (int64_t i = 0; i < n; ++i) e2 += (c[i] - yc[i]) * static_cast<double>(c[i] - yc[i]);
    CHECK(std::sqrt(e2) / n < 0.002);
  }
}

TEST_CASE("quant: dequantize_row paths are bit-identical") {
  if (!kernel_path_available(KernelPath::Avx2)) LLM_SKIP("no AVX2 on this CPU");
  for (DType t : kAllTypes) {
    CAPTURE(dtype_name(t));
    for (uint32_t seed = 1; seed <= 4; ++seed) {
      const int64_t n = 256 * 8;
      const auto r = ref_random_row(t, n, seed);  // every bit pattern of quants and scales
      std::vector<float> a(static_cast<size_t>(n)), b(static_cast<size_t>(n));
      dequantize_row(KernelPath::Scalar, t, r.data(), a.data(), n);
      dequantize_row(KernelPath::Avx2, t, r.data(), b.data(), n);
      CHECK(std::memcmp(a.data(), b.data(), a.size() * 4) == 0);
    }
  }
}
