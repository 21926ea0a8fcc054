// The one-row gate/up product with the SwiGLU in its epilogue (cuda/matvec_glu.h) against
// the launches it replaces (rmsnorm, matvec of gate and up, swiglu) bit for bit in every
// output format, and against the CPU reference.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "cuda/activation.h"
#include "cuda/matvec_glu.h"
#include "cuda/matvec_quant.h"
#include "cuda/rmsnorm.h"
#include "cuda_test_util.h"
#include "cuda_test_weights.h"
#include "engine/error.h"
#include "engine/ops_cpu.h"

using namespace llm;
using namespace llm::test;

namespace {

const bool kHaveDevice = require_cuda_device();

// The three formats of one row of n elements, poisoned beforehand.
struct Out {
  Dev<float> f32;
  Dev<__half> f16;
  Dev<int8_t> qs;
  Dev<float2> ds;
  explicit Out(int64_t n)
      : f32(static_cast<size_t>(n)),
        f16(static_cast<size_t>(n)),
        qs(static_cast<size_t>(n)),
        ds(static_cast<size_t>(n / 32)) {}
  cuda::ActOut formats() {
    cuda::ActOut o;
    o.f32 = f32.p();
    o.f16 = f16.p();
    o.q8 = {qs.p(), ds.p()};
    return o;
  }
};

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

}  // namespace

TEST_CASE("cuda matvec_glu: equals rmsnorm + matvec + swiglu bit for bit and matches the CPU") {
  uint32_t seed = 900;
  for (DType t : {DType::Q4_0, DType::Q4_1, DType::Q5_0}) {
    // 2,048 and 1,984 wide: the norm inside (the latter with a warp's last 16 threads
    // outside the row); 544: q8 input only.
    for (int64_t cols : {2048, 1984, 544}) {
      const int64_t rows = 96;  // three blocks of 32 outputs
      TestWeight gate(t, rows, cols, seed++), up(t, rows, cols, seed++);
      REQUIRE(cuda::matvec_glu_supported(gate.W, up.W));
      const bool norm = cuda::matvec_glu_norm_supported(cols);
      CHECK(norm == (cols != 544));
      const std::vector<float> h = randn(static_cast<size_t>(cols), seed++, 3.0f);
      std::vector<float> nw = randn(static_cast<size_t>(cols), seed++);
      for (float& v : nw) v = 1.0f + 0.2f * v;

      // The input row's q8: from rmsnorm (the launch the norm mode replaces), or of h as is.
      Dev<float> dh(h), dnw(nw);
      TestAct a(h, 1, cols);
      if (norm) {
        cuda::ActOut xo;
        xo.q8 = a.q8();
        cuda::rmsnorm(dh.p(), nullptr, dnw.p(), 1, static_cast<int>(cols), 1e-5f, xo, nullptr);
      }
      // The launches the fused kernel replaces.
      Dev<float> gu(static_cast<size_t>(2 * rows));
      cuda::MatvecJob jobs[2];
      jobs[0].W = gate.W;
      jobs[0].y = gu.p();
      jobs[0].ldy = 2 * rows;
      jobs[1].W = up.W;
      jobs[1].y = gu.p() + rows;
      jobs[1].ldy = 2 * rows;
      cuda::matvec(jobs, 2, a.f32.p(), a.q8(), 1, nullptr);
      Out ref(rows);
      cuda::swiglu(gu.p(), gu.p() + rows, 2 * rows, 1, static_cast<int>(rows), ref.formats(),
                   nullptr);

      // The CPU on the activations as quantized: only float rounding remains.
      const std::vector<float> xq = a.q8_values();
      std::vector<float> g(static_cast<size_t>(rows)), u(static_cast<size_t>(rows)),
          cpu_out(static_cast<size_t>(rows));
      cpu::matmul(gate.ref, xq.data(), g.data(), 1, 1);
      cpu::matmul(up.ref, xq.data(), u.data(), 1, 1);
      cpu::swiglu(g.data(), u.data(), cpu_out.data(), rows);

      for (bool fused_norm : {false, true}) {
        if (fused_norm && !norm) continue;
        CAPTURE(dtype_name(t));
        CAPTURE(cols);
        CAPTURE(fused_norm);
        cuda::GluInput in;
        in.x_q8 = a.q8();
        if (fused_norm) {
          in.h = dh.p();
          in.norm_w = dnw.p();
          in.eps = 1e-5f;
        }
        Out got(rows);
        cuda::matvec_glu(gate.W, up.W, in, got.formats(), nullptr);
        CHECK(same_bits(got.f32.get(), ref.f32.get()));
        CHECK(same_bits(got.f16.get(), ref.f16.get()));
        CHECK(same_bits(got.qs.get(), ref.qs.get()));
        CHECK(same_bits(got.ds.get(), ref.ds.get()));
        const double err = rel_err(got.f32.get(), cpu_out);
        CAPTURE(err);
        CHECK(err < 1e-5);
      }
    }
  }
}

TEST_CASE("cuda matvec_glu: refuses what it cannot take") {
  TestWeight f16(DType::F16, 64, 256, 1), q4(DType::Q4_0, 64, 256, 2),
      q4_odd(DType::Q4_0, 48, 256, 3), q41(DType::Q4_1, 64, 256, 4);
  CHECK_FALSE(cuda::matvec_glu_supported(f16.W, f16.W));
  CHECK_FALSE(cuda::matvec_glu_supported(q4_odd.W, q4_odd.W));  // rows not a multiple of 32
  CHECK_FALSE(cuda::matvec_glu_supported(q4.W, q41.W));         // two types
  CHECK(cuda::matvec_glu_supported(q4.W, q4.W));
  const std::vector<float> x = randn(256, 5);
  TestAct a(x, 1, 256);
  Dev<float> y(64);
  cuda::ActOut o;
  o.f32 = y.p();
  cuda::GluInput in;
  in.x_q8 = a.q8();
  CHECK_THROWS_AS(cuda::matvec_glu(f16.W, f16.W, in, o, nullptr), Error);
  in.h = y.p();  // a row to normalize, but 256 wide and no norm weights
  CHECK_THROWS_AS(cuda::matvec_glu(q4.W, q4.W, in, o, nullptr), Error);
  CHECK_FALSE(cuda::matvec_glu_norm_supported(256));
  CHECK_FALSE(cuda::matvec_glu_norm_supported(4096));
}

TEST_CASE("cuda matvec: the norm inside the one-row product equals rmsnorm + matvec bit for bit") {
  uint32_t seed = 950;
  for (DType t : {DType::Q4_0, DType::Q4_1, DType::Q5_0}) {
    for (int64_t cols : {2048, 1984}) {
      // Three matrices as q/k/v; 34 rows leave the last block's last warps without rows
      // (they still take part in the norm's barriers).
      const int64_t rows[3] = {96, 32, 34};
      TestWeight w0(t, rows[0], cols, seed++), w1(t, rows[1], cols, seed++),
          w2(t, rows[2], cols, seed++);
      const TestWeight* ws[3] = {&w0, &w1, &w2};
      const std::vector<float> h = randn(static_cast<size_t>(cols), seed++, 2.0f);
      std::vector<float> nw = randn(static_cast<size_t>(cols), seed++);
      for (float& v : nw) v = 1.0f + 0.2f * v;
      Dev<float> dh(h), dnw(nw);
      TestAct a(h, 1, cols);
      cuda::ActOut xo;
      xo.q8 = a.q8();
      cuda::rmsnorm(dh.p(), nullptr, dnw.p(), 1, static_cast<int>(cols), 1e-6f, xo, nullptr);

      const int64_t total = rows[0] + rows[1] + rows[2];
      Dev<float> ref(static_cast<size_t>(total)), got(static_cast<size_t>(total));
      cuda::MatvecJob jobs[3];
      int64_t off = 0;
      for (int i = 0; i < 3; ++i) {
        jobs[i].W = ws[i]->W;
        jobs[i].y = ref.p() + off;
        jobs[i].ldy = rows[i];
        off += rows[i];
      }
      REQUIRE(cuda::matvec_norm_supported(jobs, 3, 1));
      cuda::matvec(jobs, 3, nullptr, a.q8(), 1, nullptr);
      for (int i = 0; i < 3; ++i) jobs[i].y = got.p() + (jobs[i].y - ref.p());
      cuda::MatvecNorm norm;
      norm.h = dh.p();
      norm.w = dnw.p();
      norm.eps = 1e-6f;
      cuda::matvec(jobs, 3, nullptr, cuda::ActQ8{}, 1, nullptr, {}, &norm);
      CAPTURE(dtype_name(t));
      CAPTURE(cols);
      CHECK(same_bits(got.get(), ref.get()));

      // What it refuses: two rows, a k_split job, a float matrix.
      CHECK_FALSE(cuda::matvec_norm_supported(jobs, 3, 2));
      cuda::MatvecJob split = jobs[0];
      split.k_split = cols / 2;
      CHECK_FALSE(cuda::matvec_norm_supported(&split, 1, 1));
      CHECK_THROWS_AS(cuda::matvec(&split, 1, nullptr, a.q8(), 1, nullptr, {}, &norm), Error);
    }
  }
  TestWeight f(DType::F16, 32, 2048, 7);
  cuda::MatvecJob fj;
  fj.W = f.W;
  CHECK_FALSE(cuda::matvec_norm_supported(&fj, 1, 1));
}
