// cuda/matmul_skinny (mm_sk) against the CPU reference on the values the kernel sees
// (q8 activation blocks, or f16-rounded activations), with outputs poisoned beforehand:
// every supported type, 2..130 activation rows, split and unsplit K, long pipelines.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "cuda/activation.h"
#include "cuda/kv_store.h"
#include "cuda/matmul_skinny.h"
#include "cuda/matvec_quant.h"
#include "cuda/rope.h"
#include "cuda_test_util.h"
#include "cuda_test_weights.h"
#include "engine/error.h"
#include "engine/ops_cpu.h"

using namespace llm;
using namespace llm::test;

namespace {

const bool kHaveDevice = require_cuda_device();
// The warpgroup-MMA kernel runs only on sm_90a code (H100 / H200); its cases skip elsewhere.
// Asked on first use, not at static initialization (the kernels may not be registered yet).
bool have_wgmma() {
  static const bool have = kHaveDevice && cuda::mm_sk_wgmma_available();
  return have;
}

// CPU reference of W · x for the values mm_sk multiplies: q8 activation blocks, or
// f16-rounded activations; in the half mode also f16-rounded dequantized weights.
std::vector<float> reference(const TestWeight& w, const TestAct& a, const std::vector<float>& x,
                             int n) {
  const bool q8 = cuda::mm_sk_wants_q8(w.W, n);
  std::vector<float> xs = q8 ? a.q8_values() : x;
  if (!q8)
    for (float& v : xs) v = __half2float(__float2half_rn(v));
  const int64_t rows = w.ref.rows, cols = w.ref.cols;
  std::vector<float> ref(static_cast<size_t>(n * rows));
  if (!cuda::mm_sk_half(w.W, n)) {
    cpu::matmul(w.ref, xs.data(), ref.data(), n, 2);
    return ref;
  }
  std::vector<float> wf = w.dequant_cpu();
  for (float& v : wf) v = __half2float(__float2half_rn(v));
  for (int c = 0; c < n; ++c)
    for (int64_t r = 0; r < rows; ++r) {
      double acc = 0;
      for (int64_t k = 0; k < cols; ++k)
        acc += static_cast<double>(wf[static_cast<size_t>(r * cols + k)]) *
               xs[static_cast<size_t>(c * cols + k)];
      ref[static_cast<size_t>(c * rows + r)] = static_cast<float>(acc);
    }
  return ref;
}

struct Workspace {
  Dev<float> partial;
  Dev<int> counters;
  // Room for launches of up to 3 matrices like W.
  Workspace(const cuda::DevMatrix& W, const cuda::MmSkConfig& cfg)
      : partial(std::max<size_t>(cuda::mm_sk_partial_floats(W, 3 * W.rows, cfg), 1)),
        counters(3 * cuda::mm_sk_tiles(W)) {
    counters.upload(std::vector<int>(counters.n, 0));
  }
  cuda::MmSkWorkspace ws() const { return {partial.p(), counters.p()}; }
};

}  // namespace

TEST_CASE("cuda skinny: mm_sk matches cpu::matmul for every supported type") {
  if (!have_wgmma()) MESSAGE("no sm_90a device code: the F16 warpgroup-MMA cases are skipped");
  uint32_t seed = 900;
  const DType types[] = {DType::F16, DType::Q8_0, DType::Q4_0, DType::Q4_1};
  // 200 rows: a partial last 64-row tile. K: one with few stages split many ways, one long
  // enough for the weight ring to wrap several times in one CTA.
  for (DType t : types) {
    for (int64_t cols : {int64_t{640}, int64_t{2048}}) {
      CAPTURE(dtype_name(t));
      CAPTURE(cols);
      const int64_t rows = 200;
      TestWeight w(t, rows, cols, seed++);
      REQUIRE(cuda::mm_sk_supported(w.W));
      // K whole (split only where the staged activations would not fit), and K split
      // across CTAs (4 row tiles: 66 splits wanted, as many as there are stages).
      // F16 also on the warpgroup-MMA kernel (MmSkConfig::f16_wgmma).
      for (int v = 0; v < (t == DType::F16 && have_wgmma() ? 4 : 2); ++v) {
        const bool split_k = v % 2 == 1;
        cuda::MmSkConfig cfg;
        cfg.f16_wgmma = v >= 2;
        cfg.ring_x_l1 = split_k;  // the ring kernel's activation copies through L1 or not
        CAPTURE(split_k);
        CAPTURE(cfg.f16_wgmma);
        Workspace ws(w.W, cfg);
        for (int n : {2, 7, 8, 9, 17, 33, 64, 65, 130}) {
          CAPTURE(n);
          const std::vector<float> x = randn(static_cast<size_t>(n * cols), seed++);
          TestAct a(x, n, cols);
          const std::vector<float> ref = reference(w, a, x, n);
          Dev<float> y(ref.size());
          cuda::MmSkArgs m;
          m.W[0] = &w.W;
          m.y[0] = y.p();
          m.x_q8 = a.q8();
          m.x_f16 = a.f16.p();
          m.n = n;
          m.ldy = rows;
          m.split_k = split_k;
          m.ws = ws.ws();
          m.cfg = cfg;
          const int splits = cuda::mm_sk_splits(w.W, cfg, split_k);
          if (split_k) CHECK(splits > 1);
          if (!split_k) CHECK(splits == 1);
          cuda::mm_sk(m, nullptr);
          const std::vector<float> got = y.get();
          const double err = rel_err(got, ref);
          CAPTURE(err);
          CHECK(err < 1e-5);
          // Every split tile's counter is back at zero (the next launch relies on it).
          const std::vector<int> counters = ws.counters.get();
          CHECK(std::all_of(counters.begin(), counters.end(), [](int c) { return c == 0; }));
          // Accumulating into y (the residual connection).
          const std::vector<float> y0 = randn(ref.size(), seed++);
          y.upload(y0);
          m.accumulate = true;
          cuda::mm_sk(m, nullptr);
          std::vector<float> ref_acc(ref.size());
          for (size_t i = 0; i < ref.size(); ++i) ref_acc[i] = y0[i] + ref[i];
          CHECK(rel_err(y.get(), ref_acc) < 1e-5);
        }
      }
    }
  }
}

TEST_CASE("cuda skinny: the Q4_0 register mode matches the reference with 2 or 3 stages held") {
  // 17..32 rows of Q4_0 load the weights straight into registers (matmul_skinny_q4r.cu).
  // Both weight stage counts, both activation ring depths and copies through L1 or not do
  // the same arithmetic in the same order (the same bits); the ring half mode (reg_weights
  // off) sums in another order. K: 5
  // stages (k-groups of 3 and 2, loop tails) and 36 (18 each); split and whole K; rows past a
  // partial 64-row tile.
  uint32_t seed = 990;
  for (int64_t cols : {int64_t{640}, int64_t{4608}}) {
    CAPTURE(cols);
    const int64_t rows = 200;
    TestWeight w(DType::Q4_0, rows, cols, seed++);
    for (bool split_k : {false, true}) {
      CAPTURE(split_k);
      for (int n : {17, 24, 25, 32}) {
        CAPTURE(n);
        REQUIRE(cuda::mm_sk_half(w.W, n));
        const std::vector<float> x = randn(static_cast<size_t>(n * cols), seed++);
        TestAct a(x, n, cols);
        const std::vector<float> ref = reference(w, a, x, n);
        std::vector<float> out[5];
        // ring; 2 stages; 3 stages; 2 stages, 4 ring slots; 2 stages, L2 only
        for (int v = 0; v < 5; ++v) {
          cuda::MmSkConfig cfg;
          cfg.reg_weights = v > 0;
          cfg.reg_bufs = v == 2 ? 3 : 2;
          cfg.reg_x_slots = v == 3 ? 4 : 3;
          cfg.reg_x_l1 = v != 4;
          Workspace ws(w.W, cfg);
          Dev<float> y(ref.size());
          y.upload(std::vector<float>(ref.size(), std::nanf("")));
          cuda::MmSkArgs m;
          m.W[0] = &w.W;
          m.y[0] = y.p();
          m.x_f16 = a.f16.p();
          m.n = n;
          m.ldy = rows;
          m.split_k = split_k;
          m.ws = ws.ws();
          m.cfg = cfg;
          cuda::mm_sk(m, nullptr);
          out[v] = y.get();
          CAPTURE(v);
          CHECK(rel_err(out[v], ref) < 1e-5);
          const std::vector<int> counters = ws.counters.get();
          CHECK(std::all_of(counters.begin(), counters.end(), [](int c) { return c == 0; }));
        }
        for (int v : {2, 3, 4})
          CHECK(std::memcmp(out[1].data(), out[v].data(), out[1].size() * sizeof(float)) == 0);
      }
    }
  }
}

TEST_CASE("cuda skinny: matrices sharing a launch give the bits of each launched alone") {
  // q/k/v (and gate/up) run as one launch; each output equals its matrix's own launch.
  uint32_t seed = 920;
  for (DType t : {DType::F16, DType::Q4_0}) {
    CAPTURE(dtype_name(t));
    const int64_t cols = 1024;
    TestWeight w0(t, 200, cols, seed++), w1(t, 64, cols, seed++), w2(t, 96, cols, seed++);
    const TestWeight* ws3[3] = {&w0, &w1, &w2};
    for (int n : {3, 24, 40}) {  // 24: the Q4_0 register mode
      CAPTURE(n);
      const std::vector<float> x = randn(static_cast<size_t>(n * cols), seed++);
      TestAct a(x, n, cols);
      Workspace ws(w0.W, cuda::MmSkConfig{});
      const int64_t ldy = 400;
      Dev<float> fused(static_cast<size_t>(n * ldy)), alone(static_cast<size_t>(n * ldy));
      cuda::MmSkArgs m;
      m.x_q8 = a.q8();
      m.x_f16 = a.f16.p();
      m.n = n;
      m.ldy = ldy;
      m.ws = ws.ws();
      int64_t off = 0;
      m.n_jobs = 3;
      for (int j = 0; j < 3; ++j) {
        m.W[j] = &ws3[j]->W;
        m.y[j] = fused.p() + off;
        off += ws3[j]->W.rows;
      }
      cuda::mm_sk(m, nullptr);
      off = 0;
      for (int j = 0; j < 3; ++j) {
        cuda::MmSkArgs one = m;
        one.n_jobs = 1;
        one.W[0] = &ws3[j]->W;
        one.y[0] = alone.p() + off;
        off += ws3[j]->W.rows;
        cuda::mm_sk(one, nullptr);
      }
      const std::vector<float> f = fused.get(), g = alone.get();
      for (int c = 0; c < n; ++c)
        CHECK(std::equal(f.begin() + c * ldy, f.begin() + c * ldy + 360, g.begin() + c * ldy));
      // And each matches the reference.
      const std::vector<float> ref = reference(w1, a, x, n);
      std::vector<float> got(ref.size());
      for (int c = 0; c < n; ++c)
        std::copy(f.begin() + c * ldy + 200, f.begin() + c * ldy + 264, got.begin() + c * 64);
      CHECK(rel_err(got, ref) < 1e-5);
    }
  }
}

TEST_CASE("cuda skinny: k_halves gives the bits of two column slices summed like two ranks") {
  // Rank 0 holds the first half of K and adds the residual, rank 1 the second half; the
  // all-reduce adds them: y = (y + S0) + S1. One GPU with k_halves must give those bits,
  // with as many rows as the slices have (the same splits of each half).
  uint32_t seed = 930;
  for (DType t : {DType::F16, DType::Q8_0, DType::Q4_0, DType::Q4_1}) {
    for (int64_t cols : {int64_t{1024}, int64_t{4096}, int64_t{2816}}) {
      CAPTURE(dtype_name(t));
      CAPTURE(cols);
      const int64_t rows = 96, half = cols / 2;
      const std::vector<float> wv = randn(static_cast<size_t>(rows * cols), seed++, 0.5f);
      std::vector<float> w0(static_cast<size_t>(rows * half)), w1(w0.size());
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t k = 0; k < half; ++k) {
          w0[static_cast<size_t>(r * half + k)] = wv[static_cast<size_t>(r * cols + k)];
          w1[static_cast<size_t>(r * half + k)] = wv[static_cast<size_t>(r * cols + half + k)];
        }
      TestWeight whole(t, rows, cols, wv), left(t, rows, half, w0), right(t, rows, half, w1);
      REQUIRE(cuda::mm_sk_supported(left.W));
      for (int n : {11, 24, 40}) {  // 24: the Q4_0 register mode, 40: the ring half mode
        CAPTURE(n);
        const std::vector<float> x = randn(static_cast<size_t>(n * cols), seed++);
        std::vector<float> x0(static_cast<size_t>(n * half)), x1(x0.size());
        for (int c = 0; c < n; ++c)
          for (int64_t k = 0; k < half; ++k) {
            x0[static_cast<size_t>(c * half + k)] = x[static_cast<size_t>(c * cols + k)];
            x1[static_cast<size_t>(c * half + k)] = x[static_cast<size_t>(c * cols + half + k)];
          }
        TestAct a(x, n, cols), a0(x0, n, half), a1(x1, n, half);
        const std::vector<float> y0 = randn(static_cast<size_t>(n * rows), seed++);
        cuda::MmSkConfig cfg;
        Workspace ws(whole.W, cfg);
        auto run = [&](const TestWeight& w, const TestAct& act, bool acc, bool halves) {
          Dev<float> y(y0);
          cuda::MmSkArgs m;
          m.W[0] = &w.W;
          m.y[0] = y.p();
          m.x_q8 = act.q8();
          m.x_f16 = act.f16.p();
          m.n = n;
          m.ldy = rows;
          m.accumulate = acc;
          m.split_k = true;
          m.k_halves = halves;
          m.ws = ws.ws();
          cuda::mm_sk(m, nullptr);
          return y.get();
        };
        const std::vector<float> one = run(whole, a, true, true);
        const std::vector<float> r0 = run(left, a0, true, false), r1 = run(right, a1, false, false);
        std::vector<float> two(r0.size());
        for (size_t i = 0; i < two.size(); ++i) two[i] = r0[i] + r1[i];
        CHECK(std::equal(one.begin(), one.end(), two.begin()));
      }
    }
  }
}

TEST_CASE("cuda skinny: the SwiGLU mode gives the bits of gate/up then the SwiGLU kernel") {
  // Gate and up in one launch whose CTAs take 32 rows of each and write silu(g) * u in
  // f32, f16 and q8 blocks: the same bits as the two products written out and
  // cuda::swiglu run over them.
  uint32_t seed = 940;
  // F16 (on sm_90a): the warpgroup-MMA kernel.
  for (DType t : {DType::Q4_0, DType::Q8_0, DType::Q4_1, DType::F16}) {
    if (t == DType::F16 && !have_wgmma()) continue;
    CAPTURE(dtype_name(t));
    const int64_t F = 352, cols = 1024;  // 11 CTAs of 32 + 32 rows
    TestWeight wg(t, F, cols, seed++), wu(t, F, cols, seed++);
    for (int n : {2, 8, 9, 17, 32, 70}) {  // one and two k-groups, the Q4_0 half mode, 2 passes
      CAPTURE(n);
      const std::vector<float> x = randn(static_cast<size_t>(n * cols), seed++);
      TestAct a(x, n, cols);
      Workspace ws(wg.W, cuda::MmSkConfig{});
      cuda::MmSkArgs m;
      m.cfg.f16_wgmma = t == DType::F16;
      m.n_jobs = 2;
      m.W[0] = &wg.W;
      m.W[1] = &wu.W;
      m.x_q8 = a.q8();
      m.x_f16 = a.f16.p();
      m.n = n;
      m.ldy = 2 * F;
      m.ws = ws.ws();
      Dev<float> gu(static_cast<size_t>(n * 2 * F));
      m.y[0] = gu.p();
      m.y[1] = gu.p() + F;
      cuda::mm_sk(m, nullptr);
      const size_t ne = static_cast<size_t>(n * F);
      Dev<float> rf32(ne), gf32(ne);
      Dev<__half> rf16(ne), gf16(ne);
      Dev<int8_t> rqs(ne), gqs(ne);
      Dev<float2> rds(ne / 32), gds(ne / 32);
      cuda::ActOut ref{rf32.p(), rf16.p(), {rqs.p(), rds.p()}};
      cuda::swiglu(gu.p(), gu.p() + F, 2 * F, n, static_cast<int>(F), ref, nullptr);
      cuda::MmSkArgs glu = m;
      glu.y[0] = glu.y[1] = nullptr;
      glu.glu = true;
      glu.glu_out = {gf32.p(), gf16.p(), {gqs.p(), gds.p()}};
      cuda::mm_sk(glu, nullptr);
      const std::vector<float> r32 = rf32.get(), g32 = gf32.get();
      CHECK(std::equal(r32.begin(), r32.end(), g32.begin()));
      const std::vector<__half> r16 = rf16.get(), g16 = gf16.get();
      CHECK(std::memcmp(r16.data(), g16.data(), ne * sizeof(__half)) == 0);
      const std::vector<int8_t> rq = rqs.get(), gq = gqs.get();
      CHECK(std::equal(rq.begin(), rq.end(), gq.begin()));
      const std::vector<float2> rd = rds.get(), gd = gds.get();
      CHECK(std::memcmp(rd.data(), gd.data(), rd.size() * sizeof(float2)) == 0);
      // And the values are silu(g) * u of the products' reference (to their tolerance).
      std::vector<float> want(ne);
      const std::vector<float> g = reference(wg, a, x, n), u = reference(wu, a, x, n);
      for (size_t i = 0; i < ne; ++i) want[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
      CHECK(rel_err(g32, want) < 1e-4);
    }
  }
  // Gate and up of different shapes, or rows not a multiple of 32, are refused.
  TestWeight a(DType::Q4_0, 64, 256, 1), b(DType::Q4_0, 96, 256, 2), c(DType::Q4_0, 48, 256, 3);
  cuda::MmSkArgs m;
  m.n_jobs = 2;
  m.n = 2;
  m.glu = true;
  m.W[0] = &a.W;
  m.W[1] = &b.W;
  CHECK_THROWS_AS(cuda::mm_sk(m, nullptr), Error);
  m.W[0] = m.W[1] = &c.W;
  CHECK_THROWS_AS(cuda::mm_sk(m, nullptr), Error);
}

TEST_CASE("cuda skinny: the RoPE epilogue gives the q/k/v store kernel's values") {
  // q/k/v in one launch finishing with bias, RoPE (llama's neighbour pairs, whole or
  // partial head) and the f16 store of k and v at each row's cache slot: against the plain
  // products followed by cuda::qkv_rope_store.
  uint32_t seed = 960;
  const int hd = 64, n_head = 4, n_head_kv = 2, n_slots = 128;
  const int64_t Q = n_head * hd, KV = n_head_kv * hd, cols = 512;
  // F16 twice: the second time on the warpgroup-MMA kernel (sm_90a only).
  struct Case {
    DType t;
    bool wgmma;
  };
  for (const Case cs :
       {Case{DType::Q4_0, false}, Case{DType::Q8_0, false}, Case{DType::Q4_1, false},
        Case{DType::F16, false}, Case{DType::F16, true}}) {
    const DType t = cs.t;
    const bool wgmma = cs.wgmma;
    if (wgmma && !have_wgmma()) continue;
    for (int rope_dim : {hd, hd / 2}) {
      CAPTURE(dtype_name(t));
      CAPTURE(wgmma);
      CAPTURE(rope_dim);
      TestWeight wq(t, Q, cols, seed++), wk(t, KV, cols, seed++), wv(t, KV, cols, seed++);
      std::vector<float> inv(static_cast<size_t>(rope_dim / 2));
      for (size_t i = 0; i < inv.size(); ++i)
        inv[i] = static_cast<float>(std::pow(10000.0, -2.0 * static_cast<double>(i) / rope_dim));
      Dev<float> dinv(inv);
      const bool bias = rope_dim != hd;  // biases (qwen2-like) in the partial case
      Dev<float> bq(randn(static_cast<size_t>(Q), seed++)),
          bk(randn(static_cast<size_t>(KV), seed++)), bv(randn(static_cast<size_t>(KV), seed++));
      for (int n : {3, 9, 20, 70}) {  // one / two k-groups, the Q4_0 half mode, two passes
        CAPTURE(n);
        const std::vector<float> x = randn(static_cast<size_t>(n * cols), seed++);
        TestAct a(x, n, cols);
        std::vector<int32_t> pos(static_cast<size_t>(n)), slots(static_cast<size_t>(n));
        for (int c = 0; c < n; ++c) {
          pos[static_cast<size_t>(c)] = static_cast<int32_t>((c * 7919 + 13) % 3000);
          slots[static_cast<size_t>(c)] = static_cast<int32_t>((c * 37 + 5) % n_slots);
        }
        Dev<int32_t> dpos(pos), dslots(slots);
        Workspace ws(wq.W, cuda::MmSkConfig{});
        const TestWeight* w3[3] = {&wq, &wk, &wv};
        cuda::MmSkArgs m;
        m.n_jobs = 3;
        for (int j = 0; j < 3; ++j) m.W[j] = &w3[j]->W;
        m.x_q8 = a.q8();
        m.x_f16 = a.f16.p();
        m.cfg.f16_wgmma = wgmma;
        m.n = n;
        m.ws = ws.ws();
        // Reference: the products, then the store kernel.
        const int64_t ld = Q + 2 * KV;
        Dev<float> qkv(static_cast<size_t>(n * ld));
        m.y[0] = qkv.p();
        m.y[1] = qkv.p() + Q;
        m.y[2] = qkv.p() + Q + KV;
        m.ldy = ld;
        cuda::mm_sk(m, nullptr);
        const size_t cache_elems = static_cast<size_t>(n_slots * KV);
        Dev<float> q_ref(static_cast<size_t>(n * Q)), q_got(static_cast<size_t>(n * Q));
        Dev<__half> k_ref(cache_elems), v_ref(cache_elems), k_got(cache_elems), v_got(cache_elems);
        cuda::QkvStoreArgs st;
        st.q = qkv.p();
        st.k = qkv.p() + Q;
        st.v = qkv.p() + Q + KV;
        st.ld = ld;
        st.bq = bias ? bq.p() : nullptr;
        st.bk = bias ? bk.p() : nullptr;
        st.bv = bias ? bv.p() : nullptr;
        st.positions = dpos.p();
        st.slots = dslots.p();
        st.n_rows = n;
        st.n_head = n_head;
        st.n_head_kv = n_head_kv;
        st.head_dim = hd;
        st.rope_dim = rope_dim;
        st.inv_freq = dinv.p();
        st.q_out = q_ref.p();
        st.k_cache = k_ref.p();
        st.v_cache = v_ref.p();
        cuda::qkv_rope_store(st, nullptr);
        // The epilogue.
        cuda::MmSkArgs e = m;
        const cuda::Epilogue ep[3] = {cuda::Epilogue::RopeToY, cuda::Epilogue::RopeToCache,
                                      cuda::Epilogue::ToCache};
        const float* b3[3] = {st.bq, st.bk, st.bv};
        __half* c3[3] = {nullptr, k_got.p(), v_got.p()};
        for (int j = 0; j < 3; ++j) {
          e.epilogue[j] = ep[j];
          e.rope[j] = {b3[j], dpos.p(), dslots.p(), dinv.p(), hd, rope_dim, c3[j]};
        }
        e.y[0] = q_got.p();
        e.y[1] = e.y[2] = nullptr;
        e.ldy = Q;
        cuda::mm_sk(e, nullptr);
        CHECK(rel_err(q_got.get(), q_ref.get()) < 1e-6);
        // Only the slots written are compared (the rest stays poisoned in both).
        auto slots_of = [&](const Dev<__half>& d) {
          const std::vector<__half> h = d.get();
          std::vector<float> f;
          for (int c = 0; c < n; ++c)
            for (int64_t i = 0; i < KV; ++i)
              f.push_back(
                  __half2float(h[static_cast<size_t>(slots[static_cast<size_t>(c)] * KV + i)]));
          return f;
        };
        CHECK(rel_err(slots_of(k_got), slots_of(k_ref)) < 1e-3);
        CHECK(rel_err(slots_of(v_got), slots_of(v_ref)) < 1e-3);
        // The angles from the step's table (rope_cs_table): the same bits.
        Dev<float2> cs(static_cast<size_t>(n * (rope_dim / 2)));
        cuda::rope_cs_table(dpos.p(), n, rope_dim, dinv.p(), cs.p(), nullptr);
        const std::vector<float> q1 = q_got.get();
        const std::vector<__half> k1 = k_got.get();
        for (int j = 0; j < 3; ++j) e.rope[j].cs = cs.p();
        cuda::mm_sk(e, nullptr);
        const std::vector<float> q2 = q_got.get();
        const std::vector<__half> k2 = k_got.get();
        CHECK(std::memcmp(q1.data(), q2.data(), q1.size() * sizeof(float)) == 0);
        CHECK(std::memcmp(k1.data(), k2.data(), k1.size() * sizeof(__half)) == 0);
      }
    }
  }
}

TEST_CASE("cuda skinny: quantized rows agree with the GEMV to float rounding") {
  // Both take the same integer sums per unit and the same scale arithmetic; only the order
  // of the f32 sum over units differs, so a sequence decoded alone (GEMV) and in a batch
  // (mm_sk) stays within float rounding.
  uint32_t seed = 950;
  for (DType t : {DType::Q4_0, DType::Q8_0, DType::Q4_1}) {
    CAPTURE(dtype_name(t));
    const int64_t rows = 256, cols = 4096;
    TestWeight w(t, rows, cols, seed++);
    const int n = 8;
    const std::vector<float> x = randn(static_cast<size_t>(n * cols), seed++);
    TestAct a(x, n, cols);
    Dev<float> ysk(static_cast<size_t>(n * rows)), ymv(static_cast<size_t>(n * rows));
    cuda::MmSkConfig cfg;
    Workspace ws(w.W, cfg);
    cuda::MmSkArgs m;
    m.W[0] = &w.W;
    m.y[0] = ysk.p();
    m.x_q8 = a.q8();
    m.n = n;
    m.ldy = rows;
    m.ws = ws.ws();
    cuda::mm_sk(m, nullptr);
    cuda::MatvecJob job;
    job.W = w.W;
    job.y = ymv.p();
    job.ldy = rows;
    cuda::matvec(&job, 1, nullptr, a.q8(), n, nullptr, cuda::MatvecVariant{});
    CHECK(rel_err(ysk.get(), ymv.get()) < 2e-6);
  }
}

TEST_CASE("cuda skinny: unsupported shapes and types are refused") {
  TestWeight kq(DType::Q4_K, 64, 256, 1);
  CHECK_FALSE(cuda::mm_sk_supported(kq.W));
  TestWeight odd(DType::Q4_0, 64, 96, 2);  // not a whole number of 128-element stages
  CHECK_FALSE(cuda::mm_sk_supported(odd.W));
  TestWeight f32(DType::F32, 64, 256, 3);
  CHECK_FALSE(cuda::mm_sk_supported(f32.W));
  cuda::MmSkArgs m;
  m.W[0] = &kq.W;
  m.n = 2;
  CHECK_THROWS_AS(cuda::mm_sk(m, nullptr), Error);
  // One launch takes matrices of one type and width only.
  TestWeight a(DType::Q4_0, 64, 256, 4), b(DType::Q4_0, 64, 384, 5);
  m.W[0] = &a.W;
  m.W[1] = &b.W;
  m.n_jobs = 2;
  CHECK_THROWS_AS(cuda::mm_sk(m, nullptr), Error);
}
