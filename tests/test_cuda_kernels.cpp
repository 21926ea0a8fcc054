// The CUDA kernels against the CPU reference (engine/ops_cpu.h, quant/quants.h) on fresh
// random inputs (RoPE, KV store and attention: test_cuda_attention.cpp; the skinny
// products: test_cuda_skinny.cpp), with outputs poisoned (NaN) beforehand: an element a kernel
// forgets to write fails, and NaN never passes. Thresholds follow the precision of each path: f32
// arithmetic ~1e-5, f16 operands ~1e-3, int8 (q8) activations ~1e-2.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <numeric>
#include <random>
#include <vector>

#include "cuda/activation.h"
#include "cuda/embed.h"
#include "cuda/logits.h"
#include "cuda/matmul.h"
#include "cuda/matmul_tc.h"
#include "cuda/matvec_quant.h"
#include "cuda/quantize.h"
#include "cuda/qweight.h"
#include "cuda/rmsnorm.h"
#include "cuda_test_util.h"
#include "cuda_test_weights.h"
#include "engine/error.h"
#include "engine/ops_cpu.h"
#include "quant/quants.h"

using namespace llm;
using namespace llm::test;
using cuda::DevMatrix;

namespace {

const bool kHaveDevice = require_cuda_device();

const DType kAllTypes[] = {DType::F32,  DType::F16,  DType::BF16, DType::Q8_0, DType::Q4_0,
                           DType::Q4_1, DType::Q5_0, DType::Q4_K, DType::Q5_K, DType::Q6_K};

bool is_float(DType t) {
  return cuda::is_float_type(t);
}

int64_t cols_for(DType t) {
  return t == DType::Q4_K || t == DType::Q5_K || t == DType::Q6_K ? 768 : 544;
}

double matvec_tolerance(DType t) {
  return is_float(t) ? 2e-5 : 1.5e-2;
}

}  // namespace

TEST_CASE("cuda kernels: repack + dequantize reproduce dequantize_row for every type") {
  for (DType t : kAllTypes) {
    CAPTURE(dtype_name(t));
    const int64_t rows = 7, cols = cols_for(t);
    TestWeight w(t, rows, cols, 11);
    const std::vector<float> ref = w.dequant_cpu();
    Dev<float> out(static_cast<size_t>(rows * cols));
    cuda::dequantize(w.W, 0, rows, out.p(), nullptr);
    CHECK(rel_err(out.get(), ref) < 1e-6);
    // A row range, into f16.
    Dev<__half> h(static_cast<size_t>(3 * cols));
    cuda::dequantize(w.W, 2, 3, h.p(), nullptr);
    const std::vector<__half> hv = h.get();
    std::vector<float> hf(hv.size());
    for (size_t i = 0; i < hv.size(); ++i) hf[i] = __half2float(hv[i]);
    CHECK(rel_err(hf.data(), ref.data() + 2 * cols, hf.size()) < 1e-3);
  }
}

TEST_CASE("cuda kernels: embed matches cpu::embed for every type") {
  for (DType t : kAllTypes) {
    CAPTURE(dtype_name(t));
    const int64_t vocab = 37, cols = cols_for(t);
    TestWeight w(t, vocab, cols, 5);
    const std::vector<int32_t> toks = {3, 0, 36, 3, 17};
    std::vector<float> ref(toks.size() * static_cast<size_t>(cols));
    cpu::embed(w.ref, toks.data(), static_cast<int>(toks.size()), ref.data());
    Dev<int32_t> dt(toks);
    Dev<float> out(ref.size());
    cuda::embed(w.W, dt.p(), static_cast<int>(toks.size()), out.p(), nullptr);
    CHECK(rel_err(out.get(), ref) < 1e-6);
  }
}

// The GEMV kernel sets a backend can choose (LLM_CUDA_MV_KQ): the default, the k-quant and
// Q8_0 kernels of cuda/matvec_kq.cu, and their one-column alternatives (k-quants without
// the register cap, Q8_0 with 4 slots).
struct NamedVariant {
  const char* name;
  cuda::MatvecVariant v;
};
const NamedVariant kVariants[] = {
    {"default", {}},
    {"kq", {true, true, false, false, false}},
    {"kq uncapped / q8 deep", {true, true, false, true, true}},
};

bool variant_applies(DType t, const cuda::MatvecVariant& v) {
  const bool kq = t == DType::Q4_K || t == DType::Q5_K || t == DType::Q6_K;
  return (!v.kquant && !v.q8) || (v.kquant && kq) || (v.q8 && t == DType::Q8_0);
}

// Row lengths for the matvec tests: the one of the other tests, and one long enough that
// every kernel runs several pipeline steps and ends on a partial one (Q8_0 steps are 32
// units, k-quant steps 64 units).
std::vector<int64_t> matvec_widths(DType t) {
  if (t == DType::Q4_K || t == DType::Q5_K || t == DType::Q6_K) return {cols_for(t), 256 * 13};
  if (t == DType::Q8_0) return {cols_for(t), 32 * 75};
  return {cols_for(t)};
}

TEST_CASE("cuda kernels: matvec matches cpu::matmul for every type and 1..13 columns") {
  uint32_t seed = 100;
  for (DType t : kAllTypes) {
    for (int64_t cols : matvec_widths(t)) {
      const int64_t rows = 301;  // odd row count: the last warp's tail
      TestWeight w(t, rows, cols, seed++);
      for (int n : {1, 2, 3, 8, 13}) {
        const std::vector<float> x = randn(static_cast<size_t>(n * cols), seed++);
        std::vector<float> ref(static_cast<size_t>(n * rows));
        cpu::matmul(w.ref, x.data(), ref.data(), n, 2);
        TestAct a(x, n, cols);
        std::vector<float> ref_q;
        if (!is_float(t)) {
          // Against the activations as quantized: only float rounding remains.
          const std::vector<float> xq = a.q8_values();
          ref_q.resize(ref.size());
          cpu::matmul(w.ref, xq.data(), ref_q.data(), n, 2);
        }
        const std::vector<float> y0 = randn(ref.size(), seed++);
        for (const NamedVariant& var : kVariants) {
          if (!variant_applies(t, var.v)) continue;
          CAPTURE(dtype_name(t));
          CAPTURE(cols);
          CAPTURE(n);
          CAPTURE(var.name);
          Dev<float> y(ref.size());
          cuda::MatvecJob job;
          job.W = w.W;
          job.y = y.p();
          job.ldy = rows;
          cuda::matvec(&job, 1, a.f32.p(), a.q8(), n, nullptr, var.v);
          const std::vector<float> got = y.get();
          const double err = rel_err(got, ref);
          CAPTURE(err);
          CHECK(err < matvec_tolerance(t));
          if (!is_float(t)) {
            const double err_q = rel_err(got, ref_q);
            CAPTURE(err_q);
            CHECK(err_q < 1e-5);
          }
          // Column 0 alone gives the same bits as within the batch (all NC variants agree).
          Dev<float> y1(static_cast<size_t>(rows));
          cuda::MatvecJob one = job;
          one.y = y1.p();
          cuda::matvec(&one, 1, a.f32.p(), a.q8(), 1, nullptr, var.v);
          const std::vector<float> g1 = y1.get();
          CHECK(std::equal(g1.begin(), g1.end(), got.begin()));

          // Accumulating into y (the residual connection).
          y.upload(y0);
          job.accumulate = true;
          cuda::matvec(&job, 1, a.f32.p(), a.q8(), n, nullptr, var.v);
          std::vector<float> ref_acc(ref.size());
          for (size_t i = 0; i < ref.size(); ++i) ref_acc[i] = y0[i] + ref[i];
          CHECK(rel_err(y.get(), ref_acc) < matvec_tolerance(t));
        }
      }
    }
  }
}

// Tensor parallelism over two ranks sums wo and w_down as (y + S0) + S1: rank 0 adds its
// column half's product to the residual, rank 1 writes its own, the all-reduce adds them.
// One GPU with k_split must give those bits exactly, or greedy outputs drift apart.
TEST_CASE("cuda kernels: matvec with k_split gives the bits of two column slices summed") {
  uint32_t seed = 900;
  for (DType t :
       {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q5_0}) {
    // 1088 columns: each half is 17 units of 32 (68 steps of 8), so rank 1's lanes start
    // off the whole matrix's by an offset that is not a multiple of 32.
    const int64_t rows = 301, cols = 1088, half = cols / 2;
    const std::vector<float> v = randn(static_cast<size_t>(rows * cols), seed++, 0.5f);
    std::vector<float> v0, v1;
    for (int64_t r = 0; r < rows; ++r) {
      v0.insert(v0.end(), v.begin() + r * cols, v.begin() + r * cols + half);
      v1.insert(v1.end(), v.begin() + r * cols + half, v.begin() + (r + 1) * cols);
    }
    TestWeight w(t, rows, cols, v), w0(t, rows, half, v0), w1(t, rows, half, v1);
    for (int n : {1, 3}) {
      CAPTURE(dtype_name(t));
      CAPTURE(n);
      const std::vector<float> x = randn(static_cast<size_t>(n * cols), seed++);
      std::vector<float> x0, x1;
      for (int c = 0; c < n; ++c) {
        x0.insert(x0.end(), x.begin() + c * cols, x.begin() + c * cols + half);
        x1.insert(x1.end(), x.begin() + c * cols + half, x.begin() + (c + 1) * cols);
      }
      TestAct a(x, n, cols), a0(x0, n, half), a1(x1, n, half);
      const std::vector<float> y0 = randn(static_cast<size_t>(n * rows), seed++);
      const cuda::MatvecVariant generic{};  // the generic unit kernels for every type here
      Dev<float> y(y0), r0(y0), r1(y0.size());
      cuda::MatvecJob job;
      job.W = w.W;
      job.y = y.p();
      job.ldy = rows;
      job.accumulate = true;
      job.k_split = half;
      cuda::matvec(&job, 1, a.f32.p(), a.q8(), n, nullptr, generic);
      cuda::MatvecJob j0 = job, j1 = job;
      j0.W = w0.W;
      j0.y = r0.p();
      j0.k_split = 0;
      j1.W = w1.W;
      j1.y = r1.p();
      j1.k_split = 0;
      j1.k_offset = half;
      j1.accumulate = false;
      cuda::matvec(&j0, 1, a0.f32.p(), a0.q8(), n, nullptr, generic);
      cuda::matvec(&j1, 1, a1.f32.p(), a1.q8(), n, nullptr, generic);
      const std::vector<float> got = y.get(), p0 = r0.get(), p1 = r1.get();
      std::vector<float> sum(got.size());
      for (size_t i = 0; i < sum.size(); ++i) sum[i] = p0[i] + p1[i];
      CHECK(std::equal(got.begin(), got.end(), sum.begin()));
      // And it is still the product: y0 + W x within the type's tolerance.
      std::vector<float> ref(got.size());
      cpu::matmul(w.ref, x.data(), ref.data(), n, 2);
      for (size_t i = 0; i < ref.size(); ++i) ref[i] += y0[i];
      CHECK(rel_err(got, ref) < matvec_tolerance(t));
    }
  }
}

TEST_CASE("cuda kernels: LLM_CUDA_MV_KQ selects matvec kernels; matvec_group forms launches") {
  const auto parse = [](const char* value) {
    if (value)
      setenv("LLM_CUDA_MV_KQ", value, 1);
    else
      unsetenv("LLM_CUDA_MV_KQ");
    return cuda::matvec_variant_from_env();
  };
  cuda::MatvecVariant v = parse(nullptr);  // default 15
  CHECK((v.kquant && v.q8 && v.mixed && v.uncapped && !v.q8_deep));
  v = parse("0");
  CHECK((!v.kquant && !v.q8 && !v.mixed && !v.uncapped && !v.q8_deep));
  v = parse("5");
  CHECK((v.kquant && !v.q8 && v.mixed && !v.uncapped && !v.q8_deep));
  v = parse("31");
  CHECK((v.kquant && v.q8 && v.mixed && v.uncapped && v.q8_deep));
  CHECK_THROWS_AS(parse("32"), Error);
  CHECK_THROWS_AS(parse("k"), Error);
  unsetenv("LLM_CUDA_MV_KQ");

  // q, k Q4_K and v Q6_K: one launch only with the mixed k-quant kernels.
  const auto jobs_of = [](std::initializer_list<DType> types, int64_t cols) {
    std::vector<cuda::MatvecJob> j;
    for (DType t : types) {
      j.emplace_back();
      j.back().W.type = t;
      j.back().W.cols = cols;
    }
    return j;
  };
  const cuda::MatvecVariant none{}, mixed{true, false, true, false, false};
  auto qkv = jobs_of({DType::Q4_K, DType::Q4_K, DType::Q6_K}, 4096);
  CHECK(cuda::matvec_group(qkv.data(), 3, none) == 2);
  CHECK(cuda::matvec_group(qkv.data(), 3, mixed) == 3);
  CHECK(cuda::matvec_group(qkv.data() + 2, 1, mixed) == 1);
  // Never three types in one launch, never two widths, never a non-k-quant.
  auto three = jobs_of({DType::Q4_K, DType::Q5_K, DType::Q6_K}, 4096);
  CHECK(cuda::matvec_group(three.data(), 3, mixed) == 2);
  auto widths = jobs_of({DType::Q4_K, DType::Q6_K}, 4096);
  widths[1].W.cols = 11008;
  CHECK(cuda::matvec_group(widths.data(), 2, mixed) == 1);
  auto q8 = jobs_of({DType::Q8_0, DType::Q6_K}, 4096);
  CHECK(cuda::matvec_group(q8.data(), 2, mixed) == 1);
  auto same = jobs_of({DType::Q4_0, DType::Q4_0, DType::Q4_0, DType::Q4_0}, 4096);
  CHECK(cuda::matvec_group(same.data(), 4, none) == 3);
}

TEST_CASE("cuda kernels: matvec fuses matrices of one launch and handles any float row length") {
  // q/k/v-like: three matrices of different heights into one strided output.
  // Types of the three matrices and the kernels: mixed k-quant launches too (q/k/v of the
  // Q4_K_M layers whose v is Q6_K).
  const cuda::MatvecVariant none{}, kq{true, true, false, false, false},
      mixed{true, true, true, false, false};
  struct Case {
    DType ta, tb, tc;
    cuda::MatvecVariant v;
  };
  const Case cases[] = {
      {DType::Q4_0, DType::Q4_0, DType::Q4_0, none},
      {DType::F16, DType::F16, DType::F16, none},
      {DType::Q6_K, DType::Q6_K, DType::Q6_K, none},
      {DType::Q6_K, DType::Q6_K, DType::Q6_K, kq},
      {DType::Q8_0, DType::Q8_0, DType::Q8_0, kq},
      {DType::Q4_K, DType::Q4_K, DType::Q6_K, mixed},
      {DType::Q5_K, DType::Q5_K, DType::Q6_K, mixed},
      {DType::Q4_K, DType::Q5_K, DType::Q5_K, mixed},
  };
  for (const Case& cs : cases) {
    const DType t = cs.ta;
    CAPTURE(dtype_name(cs.ta));
    CAPTURE(dtype_name(cs.tc));
    CAPTURE(cs.v.kquant);
    CAPTURE(cs.v.mixed);
    const int64_t cols = cols_for(t);
    const int n = 3;
    TestWeight a(cs.ta, 64, cols, 1), b(cs.tb, 32, cols, 2), c(cs.tc, 30, cols, 3);
    const std::vector<float> x = randn(static_cast<size_t>(n * cols), 4);
    TestAct act(x, n, cols);
    const int64_t ld = 64 + 32 + 30;
    Dev<float> y(static_cast<size_t>(n * ld));
    cuda::MatvecJob jobs[3];
    const TestWeight* ws[3] = {&a, &b, &c};
    int64_t off = 0;
    std::vector<float> ref(static_cast<size_t>(n * ld));
    for (int i = 0; i < 3; ++i) {
      jobs[i].W = ws[i]->W;
      jobs[i].y = y.p() + off;
      jobs[i].ldy = ld;
      std::vector<float> r(static_cast<size_t>(n * ws[i]->ref.rows));
      cpu::matmul(ws[i]->ref, x.data(), r.data(), n, 2);
      for (int row = 0; row < n; ++row)
        for (int64_t j = 0; j < ws[i]->ref.rows; ++j)
          ref[row * ld + off + j] = r[row * ws[i]->ref.rows + j];
      off += ws[i]->ref.rows;
    }
    REQUIRE(cuda::matvec_group(jobs, 3, cs.v) == 3);
    cuda::matvec(jobs, 3, act.f32.p(), act.q8(), n, nullptr, cs.v);
    CHECK(rel_err(y.get(), ref) < matvec_tolerance(t));
  }
  // Float rows of any length (stories260K's n_ff = 172) take the scalar path.
  for (DType t : {DType::F32, DType::F16, DType::BF16}) {
    for (int64_t cols : {172, 66}) {
      CAPTURE(dtype_name(t));
      CAPTURE(cols);
      const int n = 2;
      TestWeight w(t, 45, cols, 9);
      const std::vector<float> x = randn(static_cast<size_t>(n * cols), 10);
      std::vector<float> ref(static_cast<size_t>(n * 45));
      cpu::matmul(w.ref, x.data(), ref.data(), n, 2);
      Dev<float> xf(x), y(ref.size());
      cuda::MatvecJob job;
      job.W = w.W;
      job.y = y.p();
      job.ldy = 45;
      cuda::matvec(&job, 1, xf.p(), cuda::ActQ8{}, n, nullptr);
      CHECK(rel_err(y.get(), ref) < 2e-5);
    }
  }
}

TEST_CASE("cuda kernels: the q/k/v matvec epilogue adds biases, applies RoPE and stores k, v") {
  // q/k of type t, v of type tv; the mixed k-quant kernels take all three in one launch.
  const cuda::MatvecVariant none{}, kq{true, true, false, false, false},
      mixed{true, true, true, false, false};
  struct Case {
    DType t, tv;
    cuda::MatvecVariant v;
  };
  const Case cases[] = {{DType::Q4_0, DType::Q4_0, none}, {DType::Q6_K, DType::Q6_K, none},
                        {DType::F16, DType::F16, none},   {DType::Q6_K, DType::Q6_K, kq},
                        {DType::Q8_0, DType::Q8_0, kq},   {DType::Q4_K, DType::Q6_K, mixed}};
  for (const Case& cs : cases) {
    const DType t = cs.t;
    for (int rope_dim : {64, 32}) {
      CAPTURE(dtype_name(t));
      CAPTURE(dtype_name(cs.tv));
      CAPTURE(cs.v.kquant);
      CAPTURE(rope_dim);
      const int64_t cols = cols_for(t);
      const int H = 4, Hkv = 2, D = 64, Q = H * D, KV = Hkv * D, n = 3, n_slots = 40;
      TestWeight wq(t, Q, cols, 1), wk(t, KV, cols, 2), wv(cs.tv, KV, cols, 3);
      const std::vector<float> x = randn(static_cast<size_t>(n * cols), 4);
      const std::vector<float> bq = randn(Q, 5), bk = randn(KV, 6), bv = randn(KV, 7);
      const std::vector<int32_t> pos = {0, 9, 3000}, slots = {5, 17, 39};
      std::vector<float> inv(static_cast<size_t>(rope_dim / 2));
      for (int i = 0; i < rope_dim / 2; ++i)
        inv[static_cast<size_t>(i)] = std::pow(10000.0f, -2.0f * i / rope_dim);
      TestAct act(x, n, cols);
      Dev<float> dbq(bq), dbk(bk), dbv(bv), dinv(inv), qout(static_cast<size_t>(n * Q));
      Dev<int32_t> dpos(pos), dslots(slots);
      Dev<__half> kc(static_cast<size_t>(n_slots * KV)), vc(static_cast<size_t>(n_slots * KV));
      cuda::MatvecJob jobs[3];
      const TestWeight* ws[3] = {&wq, &wk, &wv};
      const cuda::Epilogue ep[3] = {cuda::Epilogue::RopeToY, cuda::Epilogue::RopeToCache,
                                    cuda::Epilogue::ToCache};
      const float* bias[3] = {dbq.p(), dbk.p(), dbv.p()};
      __half* cache[3] = {nullptr, kc.p(), vc.p()};
      for (int i = 0; i < 3; ++i) {
        jobs[i].W = ws[i]->W;
        jobs[i].epilogue = ep[i];
        jobs[i].rope = {bias[i], dpos.p(), dslots.p(), dinv.p(), D, rope_dim, cache[i]};
      }
      jobs[0].y = qout.p();
      jobs[0].ldy = Q;
      if (cs.t != cs.tv) {
        REQUIRE(cuda::matvec_group(jobs, 3, cs.v) == 3);
        cuda::matvec(jobs, 3, act.f32.p(), act.q8(), n, nullptr, cs.v);  // one launch
      } else {
        cuda::matvec(jobs, 1, act.f32.p(), act.q8(), n, nullptr, cs.v);      // q alone
        cuda::matvec(jobs + 1, 2, act.f32.p(), act.q8(), n, nullptr, cs.v);  // k and v together
      }
      // Reference: the projections of the activations as the kernel sees them.
      const std::vector<float> xv = is_float(t) ? x : act.q8_values();
      std::vector<float> q(static_cast<size_t>(n * Q)), k(static_cast<size_t>(n * KV)),
          v(static_cast<size_t>(n * KV));
      cpu::matmul(wq.ref, xv.data(), q.data(), n, 2);
      cpu::matmul(wk.ref, xv.data(), k.data(), n, 2);
      cpu::matmul(wv.ref, xv.data(), v.data(), n, 2);
      cpu::add_bias(q.data(), bq.data(), n, Q);
      cpu::add_bias(k.data(), bk.data(), n, KV);
      cpu::add_bias(v.data(), bv.data(), n, KV);
      cpu::rope(q.data(), pos.data(), n, H, D, rope_dim, RopeType::Norm, inv.data());
      cpu::rope(k.data(), pos.data(), n, Hkv, D, rope_dim, RopeType::Norm, inv.data());
      CHECK(rel_err(qout.get(), q) < 1e-4);
      const std::vector<__half> kh = kc.get(), vh = vc.get();
      std::vector<float> kg, vg;
      for (int r = 0; r < n; ++r)
        for (int e = 0; e < KV; ++e) {
          kg.push_back(
              __half2float(kh[static_cast<size_t>(slots[static_cast<size_t>(r)] * KV + e)]));
          vg.push_back(
              __half2float(vh[static_cast<size_t>(slots[static_cast<size_t>(r)] * KV + e)]));
        }
      CHECK(rel_err(kg, k) < 1e-3);
      CHECK(rel_err(vg, v) < 1e-3);
    }
  }
}

TEST_CASE("cuda kernels: matmul (dequantize + cuBLAS) matches cpu::matmul for every type") {
  cublasHandle_t h;
  cuda::cublas_check(cublasCreate(&h), "cublasCreate");
  uint32_t seed = 300;
  for (DType t : kAllTypes) {
    CAPTURE(dtype_name(t));
    const int64_t rows = 200, cols = cols_for(t);
    const int n = 37;
    TestWeight w(t, rows, cols, seed++);
    const std::vector<float> x = randn(static_cast<size_t>(n * cols), seed++);
    std::vector<float> ref(static_cast<size_t>(n * rows));
    cpu::matmul(w.ref, x.data(), ref.data(), n, 2);
    TestAct a(x, n, cols);
    Dev<float> y(ref.size());
    // A scratch smaller than the matrix: the product runs in row chunks.
    Dev<__half> scratch(static_cast<size_t>(70 * cols));
    cuda::MatmulArgs m;
    m.W = &w.W;
    m.x_f16 = a.f16.p();
    m.x_f32 = a.f32.p();
    m.n = n;
    m.y = y.p();
    m.ldy = rows;
    m.scratch = scratch.p();
    m.scratch_elems = scratch.n;
    cuda::matmul(h, m, nullptr);
    const double err = rel_err(y.get(), ref);
    CAPTURE(err);
    CHECK(err < (t == DType::F32 ? 1e-5 : 3e-3));
  }
  cublasDestroy(h);
}

TEST_CASE("cuda kernels: tensor-core products (mm_tc) match cpu::matmul for every type") {
  uint32_t seed = 700;
  Dev<float> ws_partial(cuda::mm_tc_partial_floats(cuda::MmTcConfig{}));
  Dev<int> ws_counters(static_cast<size_t>(cuda::kTcCounters));
  ws_counters.upload(std::vector<int>(static_cast<size_t>(cuda::kTcCounters), 0));
  for (DType t : kAllTypes) {
    CAPTURE(dtype_name(t));
    const int64_t rows = 200, cols = cols_for(t);  // rows: a partial last 16-row tile
    TestWeight w(t, rows, cols, seed++);
    if (!cuda::mm_tc_supported(w.W)) {
      CHECK((t == DType::F32 || t == DType::BF16));
      continue;
    }
    // One column tile, several, the 64-column pass limit and more passes.
    for (int n : {2, 7, 8, 9, 33, 64, 65, 130}) {
      CAPTURE(n);
      const std::vector<float> x = randn(static_cast<size_t>(n * cols), seed++);
      TestAct a(x, n, cols);
      const bool q8 = cuda::mm_tc_wants_q8(w.W);
      // Reference on the values the kernel sees: q8 blocks, or f16-rounded activations.
      std::vector<float> xs = q8 ? a.q8_values() : x;
      if (!q8)
        for (float& v : xs) v = __half2float(__float2half_rn(v));
      std::vector<float> ref(static_cast<size_t>(n * rows));
      cpu::matmul(w.ref, xs.data(), ref.data(), n, 2);
      Dev<float> y(ref.size());
      cuda::MmTcArgs m;
      m.W = &w.W;
      m.x_q8 = a.q8();
      m.x_f16 = a.f16.p();
      m.n = n;
      m.y = y.p();
      m.ldy = rows;
      m.ws.partial = ws_partial.p();
      m.ws.counters = ws_counters.p();
      // 4 row tiles of 64: K is split across CTAs (3 to 5 ways here, partial last chunk).
      CHECK(cuda::mm_tc_splits(w.W, cuda::MmTcConfig{}, true) > 1);
      cuda::mm_tc(m, nullptr);
      const std::vector<float> got = y.get();
      const double err = rel_err(got, ref);
      CAPTURE(err);
      CHECK(err < 1e-5);
      // Without a workspace K is not split: same sums in another order.
      cuda::MmTcArgs whole = m;
      whole.ws = {};
      Dev<float> yw(ref.size());
      whole.y = yw.p();
      cuda::mm_tc(whole, nullptr);
      CHECK(rel_err(yw.get(), ref) < 1e-5);
      // Every split tile's counter is back at zero (the next launch relies on it).
      const std::vector<int> counters = ws_counters.get();
      CHECK(std::all_of(counters.begin(), counters.end(), [](int c) { return c == 0; }));
      // The first two columns alone give the same bits as within the batch: a column's
      // sums do not depend on how many others share the launch (batch invariance).
      cuda::MmTcArgs one = m;
      one.n = 2;
      Dev<float> y2(static_cast<size_t>(2 * rows));
      one.y = y2.p();
      cuda::mm_tc(one, nullptr);
      const std::vector<float> g2 = y2.get();
      CHECK(std::equal(g2.begin(), g2.end(), got.begin()));
      // Accumulating into y (the residual connection).
      const std::vector<float> y0 = randn(ref.size(), seed++);
      y.upload(y0);
      m.accumulate = true;
      cuda::mm_tc(m, nullptr);
      std::vector<float> ref_acc(ref.size());
      for (size_t i = 0; i < ref.size(); ++i) ref_acc[i] = y0[i] + ref[i];
      CHECK(rel_err(y.get(), ref_acc) < 1e-5);
    }
  }
}

TEST_CASE("cuda kernels: rmsnorm matches cpu::rmsnorm in every output format, with a row gather") {
  for (int n : {4096, 64, 172}) {
    CAPTURE(n);
    const int rows = 6;
    const std::vector<float> x = randn(static_cast<size_t>(rows * n), 21, 3.0f);
    const std::vector<float> w = randn(static_cast<size_t>(n), 22);
    std::vector<float> ref(x.size());
    cpu::rmsnorm(x.data(), w.data(), ref.data(), rows, n, 1e-5f);
    Dev<float> dx(x), dw(w), f32(x.size());
    Dev<__half> f16(x.size());
    Dev<int8_t> qs(x.size());
    Dev<float2> ds(x.size() / 32 + 1);
    cuda::ActOut o;
    o.f32 = f32.p();
    o.f16 = f16.p();
    if (n % 32 == 0) o.q8 = {qs.p(), ds.p()};
    cuda::rmsnorm(dx.p(), nullptr, dw.p(), rows, n, 1e-5f, o, nullptr);
    CHECK(rel_err(f32.get(), ref) < 1e-5);
    const std::vector<__half> hv = f16.get();
    std::vector<float> hf(hv.size());
    for (size_t i = 0; i < hv.size(); ++i) hf[i] = __half2float(hv[i]);
    CHECK(rel_err(hf, ref) < 1e-3);
    if (n % 32 == 0) {
      const std::vector<int8_t> q = qs.get();
      const std::vector<float2> d = ds.get();
      std::vector<float> deq(x.size());
      for (size_t i = 0; i < x.size(); ++i) deq[i] = d[i / 32].x * q[i];
      CHECK(rel_err(deq, ref) < 1e-2);
    }
    // Gather: output row i normalizes input row gather[i].
    const std::vector<int32_t> gather = {5, 0, 3};
    Dev<int32_t> dg(gather);
    Dev<float> g(static_cast<size_t>(3 * n));
    cuda::ActOut og;
    og.f32 = g.p();
    cuda::rmsnorm(dx.p(), dg.p(), dw.p(), 3, n, 1e-5f, og, nullptr);
    std::vector<float> gref;
    for (int r : gather) gref.insert(gref.end(), ref.begin() + r * n, ref.begin() + (r + 1) * n);
    CHECK(rel_err(g.get(), gref) < 1e-5);
  }
}

TEST_CASE("cuda kernels: q8 activation blocks hold d = amax/127, q = round(x/d), s = d*sum(q)") {
  const int rows = 3, k = 256;
  std::vector<float> x = randn(static_cast<size_t>(rows * k), 31, 2.0f);
  for (int i = 0; i < 32; ++i) x[static_cast<size_t>(64 + i)] = 0.0f;  // an all-zero block: d = 0
  TestAct a(x, rows, k);
  const std::vector<int8_t> q = a.qs.get();
  const std::vector<float2> ds = a.ds.get();
  int bad = 0;
  for (int b = 0; b < rows * k / 32; ++b) {
    float amax = 0;
    for (int i = 0; i < 32; ++i)
      amax = std::max(amax, std::fabs(x[static_cast<size_t>(32 * b + i)]));
    const float d = amax / 127.0f;
    int sum = 0;
    for (int i = 0; i < 32; ++i) {
      const int expect =
          d > 0 ? static_cast<int>(std::nearbyint(x[static_cast<size_t>(32 * b + i)] / d)) : 0;
      const int got = q[static_cast<size_t>(32 * b + i)];
      if (std::abs(got - expect) > (d > 0 ? 1 : 0)) ++bad;  // 1: a tie rounded the other way
      sum += got;
    }
    if (std::fabs(ds[static_cast<size_t>(b)].x - d) > 1e-6f * amax) ++bad;
    if (std::fabs(ds[static_cast<size_t>(b)].y - d * sum) > 1e-4f * (std::fabs(d * sum) + 1e-6f))
      ++bad;
  }
  CHECK(bad == 0);
}

TEST_CASE("cuda kernels: swiglu matches cpu::swiglu") {
  const int rows = 5, n = 1000;
  const std::vector<float> g =
      randn(static_cast<size_t>(rows * 2 * n), 41, 3.0f);  // (rows, gate | up)
  std::vector<float> gate, up, ref(static_cast<size_t>(rows * n));
  for (int r = 0; r < rows; ++r) {
    gate.insert(gate.end(), g.begin() + r * 2 * n, g.begin() + r * 2 * n + n);
    up.insert(up.end(), g.begin() + r * 2 * n + n, g.begin() + (r + 1) * 2 * n);
  }
  cpu::swiglu(gate.data(), up.data(), ref.data(), static_cast<int64_t>(ref.size()));
  Dev<float> dg(g), out(ref.size());
  cuda::ActOut o;
  o.f32 = out.p();
  cuda::swiglu(dg.p(), dg.p() + n, 2 * n, rows, n, o, nullptr);
  CHECK(rel_err(out.get(), ref) < 1e-6);
}

TEST_CASE("cuda kernels: argmax picks the first maximum and ignores NaN") {
  const int V = 5000;
  std::vector<float> x = randn(static_cast<size_t>(3 * V), 81);
  x[123] = 50.0f;                   // row 0: a clear maximum
  x[V + 10] = x[V + 4000] = 60.0f;  // row 1: a tie, the lower index wins
  x[2 * V + 7] = NAN;               // row 2: NaN never wins
  x[2 * V + 4999] = 70.0f;
  Dev<float> dx(x);
  Dev<int32_t> out(3);
  cuda::argmax_rows(dx.p(), 3, V, out.p(), nullptr);
  const std::vector<int32_t> got = out.get();
  CHECK(got[0] == 123);
  CHECK(got[1] == 10);
  CHECK(got[2] == 4999);
}
