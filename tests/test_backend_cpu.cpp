// The CPU backend and its reference ops: each op against a straightforward float64
// computation written here, and the whole forward pass against the golden greedy run of
// stories260K (computed elsewhere with an independent float64 forward pass).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <random>
#include <vector>

#include "engine/backend_cpu.h"
#include "engine/error.h"
#include "engine/ops_cpu.h"
#include "quant/quants.h"
#include "test_util.h"

using namespace llm;

namespace {

std::vector<float> random_vec(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// |a - b| <= atol + rtol * |b| element-wise; reports the first failure.
void check_close(const float* a, const double* b, size_t n, double atol, double rtol) {
  for (size_t i = 0; i < n; ++i) {
    if (std::fabs(a[i] - b[i]) > atol + rtol * std::fabs(b[i])) {
      FAIL_CHECK("element " << i << ": got " << a[i] << ", expected " << b[i]);
      return;
    }
  }
}

int argmax(const float* v, int n) {
  return static_cast<int>(std::max_element(v, v + n) - v);
}

// A weight matrix of the given type holding (approximately) `values` (rows, cols).
struct TestMatrix {
  std::vector<uint8_t> bytes;
  TensorRef ref;
  TestMatrix(DType t, const std::vector<float>& values, int64_t rows, int64_t cols) {
    const size_t rb = row_bytes(t, cols);
    bytes.resize(rb * static_cast<size_t>(rows));
    for (int64_t r = 0; r < rows; ++r)
      quantize_row(t, values.data() + r * cols, bytes.data() + r * rb, cols);
    ref.type = t;
    ref.data = bytes.data();
    ref.rows = rows;
    ref.cols = cols;
    ref.bytes = bytes.size();
  }
};

std::vector<int32_t> read_ids(const std::string& path) {
  std::ifstream f(path);
  std::vector<int32_t> ids;
  int32_t x;
  while (f >> x) ids.push_back(x);
  return ids;
}

}  // namespace

// --- ops ------------------------------------------------------------------------

TEST_CASE("cpu ops: rmsnorm matches float64") {
  const int rows = 3, n = 100;
  auto x = random_vec(rows * n, 1, -3, 3), w = random_vec(n, 2);
  std::vector<float> y(x.size());
  cpu::rmsnorm(x.data(), w.data(), y.data(), rows, n, 1e-5f);
  std::vector<double> ref(x.size());
  for (int r = 0; r < rows; ++r) {
    double ss = 0;
    for (int i = 0; i < n; ++i) ss += double(x[r * n + i]) * x[r * n + i];
    const double s = 1.0 / std::sqrt(ss / n + 1e-5);
    for (int i = 0; i < n; ++i) ref[r * n + i] = x[r * n + i] * s * w[i];
  }
  check_close(y.data(), ref.data(), y.size(), 1e-6, 1e-5);
  // In place gives the same.
  cpu::rmsnorm(x.data(), w.data(), x.data(), rows, n, 1e-5f);
  CHECK(x == y);
}

TEST_CASE("cpu ops: swiglu and add_bias match float64") {
  const int n = 1000;
  auto g = random_vec(n, 3, -8, 8), u = random_vec(n, 4, -2, 2);
  std::vector<float> out(n);
  cpu::swiglu(g.data(), u.data(), out.data(), n);
  std::vector<double> ref(n);
  for (int i = 0; i < n; ++i) ref[i] = g[i] / (1.0 + std::exp(-double(g[i]))) * u[i];
  check_close(out.data(), ref.data(), n, 1e-6, 1e-5);

  auto y = random_vec(3 * 10, 5), b = random_vec(10, 6);
  auto y0 = y;
  cpu::add_bias(y.data(), b.data(), 3, 10);
  for (int r = 0; r < 3; ++r)
    for (int i = 0; i < 10; ++i) CHECK(y[r * 10 + i] == y0[r * 10 + i] + b[i]);
}

TEST_CASE("cpu ops: rope follows the formula for both pair layouts") {
  const int rows = 4, heads = 3, head_dim = 16;
  const std::vector<int32_t> pos = {0, 1, 37, 5000};
  for (RopeType type : {RopeType::Norm, RopeType::Neox}) {
    for (int rope_dim : {16, 8}) {  // full and partial rotation
      CAPTURE(rope_dim);
      CAPTURE(static_cast<int>(type));
      std::vector<float> inv_freq(rope_dim / 2);
      for (int i = 0; i < rope_dim / 2; ++i)
        inv_freq[i] = float(std::pow(10000.0, -2.0 * i / rope_dim));
      auto x = random_vec(rows * heads * head_dim, 7);
      std::vector<double> ref(x.begin(), x.end());
      for (int r = 0; r < rows; ++r)
        for (int h = 0; h < heads; ++h) {
          const int base = (r * heads + h) * head_dim;
          for (int i = 0; i < rope_dim / 2; ++i) {
            // Norm: rotate (x[2i], x[2i+1]); Neox: rotate (x[i], x[i + rope_dim/2]).
            const int a = type == RopeType::Norm ? 2 * i : i;
            const int b = type == RopeType::Norm ? 2 * i + 1 : i + rope_dim / 2;
            const double th = double(pos[r]) * inv_freq[i];
            ref[base + a] = x[base + a] * std::cos(th) - x[base + b] * std::sin(th);
            ref[base + b] = x[base + a] * std::sin(th) + x[base + b] * std::cos(th);
          }
        }
      cpu::rope(x.data(), pos.data(), rows, heads, head_dim, rope_dim, type, inv_freq.data());
      check_close(x.data(), ref.data(), x.size(), 1e-6, 1e-5);
    }
  }
}

namespace {

// matmul of a (rows, cols) weight of type t against float64 sums of its dequantized
// values, and bit-identical whether activation row 3 comes alone or in the batch.
void check_matmul(DType t, int64_t rows, int64_t cols) {
  CAPTURE(dtype_name(t));
  CAPTURE(cols);
  const int n_rows = 5;
  auto wv = random_vec(static_cast<size_t>(rows * cols), 8),
       x = random_vec(static_cast<size_t>(n_rows * cols), 9);
  TestMatrix W(t, wv, rows, cols);
  std::vector<float> deq(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r) dequantize_row(t, W.ref.row(r), deq.data() + r * cols, cols);
  std::vector<double> ref(static_cast<size_t>(n_rows * rows));
  for (int i = 0; i < n_rows; ++i)
    for (int64_t r = 0; r < rows; ++r) {
      double s = 0;
      for (int64_t j = 0; j < cols; ++j) s += double(deq[r * cols + j]) * x[i * cols + j];
      ref[i * rows + r] = s;
    }
  for (int threads : {1, 3}) {
    std::vector<float> y(ref.size());
    cpu::matmul(W.ref, x.data(), y.data(), n_rows, threads);
    check_close(y.data(), ref.data(), y.size(), 1e-5, 1e-5);
    std::vector<float> y1(static_cast<size_t>(rows));
    cpu::matmul(W.ref, x.data() + 3 * cols, y1.data(), 1, threads);
    CHECK(std::equal(y1.begin(), y1.end(), y.begin() + 3 * rows));
  }
}

}  // namespace

TEST_CASE("cpu ops: matmul matches float64 for every weight type") {
  // Odd shapes: partial tiles and SIMD tails.
  for (DType t : {DType::F32, DType::F16, DType::BF16}) check_matmul(t, 37, 172);
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_1,
                  DType::Q5_0, DType::Q5_1, DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
    if (!quant_supported(t)) continue;
    check_matmul(t, 37, 512);
  }
}

TEST_CASE("cpu ops: embed dequantizes the token rows") {
  const int64_t vocab = 10, dim = 24;
  auto wv = random_vec(vocab * dim, 10);
  TestMatrix W(DType::F16, wv, vocab, dim);
  const std::vector<int32_t> toks = {3, 0, 9, 3};
  std::vector<float> out(toks.size() * dim);
  cpu::embed(W.ref, toks.data(), 4, out.data());
  for (size_t i = 0; i < toks.size(); ++i)
    for (int64_t j = 0; j < dim; ++j) {
      const float expect = f16_to_f32(f32_to_f16(wv[toks[i] * dim + j]));
      CHECK(out[i * dim + j] == expect);
    }
}

TEST_CASE("cpu ops: paged attention matches naive softmax(QK^T/sqrt(d))V with GQA") {
  const int n_head = 6, n_head_kv = 2, head_dim = 8, block_size = 4, n_blocks = 12;
  const int kv_stride = n_head_kv * head_dim;
  auto kc = random_vec(size_t(n_blocks) * block_size * kv_stride, 11, -2, 2);
  auto vc = random_vec(kc.size(), 12);
  // Sequence 0: a chunk of 5 rows at positions 6..10 (earlier positions already cached),
  // blocks scattered. Sequence 1: one decode row at position 13 over other blocks.
  const std::vector<int32_t> blocks0 = {7, 2, 10};
  const std::vector<int32_t> blocks1 = {5, 0, 11, 3};
  Batch b;
  std::vector<int32_t> toks0(5, 0), toks1(1, 0);
  b.add_sequence(toks0.data(), 5, 6, blocks0, block_size, true);
  b.add_sequence(toks1.data(), 1, 13, blocks1, block_size, true);
  const int n = b.n_tokens();
  auto q = random_vec(size_t(n) * n_head * head_dim, 13, -2, 2);

  std::vector<double> ref(q.size());
  for (int r = 0; r < n; ++r) {
    const int s = r < 5 ? 0 : 1;
    const auto& tbl = s == 0 ? blocks0 : blocks1;
    const int pos = b.positions[r];
    for (int h = 0; h < n_head; ++h) {
      const int kvh = h / (n_head / n_head_kv);
      std::vector<double> sc(pos + 1);
      double mx = -1e300;
      for (int p = 0; p <= pos; ++p) {
        const size_t slot = size_t(tbl[p / block_size]) * block_size + p % block_size;
        double d = 0;
        for (int i = 0; i < head_dim; ++i)
          d += double(q[(r * n_head + h) * head_dim + i]) *
               kc[slot * kv_stride + kvh * head_dim + i];
        sc[p] = d / std::sqrt(double(head_dim));
        mx = std::max(mx, sc[p]);
      }
      double sum = 0;
      for (double& v : sc) sum += (v = std::exp(v - mx));
      for (int i = 0; i < head_dim; ++i) {
        double o = 0;
        for (int p = 0; p <= pos; ++p) {
          const size_t slot = size_t(tbl[p / block_size]) * block_size + p % block_size;
          o += sc[p] / sum * vc[slot * kv_stride + kvh * head_dim + i];
        }
        ref[(r * n_head + h) * head_dim + i] = o;
      }
    }
  }
  for (int threads : {1, 2}) {
    std::vector<float> out(q.size());
    cpu::attention(q.data(), kc.data(), vc.data(), b, n_head, n_head_kv, head_dim, block_size,
                   out.data(), threads);
    check_close(out.data(), ref.data(), out.size(), 1e-5, 1e-5);
  }
}

// --- the whole forward pass on a real model --------------------------------------

namespace {

struct Stories {
  std::unique_ptr<Model> model;
  std::vector<int32_t> golden;  // BOS then 200 greedy ids
};

bool load_stories(Stories& s) {
  const std::string m = test::shared_file("models/stories260K.gguf");
  const std::string g = test::shared_file("models/stories260K.greedy200.ids");
  if (m.empty() || g.empty()) return false;
  s.model = Model::load(m);
  s.golden = read_ids(g);
  REQUIRE(s.golden.size() == 201);
  REQUIRE(s.golden[0] == 1);
  return true;
}

std::vector<int32_t> linear_blocks(int first, int n) {
  std::vector<int32_t> b(n);
  for (int i = 0; i < n; ++i) b[i] = first + i;
  return b;
}

}  // namespace

TEST_CASE("cpu backend: stories260K greedy decode reproduces the golden 200 ids") {
  Stories s;
  if (!load_stories(s)) LLM_SKIP("../shared/models/stories260K.* absent");
  BackendOptions opt;
  opt.n_threads = 2;
  CpuBackend be(*s.model, opt);
  CHECK(be.block_size() == 16);
  CHECK(be.kv_blocks() == std::min(s.model->config.n_ctx_train, 4096) / 16);
  const int V = s.model->config.n_vocab;
  const auto blocks = linear_blocks(0, 201 / 16 + 1);
  std::vector<float> logits(V);
  std::vector<int32_t> got = {1};
  Batch b;
  for (int step = 0; step < 200; ++step) {
    b.clear();
    b.add_sequence(&got.back(), 1, step, blocks, 16, true);
    be.forward(b, logits.data());
    got.push_back(argmax(logits.data(), V));
  }
  CHECK(got == s.golden);
}

TEST_CASE("cpu backend: stories260K teacher-forced prefill and batch invariance") {
  Stories s;
  if (!load_stories(s)) LLM_SKIP("../shared/models/stories260K.* absent");
  const int V = s.model->config.n_vocab;
  BackendOptions opt;
  opt.n_threads = 2;
  opt.block_size = 8;
  CpuBackend be(*s.model, opt);

  // The whole golden sequence as one batch: the argmax of row i is golden[i + 1].
  std::vector<float> all(size_t(200) * V);
  {
    Batch b;
    b.add_sequence(s.golden.data(), 200, 0, linear_blocks(0, 25), 8, false);
    for (int i = 0; i < 200; ++i) b.logit_rows.push_back(i);
    be.forward(b, all.data());
    std::vector<int32_t> pred = {1};
    for (int i = 0; i < 200; ++i) pred.push_back(argmax(all.data() + size_t(i) * V, V));
    CHECK(pred == s.golden);
  }

  // Two sequences per batch over interleaved, non-contiguous blocks: A decodes from BOS
  // one token per step; B is prefilled with 40 golden tokens in A's first step, then
  // decodes. Both must continue the golden run with the logits of the one-batch pass.
  std::vector<int32_t> blocks_a, blocks_b;
  for (int i = 0; i < 26; ++i) {
    blocks_a.push_back(100 + 2 * i);
    blocks_b.push_back(101 + 2 * i);
  }
  std::vector<int32_t> a = {1}, bseq(s.golden.begin(), s.golden.begin() + 40);
  std::vector<float> logits(size_t(2) * V);
  double max_diff = 0;
  Batch b;
  for (int step = 0; step < 160; ++step) {
    b.clear();
    const int a_pos = int(a.size()) - 1, b_pos = step == 0 ? 0 : int(bseq.size()) - 1;
    b.add_sequence(&a.back(), 1, a_pos, blocks_a, 8, true);
    if (step == 0)
      b.add_sequence(bseq.data(), 40, 0, blocks_b, 8, true);
    else
      b.add_sequence(&bseq.back(), 1, b_pos, blocks_b, 8, true);
    be.forward(b, logits.data());
    const float* la = logits.data();
    const float* lb = logits.data() + V;
    const int b_row = int(bseq.size()) - 1;
    for (int v = 0; v < V; ++v) {
      max_diff = std::max(max_diff, double(std::fabs(la[v] - all[size_t(a_pos) * V + v])));
      max_diff = std::max(max_diff, double(std::fabs(lb[v] - all[size_t(b_row) * V + v])));
    }
    a.push_back(argmax(la, V));
    bseq.push_back(argmax(lb, V));
  }
  CHECK(std::equal(a.begin(), a.end(), s.golden.begin()));
  CHECK(std::equal(bseq.begin(), bseq.end(), s.golden.begin()));
  // Same arithmetic per row whatever the batch: the CPU backend is bit-for-bit batch
  // invariant, and the CUDA backend's tests rely on comparing against it.
  CHECK(max_diff == 0.0);
}

TEST_CASE("cpu backend: malformed batches throw llm::Error") {
  Stories s;
  if (!load_stories(s)) LLM_SKIP("../shared/models/stories260K.* absent");
  BackendOptions opt;
  opt.n_threads = 1;
  opt.kv_tokens = 64;  // 4 blocks
  CpuBackend be(*s.model, opt);
  CHECK(be.kv_blocks() == 4);
  std::vector<float> logits(s.model->config.n_vocab);
  int32_t tok = 1;
  Batch b;
  b.add_sequence(&tok, 1, 0, {0}, 16, true);
  CHECK_NOTHROW(be.forward(b, logits.data()));

  Batch bad = b;
  bad.tokens[0] = s.model->config.n_vocab;
  CHECK_THROWS_AS(be.forward(bad, logits.data()), Error);
  bad = b;
  bad.slots[0] = 64;
  CHECK_THROWS_AS(be.forward(bad, logits.data()), Error);
  bad = b;
  bad.block_tables[0] = 4;
  CHECK_THROWS_AS(be.forward(bad, logits.data()), Error);
  bad = b;
  bad.logit_rows[0] = 1;
  CHECK_THROWS_AS(be.forward(bad, logits.data()), Error);
  bad = b;
  bad.positions[0] = 16;  // past the one-block table
  CHECK_THROWS_AS(be.forward(bad, logits.data()), Error);
  CHECK_THROWS_AS(be.forward(Batch{}, logits.data()), Error);
  CHECK_THROWS_AS(be.copy_kv_block(0, 4), Error);
}

TEST_CASE("cpu backend: copy_kv_block duplicates a block in every layer") {
  Stories s;
  if (!load_stories(s)) LLM_SKIP("../shared/models/stories260K.* absent");
  BackendOptions opt;
  opt.n_threads = 1;
  opt.kv_tokens = 64;
  CpuBackend be(*s.model, opt);
  const int V = s.model->config.n_vocab;
  // Prefill 16 tokens into block 2, copy it to block 0, then decode position 16 once over
  // each: the logits must agree.
  std::vector<int32_t> toks(17, 0);
  const auto golden = read_ids(test::shared_file("models/stories260K.greedy200.ids"));
  std::copy_n(golden.begin(), 17, toks.begin());
  std::vector<float> l1(V), l2(V);
  Batch b;
  b.add_sequence(toks.data(), 16, 0, {2}, 16, false);
  be.forward(b, l1.data());
  be.copy_kv_block(2, 0);
  b.clear();
  b.add_sequence(&toks[16], 1, 16, {2, 3}, 16, true);
  be.forward(b, l1.data());
  b.clear();
  b.add_sequence(&toks[16], 1, 16, {0, 1}, 16, true);
  be.forward(b, l2.data());
  CHECK(l1 == l2);
  CHECK(argmax(l1.data(), V) == golden[17]);
}
