// The CPU backend's whole forward pass on small synthetic models against a float64
// forward pass written here from the architecture's definition: qwen2 (q/k/v biases,
// Neox rope, output tied to the embedding) and llama (partial rotary dims, linear rope
// scaling, f16 weights). stories260K covers the llama graph with trained weights; these
// cover the branches it does not take.
#include <doctest/doctest.h>

#include <cmath>
#include <map>
#include <random>
#include <vector>

#include "engine/backend_cpu.h"
#include "engine/gguf.h"
#include "quant/quants.h"
#include "test_util.h"

using namespace llm;

namespace {

struct Spec {
  std::string arch;
  int vocab = 50, embd = 32, layers = 2, heads = 4, kv_heads = 2, head_dim = 8, ff = 48;
  int rope_dim = 8;
  double rope_base = 10000, rope_factor = 1;  // linear scaling factor (1: none)
  bool bias = false, tied = false;
  DType wtype = DType::F32;
};

using Mat = std::vector<double>;  // row-major (rows, cols)

// Writes the model and keeps the weights (as stored, i.e. after rounding to wtype).
std::map<std::string, Mat> write_model(const Spec& s, const std::string& path) {
  std::mt19937 rng(42);
  std::normal_distribution<float> nd(0.0f, 0.3f);
  GgufWriter w;
  w.set_string("general.architecture", s.arch);
  const std::string a = s.arch + ".";
  w.set_u32(a + "embedding_length", s.embd);
  w.set_u32(a + "block_count", s.layers);
  w.set_u32(a + "feed_forward_length", s.ff);
  w.set_u32(a + "attention.head_count", s.heads);
  w.set_u32(a + "attention.head_count_kv", s.kv_heads);
  w.set_u32(a + "attention.key_length", s.head_dim);
  w.set_u32(a + "context_length", 256);
  w.set_u32(a + "rope.dimension_count", s.rope_dim);
  w.set_f32(a + "rope.freq_base", static_cast<float>(s.rope_base));
  w.set_f32(a + "attention.layer_norm_rms_epsilon", 1e-6f);
  if (s.rope_factor != 1) {
    w.set_string(a + "rope.scaling.type", "linear");
    w.set_f32(a + "rope.scaling.factor", static_cast<float>(s.rope_factor));
  }
  struct T {
    std::string name;
    int64_t cols, rows;
    bool vec;
  };
  const int Q = s.heads * s.head_dim, KV = s.kv_heads * s.head_dim;
  std::vector<T> ts = {{"token_embd.weight", s.embd, s.vocab, false},
                       {"output_norm.weight", s.embd, 1, true}};
  if (!s.tied) ts.push_back({"output.weight", s.embd, s.vocab, false});
  for (int l = 0; l < s.layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    ts.push_back({p + "attn_norm.weight", s.embd, 1, true});
    ts.push_back({p + "attn_q.weight", s.embd, Q, false});
    ts.push_back({p + "attn_k.weight", s.embd, KV, false});
    ts.push_back({p + "attn_v.weight", s.embd, KV, false});
    if (s.bias) {
      ts.push_back({p + "attn_q.bias", Q, 1, true});
      ts.push_back({p + "attn_k.bias", KV, 1, true});
      ts.push_back({p + "attn_v.bias", KV, 1, true});
    }
    ts.push_back({p + "attn_output.weight", Q, s.embd, false});
    ts.push_back({p + "ffn_norm.weight", s.embd, 1, true});
    ts.push_back({p + "ffn_gate.weight", s.embd, s.ff, false});
    ts.push_back({p + "ffn_up.weight", s.embd, s.ff, false});
    ts.push_back({p + "ffn_down.weight", s.ff, s.embd, false});
  }
  for (const T& t : ts)
    t.vec ? w.add_tensor(t.name, DType::F32, {t.cols})
          : w.add_tensor(t.name, s.wtype, {t.cols, t.rows});
  w.begin(path);
  std::map<std::string, Mat> out;
  for (const T& t : ts) {
    const DType type = t.vec ? DType::F32 : s.wtype;
    std::vector<float> v(static_cast<size_t>(t.cols * t.rows));
    for (float& x : v) x = t.vec ? 1.0f + nd(rng) : nd(rng);
    std::vector<uint8_t> bytes(row_bytes(type, t.cols) * static_cast<size_t>(t.rows));
    std::vector<float> back(v.size());
    for (int64_t r = 0; r < t.rows; ++r) {
      uint8_t* dst = bytes.data() + r * row_bytes(type, t.cols);
      quantize_row(type, v.data() + r * t.cols, dst, t.cols);
      dequantize_row(type, dst, back.data() + r * t.cols, t.cols);
    }
    w.write_tensor_data(bytes.data(), bytes.size());
    out[t.name] = Mat(back.begin(), back.end());
  }
  w.finish();
  return out;
}

// y (rows) = W (rows, cols) x (cols)
std::vector<double> mv(const Mat& W, const std::vector<double>& x, size_t rows) {
  std::vector<double> y(rows, 0.0);
  for (size_t r = 0; r < rows; ++r)
    for (size_t c = 0; c < x.size(); ++c) y[r] += W[r * x.size() + c] * x[c];
  return y;
}

std::vector<double> rms(const std::vector<double>& x, const Mat& w) {
  double ss = 0;
  for (double v : x) ss += v * v;
  const double s = 1.0 / std::sqrt(ss / x.size() + 1e-6);
  std::vector<double> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * s * w[i];
  return y;
}

// Logits (n_tokens, vocab) of every position of one sequence, all in float64.
std::vector<double> reference_forward(const Spec& s, std::map<std::string, Mat>& W,
                                      const std::vector<int32_t>& toks) {
  const size_t n = toks.size(), E = s.embd, D = s.head_dim, Q = s.heads * D, KV = s.kv_heads * D;
  std::vector<std::vector<double>> x(n);
  for (size_t t = 0; t < n; ++t)
    x[t].assign(W["token_embd.weight"].begin() + toks[t] * E,
                W["token_embd.weight"].begin() + (toks[t] + 1) * E);
  auto rotate = [&](std::vector<double>& v, int n_heads, size_t pos) {
    for (int h = 0; h < n_heads; ++h)
      for (int i = 0; i < s.rope_dim / 2; ++i) {
        const double th = pos * std::pow(s.rope_base, -2.0 * i / s.rope_dim) / s.rope_factor;
        // llama pairs neighbours (2i, 2i+1); qwen2 (Neox) pairs i with i + rope_dim/2.
        const size_t a = h * D + (s.arch == "llama" ? 2 * i : i);
        const size_t b = h * D + (s.arch == "llama" ? 2 * i + 1 : i + s.rope_dim / 2);
        const double x0 = v[a], x1 = v[b];
        v[a] = x0 * std::cos(th) - x1 * std::sin(th);
        v[b] = x0 * std::sin(th) + x1 * std::cos(th);
      }
  };
  for (int l = 0; l < s.layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    std::vector<std::vector<double>> q(n), k(n), v(n);
    for (size_t t = 0; t < n; ++t) {
      auto xn = rms(x[t], W[p + "attn_norm.weight"]);
      q[t] = mv(W[p + "attn_q.weight"], xn, Q);
      k[t] = mv(W[p + "attn_k.weight"], xn, KV);
      v[t] = mv(W[p + "attn_v.weight"], xn, KV);
      if (s.bias) {
        for (size_t i = 0; i < Q; ++i) q[t][i] += W[p + "attn_q.bias"][i];
        for (size_t i = 0; i < KV; ++i) k[t][i] += W[p + "attn_k.bias"][i];
        for (size_t i = 0; i < KV; ++i) v[t][i] += W[p + "attn_v.bias"][i];
      }
      rotate(q[t], s.heads, t);
      rotate(k[t], s.kv_heads, t);
    }
    for (size_t t = 0; t < n; ++t) {
      std::vector<double> att(Q, 0.0);
      for (int h = 0; h < s.heads; ++h) {
        const size_t g = static_cast<size_t>(h / (s.heads / s.kv_heads));
        std::vector<double> sc(t + 1);
        double mx = -1e300, sum = 0;
        for (size_t j = 0; j <= t; ++j) {
          double d = 0;
          for (size_t i = 0; i < D; ++i) d += q[t][h * D + i] * k[j][g * D + i];
          sc[j] = d / std::sqrt(double(D));
          mx = std::max(mx, sc[j]);
        }
        for (double& e : sc) sum += (e = std::exp(e - mx));
        for (size_t j = 0; j <= t; ++j)
          for (size_t i = 0; i < D; ++i) att[h * D + i] += sc[j] / sum * v[j][g * D + i];
      }
      auto o = mv(W[p + "attn_output.weight"], att, E);
      for (size_t i = 0; i < E; ++i) x[t][i] += o[i];
      auto xn = rms(x[t], W[p + "ffn_norm.weight"]);
      auto g = mv(W[p + "ffn_gate.weight"], xn, s.ff), u = mv(W[p + "ffn_up.weight"], xn, s.ff);
      for (int i = 0; i < s.ff; ++i) g[i] = g[i] / (1 + std::exp(-g[i])) * u[i];
      auto dn = mv(W[p + "ffn_down.weight"], g, E);
      for (size_t i = 0; i < E; ++i) x[t][i] += dn[i];
    }
  }
  std::vector<double> logits;
  const Mat& out = s.tied ? W["token_embd.weight"] : W["output.weight"];
  for (size_t t = 0; t < n; ++t) {
    auto l = mv(out, rms(x[t], W["output_norm.weight"]), s.vocab);
    logits.insert(logits.end(), l.begin(), l.end());
  }
  return logits;
}

void check_model(const Spec& s) {
  const std::string path = test::temp_path("synth-" + s.arch + ".gguf");
  auto W = write_model(s, path);
  auto model = Model::load(path);
  REQUIRE(model->config.has_qkv_bias == s.bias);
  REQUIRE(model->config.tied_output == s.tied);
  BackendOptions opt;
  opt.n_threads = 2;
  opt.block_size = 4;
  CpuBackend be(*model, opt);

  std::vector<int32_t> toks;
  std::mt19937 rng(3);
  for (int i = 0; i < 23; ++i) toks.push_back(static_cast<int32_t>(rng() % s.vocab));
  const auto ref = reference_forward(s, W, toks);

  // A prefill of 15 rows over scattered blocks, then 8 decode steps.
  const std::vector<int32_t> blocks = {9, 3, 14, 0, 7, 21};
  std::vector<float> got(toks.size() * s.vocab);
  Batch b;
  b.add_sequence(toks.data(), 15, 0, blocks, 4, false);
  for (int i = 0; i < 15; ++i) b.logit_rows.push_back(i);
  be.forward(b, got.data());
  for (size_t t = 15; t < toks.size(); ++t) {
    b.clear();
    b.add_sequence(&toks[t], 1, static_cast<int>(t), blocks, 4, true);
    be.forward(b, got.data() + t * s.vocab);
  }
  double scale = 0, err = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    scale = std::max(scale, std::fabs(ref[i]));
    err = std::max(err, std::fabs(got[i] - ref[i]));
  }
  CAPTURE(err);
  CAPTURE(scale);
  CHECK(scale > 1.0);          // the logits are not degenerate
  CHECK(err <= 3e-5 * scale);  // f32 arithmetic against float64 (measured ~1e-6)
}

}  // namespace

TEST_CASE("cpu backend: synthetic qwen2 (biases, neox rope, tied output) matches float64") {
  Spec s;
  s.arch = "qwen2";
  s.bias = true;
  s.tied = true;
  s.rope_base = 1000000;
  check_model(s);
}

TEST_CASE(
    "cpu backend: synthetic llama (partial rope, linear scaling, f16 weights) matches float64") {
  Spec s;
  s.arch = "llama";
  s.rope_dim = 4;
  s.rope_factor = 4;
  s.wtype = DType::F16;
  s.heads = 8;
  s.kv_heads = 8;
  check_model(s);
}
