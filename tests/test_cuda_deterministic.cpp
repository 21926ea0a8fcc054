// The CUDA backend's deterministic mode (BackendOptions::deterministic, --deterministic):
// a row's logits must be bit for bit the same whatever else its step holds — the same
// sequence alone or beside others of mixed lengths, its prompt in one chunk or in chunks
// of any size, decoded one token per step (CUDA graphs, padded buckets) or prefilled.
// Checked with memcmp, never a tolerance; the reference run is also compared with the
// CPU backend (to the decode path's tolerances) so that a consistently wrong answer fails.
// First the GEMV alone: every column (row of a step) in every launch position and width.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "cuda/backend_cuda.h"
#include "cuda/matvec_quant.h"
#include "cuda/quantize.h"
#include "cuda/qweight.h"
#include "cuda_test_util.h"
#include "engine/backend_cpu.h"
#include "engine/engine.h"
#include "engine/gguf.h"
#include "engine_test_util.h"
#include "invariance_test_util.h"
#include "quant/mix.h"
#include "quant/quants.h"
#include "test_util.h"

using namespace llm;
using namespace llm::test;

namespace {

const bool kHaveDevice = require_cuda_device();

// ---- the GEMV ---------------------------------------------------------------------------

// A (rows, cols) matrix of type t on the device, from random values.
struct DevWeight {
  std::vector<uint8_t> raw;
  cuda::DeviceBuffer dev;
  cuda::DevMatrix W;
  DevWeight(DType t, int64_t rows, int64_t cols, uint32_t seed) {
    const std::vector<float> v = randn(static_cast<size_t>(rows * cols), seed, 0.5f);
    const size_t rb = row_bytes(t, cols);
    raw.resize(rb * static_cast<size_t>(rows));
    for (int64_t r = 0; r < rows; ++r)
      quantize_row(t, v.data() + r * cols, raw.data() + r * rb, cols);
    dev = cuda::DeviceBuffer(cuda::device_matrix_bytes(t, rows, cols));
    W = cuda::make_dev_matrix(t, rows, cols, dev.get());
    Dev<uint8_t> staged(raw);
    cuda::repack_rows(W, staged.p(), 0, rows, nullptr);
    cuda::check(cudaDeviceSynchronize(), "repack");
  }
};

// (n, k) activations in f32 and, when k % 32 == 0, q8; column c's view.
struct DevAct {
  Dev<float> f32;
  Dev<int8_t> qs;
  Dev<float2> ds;
  int64_t k;
  DevAct(const std::vector<float>& x, int n, int64_t k_)
      : f32(x), qs(x.size()), ds(x.size() / 32 + 1), k(k_) {
    cuda::ActOut o;
    if (k % 32 == 0) o.q8 = {qs.p(), ds.p()};
    cuda::convert_act(f32.p(), n, static_cast<int>(k), o, nullptr);
  }
  const float* f32_at(int c) const { return f32.p() + c * k; }
  cuda::ActQ8 q8_at(int c) const {
    if (k % 32 != 0) return {};
    return {qs.p() + c * k, ds.p() + c * (k / 32)};
  }
};

}  // namespace

TEST_CASE(
    "cuda deterministic: a GEMV column has the same bits in every launch width and position") {
  struct Case {
    DType t;
    int64_t cols;
  };
  // 544 = 17 units; k-quants need whole super-blocks; 100: the scalar float kernel.
  const Case cases[] = {{DType::F32, 544},  {DType::F16, 544},  {DType::BF16, 544},
                        {DType::F16, 100},  {DType::Q8_0, 544}, {DType::Q4_0, 544},
                        {DType::Q4_1, 544}, {DType::Q5_0, 544}, {DType::Q4_K, 768},
                        {DType::Q5_K, 768}, {DType::Q6_K, 768}};
  // LLM_CUDA_MV_KQ 0 (the generic kernels), 15 (the default: k-quant and Q8_0 kernels, the
  // k-quants uncapped at one column) and 31 (Q8_0 with 4 slots at one column).
  const cuda::MatvecVariant variants[] = {
      {}, {true, true, true, true, false}, {true, true, true, true, true}};
  const int n = 13;  // two passes: 8 columns, then 5 (the 8-column kernel)
  const int64_t rows = 301;
  uint32_t seed = 1;
  for (const Case& cs : cases) {
    DevWeight w(cs.t, rows, cs.cols, seed++);
    const DevAct x(randn(static_cast<size_t>(n * cs.cols), seed++), n, cs.cols);
    for (const cuda::MatvecVariant& v : variants) {
      CAPTURE(dtype_name(cs.t));
      CAPTURE(cs.cols);
      CAPTURE(v.kquant);
      CAPTURE(v.q8_deep);
      auto run = [&](int c0, int nc) {
        Dev<float> y(static_cast<size_t>(nc * rows));
        cuda::MatvecJob job;
        job.W = w.W;
        job.y = y.p();
        job.ldy = rows;
        cuda::matvec(&job, 1, x.f32_at(c0), x.q8_at(c0), nc, nullptr, v);
        return y.get();
      };
      const std::vector<float> all = run(0, n);
      // Each column alone (the 1-column kernels), in threes (the 4-column kernel, at
      // positions 0..2) and in fives (the 8-column kernel, positions 0..4).
      for (int width : {1, 3, 5}) {
        for (int c0 = 0; c0 + width <= n; ++c0) {
          CAPTURE(width);
          CAPTURE(c0);
          const std::vector<float> part = run(c0, width);
          CHECK(same_bits(part.data(), all.data() + c0 * rows, part.size(), "columns"));
        }
      }
    }
  }
}

TEST_CASE(
    "cuda deterministic: the q/k/v GEMV with RoPE and KV store gives each column its bits alone") {
  struct Case {
    DType t, tv;
    cuda::MatvecVariant v;
  };
  const cuda::MatvecVariant none{}, dflt{true, true, true, true, false};
  const Case cases[] = {{DType::Q4_0, DType::Q4_0, none},
                        {DType::F16, DType::F16, none},
                        {DType::Q8_0, DType::Q8_0, dflt},
                        {DType::Q4_K, DType::Q6_K, dflt}};  // one mixed launch
  const int H = 4, Hkv = 2, D = 64, Q = H * D, KV = Hkv * D, n = 11;
  const int64_t cols = 256;
  std::vector<float> inv(D / 2);
  for (int i = 0; i < D / 2; ++i) inv[static_cast<size_t>(i)] = std::pow(10000.0f, -2.0f * i / D);
  std::vector<int32_t> pos(n), slots(n);
  for (int c = 0; c < n; ++c) {
    pos[static_cast<size_t>(c)] = 37 * c + 5;
    slots[static_cast<size_t>(c)] = c;
  }
  for (const Case& cs : cases) {
    CAPTURE(dtype_name(cs.t));
    DevWeight wq(cs.t, Q, cols, 1), wk(cs.t, KV, cols, 2), wv(cs.tv, KV, cols, 3);
    const DevAct x(randn(static_cast<size_t>(n * cols), 4), n, cols);
    Dev<float> bq(randn(Q, 5)), bk(randn(KV, 6)), bv(randn(KV, 7)), dinv(inv);
    Dev<int32_t> dpos(pos), dslots(slots);
    // Returns q (nc, Q) and the k, v rows at slots c0 .. c0 + nc - 1.
    auto run = [&](int c0, int nc) {
      Dev<float> q(static_cast<size_t>(nc * Q));
      Dev<__half> kc(static_cast<size_t>(n * KV)), vc(static_cast<size_t>(n * KV));
      cuda::MatvecJob jobs[3];
      const cuda::DevMatrix* W[3] = {&wq.W, &wk.W, &wv.W};
      const cuda::Epilogue ep[3] = {cuda::Epilogue::RopeToY, cuda::Epilogue::RopeToCache,
                                    cuda::Epilogue::ToCache};
      const float* bias[3] = {bq.p(), bk.p(), bv.p()};
      __half* cache[3] = {nullptr, kc.p(), vc.p()};
      for (int i = 0; i < 3; ++i) {
        jobs[i].W = *W[i];
        jobs[i].epilogue = ep[i];
        jobs[i].rope = {bias[i], dpos.p() + c0, dslots.p() + c0, dinv.p(), D, D, cache[i]};
      }
      jobs[0].y = q.p();
      jobs[0].ldy = Q;
      for (int first = 0; first < 3;) {
        const int k = cuda::matvec_group(jobs + first, 3 - first, cs.v);
        cuda::matvec(jobs + first, k, x.f32_at(c0), x.q8_at(c0), nc, nullptr, cs.v);
        first += k;
      }
      std::vector<float> out = q.get();
      const std::vector<__half> kh = kc.get(), vh = vc.get();
      for (const std::vector<__half>* h : {&kh, &vh})
        for (size_t i = static_cast<size_t>(c0 * KV); i < static_cast<size_t>((c0 + nc) * KV); ++i)
          out.push_back(__half2float((*h)[i]));
      return out;
    };
    std::vector<float> all = run(0, n);
    for (int c = 0; c < n; ++c) {
      CAPTURE(c);
      const std::vector<float> one = run(c, 1);
      // q row c, then k and v of slot c, as the single-column run lays them out.
      std::vector<float> want(all.begin() + c * Q, all.begin() + (c + 1) * Q);
      const size_t k0 = static_cast<size_t>(n * Q), v0 = k0 + static_cast<size_t>(n * KV);
      want.insert(want.end(), all.begin() + static_cast<ptrdiff_t>(k0 + c * KV),
                  all.begin() + static_cast<ptrdiff_t>(k0 + (c + 1) * KV));
      want.insert(want.end(), all.begin() + static_cast<ptrdiff_t>(v0 + c * KV),
                  all.begin() + static_cast<ptrdiff_t>(v0 + (c + 1) * KV));
      CHECK(same_bits(one, want, "q, k, v of one column"));
    }
  }
}

// ---- the backend ------------------------------------------------------------------------

namespace {

BackendOptions det_options(int64_t kv_tokens) {
  BackendOptions o;
  o.device = DeviceKind::Cuda;
  o.block_size = kBlock;
  o.kv_tokens = kv_tokens;
  o.verbose = false;
  o.deterministic = true;
  return o;
}

}  // namespace

TEST_CASE(
    "cuda deterministic: synthetic F16 / Q8_0 / Q4_0 / Q4_K_M / qwen2 Q4_0 logits do not depend "
    "on the batch or the prompt's chunks") {
  struct Case {
    FileType ft;
    const char* arch;
    double tol;  // against the CPU backend: the decode path's (test_cuda_backend)
  };
  const Case cases[] = {{FileType::F16, "llama", 3e-3},
                        {FileType::Q8_0, "llama", 5e-2},
                        {FileType::Q4_0, "llama", 5e-2},
                        {FileType::Q4_K_M, "llama", 5e-2},
                        {FileType::Q4_0, "qwen2", 5e-2}};
  for (const Case& cs : cases) {
    const std::string label = std::string(cs.arch) + " " + file_type_name(cs.ft);
    CAPTURE(label);
    const std::string path = write_synthetic(
        cs.ft, cs.arch, std::string("det_") + cs.arch + file_type_name(cs.ft) + ".gguf");
    auto model = Model::load(path);
    cuda::CudaBackend gpu(*model, det_options(16384));
    CHECK(gpu.name().find("(deterministic)") != std::string::npos);
    const InvarianceRef r = check_batch_invariance(gpu, [&](bool on) { gpu.set_graphs(on); });
    // The reference must also be right: the CPU backend, to the decode path's tolerance.
    BackendOptions copt;
    copt.n_threads = 2;
    CpuBackend cpu(*model, copt);
    Blocks cb{0, cpu.kv_blocks()};
    const double err = worst_rel(r.ref, prefill(cpu, r.a, kSeqA, kSeqA, cb), model->config.n_vocab);
    MESSAGE(label << ": worst relative error against the CPU " << err);
    CHECK(err < cs.tol);
  }
}

TEST_CASE("cuda deterministic: a 2200-token context (16 splits, steps over the row capacity)") {
  const std::string path = write_synthetic(FileType::Q4_0, "llama", "det_long_q4_0.gguf");
  auto model = Model::load(path);
  const int V = model->config.n_vocab;
  cuda::CudaBackend gpu(*model, det_options(16384));
  Blocks blocks{0, gpu.kv_blocks()};
  std::mt19937 rng(99);
  const int N = 2200;  // over 2048 keys: every split of the last rows is used
  const Seq L = make_seq(rng, N, V, blocks);
  // One forward of 2200 rows: the backend runs it as 2048 + 152 rows.
  const std::vector<float> ref = prefill(gpu, L, N, N, blocks);
  CHECK(same_bits(prefill(gpu, L, N, 300, blocks), ref, "chunks of 300"));
  // The last 8 tokens decoded one per step beside a short sequence.
  Seq l2 = L;
  l2.blocks = blocks.take(N);
  const Seq S = make_seq(rng, 64, V, blocks);
  std::vector<float> out(size_t(N + 50) * V);
  Batch b;
  l2.add(b, 0, N - 8);
  S.add(b, 0, 50);
  gpu.forward(b, out.data());
  for (int p = N - 8; p < N; ++p) {
    b.clear();
    S.add(b, 50 + p - (N - 8), 51 + p - (N - 8));
    l2.add(b, p, p + 1);
    gpu.forward(b, out.data());
    CHECK(same_bits(out.data() + V, ref.data() + static_cast<size_t>(p) * V, static_cast<size_t>(V),
                    "decode row at a long context"));
  }
}

TEST_CASE(
    "cuda deterministic: concurrent requests give each request's tokens and logprobs alone, bit "
    "for bit (stories260K)") {
  const std::string m = shared_file("models/stories260K.gguf");
  if (m.empty()) LLM_SKIP("../shared/models/stories260K.gguf absent");
  auto model = Model::load(m);
  cuda::CudaBackend roomy(*model, det_options(1024)), tiny(*model, det_options(160));
  check_engine_invariance(roomy, tiny);
}
