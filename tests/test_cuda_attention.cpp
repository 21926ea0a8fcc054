// The position-dependent CUDA kernels against the CPU reference (engine/ops_cpu.h): RoPE,
// the q/k/v bias + RoPE + KV-cache store, and the decode (split-K) and prefill attention
// over a paged f16 cache, with outputs poisoned (NaN) beforehand. Thresholds: f32
// arithmetic ~1e-5, values through the f16 cache ~1e-3.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <initializer_list>
#include <numeric>
#include <random>
#include <vector>

#include "cuda/attention.h"
#include "cuda/kv_store.h"
#include "cuda/rope.h"
#include "cuda_test_util.h"
#include "engine/batch.h"
#include "engine/error.h"
#include "engine/ops_cpu.h"

using namespace llm;
using namespace llm::test;

namespace {

const bool kHaveDevice = require_cuda_device();

}  // namespace

TEST_CASE("cuda attention: rope matches cpu::rope for both pair layouts and partial rotation") {
  for (RopeType type : {RopeType::Norm, RopeType::Neox}) {
    for (int rope_dim : {64, 32}) {
      const int rows = 5, heads = 3, hd = 64;
      std::vector<float> x = randn(static_cast<size_t>(rows * heads * hd), 51);
      const std::vector<int32_t> pos = {0, 1, 17, 999, 5000};
      std::vector<float> inv(static_cast<size_t>(rope_dim / 2));
      for (int i = 0; i < rope_dim / 2; ++i)
        inv[static_cast<size_t>(i)] = std::pow(10000.0f, -2.0f * i / rope_dim);
      Dev<float> dx(x), out(x.size()), dinv(inv);
      Dev<int32_t> dp(pos);
      cuda::rope(dx.p(), out.p(), dp.p(), rows, heads, hd, rope_dim, type, dinv.p(), nullptr);
      cpu::rope(x.data(), pos.data(), rows, heads, hd, rope_dim, type, inv.data());
      CHECK(rel_err(out.get(), x) < 1e-5);
    }
  }
}

TEST_CASE(
    "cuda attention: qkv_rope_store adds biases, rotates q and k and stores k, v in the cache") {
  const int rows = 4, H = 4, Hkv = 2, D = 16, Q = H * D, KV = Hkv * D, ld = Q + 2 * KV,
            n_slots = 64;
  const std::vector<float> qkv = randn(static_cast<size_t>(rows * ld), 61);
  const std::vector<float> bq = randn(Q, 62), bk = randn(KV, 63), bv = randn(KV, 64);
  const std::vector<int32_t> pos = {3, 4, 5, 40}, slots = {7, 8, 9, 50};
  std::vector<float> inv(D / 2);
  for (int i = 0; i < D / 2; ++i) inv[static_cast<size_t>(i)] = std::pow(10000.0f, -2.0f * i / D);
  Dev<float> dqkv(qkv), dbq(bq), dbk(bk), dbv(bv), dinv(inv), qout(static_cast<size_t>(rows * Q));
  Dev<int32_t> dpos(pos), dslots(slots);
  Dev<__half> kc(static_cast<size_t>(n_slots * KV)), vc(static_cast<size_t>(n_slots * KV));
  cuda::QkvStoreArgs a;
  a.q = dqkv.p();
  a.k = dqkv.p() + Q;
  a.v = dqkv.p() + Q + KV;
  a.ld = ld;
  a.bq = dbq.p();
  a.bk = dbk.p();
  a.bv = dbv.p();
  a.positions = dpos.p();
  a.slots = dslots.p();
  a.n_rows = rows;
  a.n_head = H;
  a.n_head_kv = Hkv;
  a.head_dim = D;
  a.rope_dim = D;
  a.rope_type = RopeType::Neox;
  a.inv_freq = dinv.p();
  a.q_out = qout.p();
  a.k_cache = kc.p();
  a.v_cache = vc.p();
  cuda::qkv_rope_store(a, nullptr);

  std::vector<float> q, k, v;
  for (int r = 0; r < rows; ++r) {
    q.insert(q.end(), qkv.begin() + r * ld, qkv.begin() + r * ld + Q);
    k.insert(k.end(), qkv.begin() + r * ld + Q, qkv.begin() + r * ld + Q + KV);
    v.insert(v.end(), qkv.begin() + r * ld + Q + KV, qkv.begin() + (r + 1) * ld);
  }
  cpu::add_bias(q.data(), bq.data(), rows, Q);
  cpu::add_bias(k.data(), bk.data(), rows, KV);
  cpu::add_bias(v.data(), bv.data(), rows, KV);
  cpu::rope(q.data(), pos.data(), rows, H, D, D, RopeType::Neox, inv.data());
  cpu::rope(k.data(), pos.data(), rows, Hkv, D, D, RopeType::Neox, inv.data());
  CHECK(rel_err(qout.get(), q) < 1e-5);
  const std::vector<__half> kh = kc.get(), vh = vc.get();
  std::vector<float> kg, vg;
  for (int r = 0; r < rows; ++r)
    for (int e = 0; e < KV; ++e) {
      kg.push_back(__half2float(kh[static_cast<size_t>(slots[static_cast<size_t>(r)] * KV + e)]));
      vg.push_back(__half2float(vh[static_cast<size_t>(slots[static_cast<size_t>(r)] * KV + e)]));
    }
  CHECK(rel_err(kg, k) < 1e-3);
  CHECK(rel_err(vg, v) < 1e-3);
}

namespace {

// The batch inputs of the attention kernels, laid out as the backend lays them out.
struct AttnCase {
  Batch batch;
  std::vector<int32_t> row_seq, table_start, tables;
};

AttnCase make_attn_case(int block_size, int n_blocks, uint32_t seed) {
  AttnCase c;
  std::mt19937 rng(seed);
  std::vector<int32_t> perm(static_cast<size_t>(n_blocks));
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  size_t next = 0;
  // (first position, rows): a prompt from 0, a lone decode row deep in the context, a few
  // rows (decode path), a chunk continuing an earlier context (prefill tiles).
  const int seqs[][2] = {{0, 70}, {300, 1}, {40, 3}, {100, 37}, {400, 1}};
  for (const auto& s : seqs) {
    const int first = s[0], n = s[1];
    const int nb = (first + n + block_size - 1) / block_size;
    std::vector<int32_t> blocks(
        perm.begin() + static_cast<std::ptrdiff_t>(next),
        perm.begin() + static_cast<std::ptrdiff_t>(next + static_cast<size_t>(nb)));
    next += static_cast<size_t>(nb);
    std::vector<int32_t> toks(static_cast<size_t>(n), 1);
    c.batch.add_sequence(toks.data(), n, first, blocks, block_size, false);
  }
  for (int s = 0; s < c.batch.n_seqs(); ++s) {
    const int r0 = c.batch.seq_start[static_cast<size_t>(s)],
              r1 = c.batch.seq_start[static_cast<size_t>(s) + 1];
    c.table_start.push_back(static_cast<int32_t>(c.tables.size()));
    const int last = c.batch.positions[static_cast<size_t>(r1 - 1)];
    c.tables.insert(c.tables.end(), c.batch.block_table(s),
                    c.batch.block_table(s) + last / block_size + 1);
    for (int r = r0; r < r1; ++r) c.row_seq.push_back(s);
  }
  return c;
}

}  // namespace

TEST_CASE("cuda attention: decode (split-K) and prefill attention match cpu::attention") {
  for (int D : {128, 64, 8}) {
    CAPTURE(D);
    const int H = 8, Hkv = 2, bs = 16, n_blocks = 64, n_slots = n_blocks * bs;
    AttnCase c = make_attn_case(bs, n_blocks, 70 + D);
    const Batch& b = c.batch;
    const int n = b.n_tokens();
    const std::vector<float> q = randn(static_cast<size_t>(n * H * D), 71);
    const std::vector<float> kf = randn(static_cast<size_t>(n_slots * Hkv * D), 72),
                             vf = randn(static_cast<size_t>(n_slots * Hkv * D), 73);
    // The cache holds f16; the reference reads the same rounded values as f32.
    std::vector<__half> kh(kf.size()), vh(vf.size());
    std::vector<float> kr(kf.size()), vr(vf.size());
    for (size_t i = 0; i < kf.size(); ++i) {
      kh[i] = __float2half_rn(kf[i]);
      vh[i] = __float2half_rn(vf[i]);
      kr[i] = __half2float(kh[i]);
      vr[i] = __half2float(vh[i]);
    }
    std::vector<float> ref(q.size());
    cpu::attention(q.data(), kr.data(), vr.data(), b, H, Hkv, D, bs, ref.data(), 2);

    Dev<float> dq(q), out(q.size());
    Dev<__half> dk(kh), dv(vh);
    Dev<int32_t> dpos(b.positions), drs(c.row_seq), dts(c.table_start), dtab(c.tables);
    cuda::AttnArgs a;
    a.q = dq.p();
    a.k_cache = dk.p();
    a.v_cache = dv.p();
    a.positions = dpos.p();
    a.row_seq = drs.p();
    a.table_start = dts.p();
    a.tables = dtab.p();
    a.n_head = H;
    a.n_head_kv = Hkv;
    a.head_dim = D;
    a.block_size = bs;
    a.out = out.p();

    // Every row through the decode kernel, unsplit and split.
    std::vector<int32_t> all_rows(static_cast<size_t>(n));
    std::iota(all_rows.begin(), all_rows.end(), 0);
    Dev<int32_t> drows(all_rows);
    // The f16 and q8 copies of the output that the next matrix product reads, from a launch
    // of run(args).
    const auto check_f16_q8 = [&](const auto& run) {
      Dev<__half> of16(q.size());
      Dev<int8_t> oqs(q.size());
      Dev<float2> ods(q.size() / 32);
      cuda::AttnArgs b2 = a;
      b2.out_f16 = of16.p();
      b2.out_q8 = {oqs.p(), ods.p()};
      run(b2);
      const std::vector<__half> hv = of16.get();
      const std::vector<int8_t> qv = oqs.get();
      const std::vector<float2> dv = ods.get();
      std::vector<float> hf(hv.size()), qf(qv.size());
      for (size_t i = 0; i < hv.size(); ++i) {
        hf[i] = __half2float(hv[i]);
        qf[i] = dv[i / 32].x * qv[i];
      }
      CHECK(rel_err(hf, ref) < 1e-3);
      CHECK(rel_err(qf, ref) < 1e-2);
    };
    // The keys of earlier steps read before the PDL wait (AttnArgs::prefetch; the first row of
    // each sequence, the others read nothing early): a launch of run(args) in each mode gives
    // the bits out holds now.
    const auto check_prefetch = [&](const auto& run, std::initializer_list<int> modes) {
      const std::vector<float> plain = out.get();
      for (int pf : modes) {
        CAPTURE(pf);
        cuda::AttnArgs early = a;
        early.prefetch = pf;
        out.poison();
        run(early);
        CHECK(out.get() == plain);
      }
    };
    for (int split : {1, 3, 16}) {
      CAPTURE(split);
      Dev<float> ws(cuda::attention_decode_workspace(n, H, D, split) / sizeof(float));
      Dev<int> counters(static_cast<size_t>(n * H));
      cuda::check(cudaMemset(counters.p(), 0, counters.n * sizeof(int)), "zero counters");
      const auto decode = [&](const cuda::AttnArgs& args) {
        cuda::attention_decode(args, drows.p(), n, split, ws.p(), counters.p(), nullptr);
      };
      for (int rep = 0; rep < 2; ++rep) {  // the counters must be back at zero for a second launch
        out.poison();
        decode(a);
        CHECK(rel_err(out.get(), ref) < 1e-4);
      }
      check_prefetch(decode, {1, 2, 3});
      if (D % 32 == 0) check_f16_q8(decode);
    }
    // Every row through the persistent kernel, 1 to 4 blocks per SM, on GPUs of 16 SMs (up
    // to 56 items a block: an item's last tiles meet the next item's first in the ring) and
    // of 132 (up to 7). Also the f16 / q8 copies of the output.
    if (D == 64 || D == 128)
      for (int n_sm : {16, 132})
        for (int bps : {1, 2, 3, 4}) {
          CAPTURE(n_sm);
          CAPTURE(bps);
          REQUIRE(cuda::attention_decode_persist_fits(n, H, D, n_sm, bps));
          const auto decode = [&](const cuda::AttnArgs& args) {
            cuda::attention_decode_persist(args, drows.p(), n, n_sm, bps, nullptr);
          };
          out.poison();
          decode(a);
          CHECK(rel_err(out.get(), ref) < 1e-4);
          check_prefetch(decode, {1});
          check_f16_q8(decode);
        }
    // Every row through prefill tiles of <= 32 rows of one sequence.
    std::vector<int4> tiles;
    for (int s = 0; s < b.n_seqs(); ++s)
      for (int r = b.seq_start[static_cast<size_t>(s)]; r < b.seq_start[static_cast<size_t>(s) + 1];
           r += cuda::kPrefillTileRows)
        tiles.push_back(make_int4(
            r, std::min(cuda::kPrefillTileRows, b.seq_start[static_cast<size_t>(s) + 1] - r), s,
            0));
    Dev<int4> dtiles(tiles);
    const int nt = static_cast<int>(tiles.size());
    // Keys whole, and cut into 3 or 32 parts merged by the last block (32 leaves some
    // splits of the short sequences empty); twice each, so the counters must be back at 0.
    for (int split : {1, 3, 32}) {
      CAPTURE(split);
      Dev<float> ws(
          std::max<size_t>(1, cuda::attention_prefill_workspace(nt, H, D, split) / sizeof(float)));
      Dev<int> counters(static_cast<size_t>(nt * H));
      cuda::check(cudaMemset(counters.p(), 0, counters.n * sizeof(int)), "zero counters");
      for (int rep = 0; rep < 2; ++rep) {
        out.poison();
        cuda::attention_prefill(a, dtiles.p(), nt, split, ws.p(), counters.p(), nullptr);
        CHECK(rel_err(out.get(), ref) < 1e-4);
      }
    }
    // Every row through groups of <= 16 rows of one sequence on the tensor cores (q and
    // the softmax weights rounded to f16: a looser bound), keys whole and cut into 3 or 32
    // parts, twice each; and the f16 / q8 copies of the output.
    if (cuda::attention_rows_supported(D)) {
      std::vector<int4> groups;
      int z = 0;
      for (int s = 0; s < b.n_seqs(); ++s)
        for (int r = b.seq_start[static_cast<size_t>(s)];
             r < b.seq_start[static_cast<size_t>(s) + 1]; r += cuda::kAttnGroupRows) {
          const int len =
              std::min(cuda::kAttnGroupRows, b.seq_start[static_cast<size_t>(s) + 1] - r);
          groups.push_back(make_int4(r, len, s, z));
          z += len;
        }
      Dev<int4> dgroups(groups);
      const int ng = static_cast<int>(groups.size());
      for (int split : {1, 3, 32}) {
        CAPTURE(split);
        Dev<float> ws(cuda::attention_decode_workspace(n, H, D, split) / sizeof(float));
        Dev<int> counters(static_cast<size_t>(n * H));
        cuda::check(cudaMemset(counters.p(), 0, counters.n * sizeof(int)), "zero counters");
        const auto rows = [&](const cuda::AttnArgs& args) {
          cuda::attention_rows(args, dgroups.p(), ng, split, ws.p(), counters.p(), nullptr);
        };
        for (int rep = 0; rep < 2; ++rep) {
          out.poison();
          rows(a);
          const double err = rel_err(out.get(), ref);
          MESSAGE("attention_rows D " << D << " split " << split << ": relative error " << err);
          CHECK(err < 4e-3);
        }
        check_prefetch(rows, {1});  // a group's first tile copied before the PDL wait
        check_f16_q8(rows);
      }
      // A row's result does not depend on the other rows of its group (where a speculative
      // step's rows start): groups of at most 5 rows give the same bits, keys split in
      // 64-key parts (the backend's split count for contexts up to 2,048).
      std::vector<int4> small;
      z = 0;
      for (int s = 0; s < b.n_seqs(); ++s)
        for (int r = b.seq_start[static_cast<size_t>(s)];
             r < b.seq_start[static_cast<size_t>(s) + 1]; r += 5) {
          const int len = std::min(5, b.seq_start[static_cast<size_t>(s) + 1] - r);
          small.push_back(make_int4(r, len, s, z));
          z += len;
        }
      Dev<int4> dsmall(small);
      Dev<float> ws(cuda::attention_decode_workspace(n, H, D, 32) / sizeof(float));
      Dev<int> counters(static_cast<size_t>(n * H));
      cuda::check(cudaMemset(counters.p(), 0, counters.n * sizeof(int)), "zero counters");
      out.poison();
      cuda::attention_rows(a, dgroups.p(), ng, 32, ws.p(), counters.p(), nullptr);
      const std::vector<float> by16 = out.get();
      out.poison();
      cuda::attention_rows(a, dsmall.p(), static_cast<int>(small.size()), 32, ws.p(), counters.p(),
                           nullptr);
      const std::vector<float> by5 = out.get();
      CHECK(std::equal(by16.begin(), by16.end(), by5.begin()));
    }
  }
}
