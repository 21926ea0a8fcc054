#include "engine/tp_split.h"

#include <cassert>
#include <cstring>

#include "engine/error.h"

namespace llm {
namespace {

std::string slice_name(const TensorRef& t, int rank, int world) {
  return t.t->name + " [rank " + std::to_string(rank) + "/" + std::to_string(world) + "]";
}

// Rows [r0, r0 + n) of matrix t: a view into its data (rows are contiguous).
TensorRef row_slice(TpShard& s, const TensorRef& t, int64_t r0, int64_t n) {
  assert(t && r0 >= 0 && r0 + n <= t.rows);
  GgufTensor& d = s.tensors.emplace_back();
  d.name = slice_name(t, s.rank, s.world);
  d.type = t.type;
  d.shape = {t.cols, n};
  d.bytes = t.row_bytes() * static_cast<size_t>(n);
  d.data = static_cast<const uint8_t*>(t.row(r0));
  TensorRef out = t;
  out.t = &d;
  out.data = d.data;
  out.rows = n;
  out.bytes = d.bytes;
  return out;
}

// Elements [i0, i0 + n) of f32 vector t (a bias): a view.
TensorRef vec_slice(TpShard& s, const TensorRef& t, int64_t i0, int64_t n) {
  assert(t && t.type == DType::F32 && t.rows == 1 && i0 >= 0 && i0 + n <= t.cols);
  GgufTensor& d = s.tensors.emplace_back();
  d.name = slice_name(t, s.rank, s.world);
  d.type = DType::F32;
  d.shape = {n};
  d.bytes = sizeof(float) * static_cast<size_t>(n);
  d.data = static_cast<const uint8_t*>(t.data) + sizeof(float) * static_cast<size_t>(i0);
  TensorRef out = t;
  out.t = &d;
  out.data = d.data;
  out.cols = n;
  out.bytes = d.bytes;
  return out;
}

// Columns [c0, c0 + n) of matrix t: every row's block range copied into a buffer the
// shard owns. c0 and n are whole blocks (check_tp_split).
TensorRef col_slice(TpShard& s, const TensorRef& t, int64_t c0, int64_t n) {
  assert(t && c0 >= 0 && c0 + n <= t.cols);
  if (c0 == 0 && n == t.cols) return t;
  const size_t skip = row_bytes(t.type, c0), rb = row_bytes(t.type, n);
  // Not zero-filled first: at 70B F16 over 2 ranks these copies are 45 GiB.
  auto buf = std::make_unique_for_overwrite<uint8_t[]>(rb * static_cast<size_t>(t.rows));
  for (int64_t r = 0; r < t.rows; ++r)
    std::memcpy(buf.get() + static_cast<size_t>(r) * rb,
                static_cast<const uint8_t*>(t.row(r)) + skip, rb);
  GgufTensor& d = s.tensors.emplace_back();
  d.name = slice_name(t, s.rank, s.world);
  d.type = t.type;
  d.shape = {n, t.rows};
  d.bytes = rb * static_cast<size_t>(t.rows);
  d.data = buf.get();
  s.copies.push_back(std::move(buf));
  TensorRef out = t;
  out.t = &d;
  out.data = d.data;
  out.cols = n;
  out.bytes = d.bytes;
  return out;
}

// Why `world` ranks cannot split the model, or "" when they can.
std::string split_problem(const Model& m, int world) {
  const ModelConfig& c = m.config;
  const std::string N = std::to_string(world);
  auto indivisible = [&](int v, const char* what) {
    return "the model's " + std::to_string(v) + " " + what + " do not split into " + N +
           " equal parts";
  };
  if (c.n_head % world) return indivisible(c.n_head, "attention heads (attention.head_count)");
  if (c.n_head_kv % world) return indivisible(c.n_head_kv, "KV heads (attention.head_count_kv)");
  if (c.n_ff % world) return indivisible(c.n_ff, "feed-forward rows (feed_forward_length)");
  // The row-parallel matrices are cut along their rows: each rank's column range must
  // be whole quantization blocks (k-quants: 256 columns).
  for (const LayerWeights& L : m.weights.layers) {
    for (const TensorRef* t : {&L.wo, &L.w_down}) {
      const int64_t part = t->cols / world;
      const int be = traits(t->type).block_elems;
      if (part % be)
        return (t->t ? t->t->name : std::string("a matrix")) + " is " + dtype_name(t->type) +
               ", whose " + std::to_string(be) + "-column blocks do not divide a rank's " +
               std::to_string(part) + " of its " + std::to_string(t->cols) + " columns";
    }
  }
  return "";
}

}  // namespace

void check_tp_split(const Model& model, int world) {
  if (world < 1) throw Error("--tp must be at least 1, got " + std::to_string(world));
  const std::string why = split_problem(model, world);
  if (why.empty()) return;
  std::string ok;
  for (int n = 1; n <= 16; ++n)
    if (split_problem(model, n).empty()) ok += (ok.empty() ? "" : ", ") + std::to_string(n);
  throw Error("--tp " + std::to_string(world) + ": " + why +
              " (--tp values that split this model: " + ok + ")");
}

std::unique_ptr<TpShard> make_tp_shard(const Model& model, int rank, int world) {
  check_tp_split(model, world);
  assert(rank >= 0 && rank < world);
  auto s = std::make_unique<TpShard>();
  s->rank = rank;
  s->world = world;
  ModelConfig& c = s->model.config;
  c = model.config;
  c.n_head /= world;
  c.n_head_kv /= world;
  c.n_ff /= world;
  const int64_t Q = c.q_dim(), KV = c.kv_dim(), F = c.n_ff;  // per rank

  const ModelWeights& W = model.weights;
  ModelWeights& w = s->model.weights;
  w.tok_embd = W.tok_embd;
  w.output_norm = W.output_norm;
  w.output = W.output;
  w.rope_freq_factors = W.rope_freq_factors;
  for (const LayerWeights& A : W.layers) {
    LayerWeights L;
    L.attn_norm = A.attn_norm;
    L.ffn_norm = A.ffn_norm;
    L.wq = row_slice(*s, A.wq, rank * Q, Q);
    L.wk = row_slice(*s, A.wk, rank * KV, KV);
    L.wv = row_slice(*s, A.wv, rank * KV, KV);
    if (A.bq) {
      L.bq = vec_slice(*s, A.bq, rank * Q, Q);
      L.bk = vec_slice(*s, A.bk, rank * KV, KV);
      L.bv = vec_slice(*s, A.bv, rank * KV, KV);
    }
    L.wo = col_slice(*s, A.wo, rank * Q, Q);
    L.w_gate = row_slice(*s, A.w_gate, rank * F, F);
    L.w_up = row_slice(*s, A.w_up, rank * F, F);
    L.w_down = col_slice(*s, A.w_down, rank * F, F);
    w.layers.push_back(L);
  }
  return s;
}

size_t TpShard::weight_bytes() const {
  const ModelWeights& w = model.weights;
  size_t n =
      w.tok_embd.bytes + w.output_norm.bytes + (model.config.tied_output ? 0 : w.output.bytes);
  for (const LayerWeights& L : w.layers)
    for (const TensorRef* t : {&L.attn_norm, &L.wq, &L.wk, &L.wv, &L.bq, &L.bk, &L.bv, &L.wo,
                               &L.ffn_norm, &L.w_gate, &L.w_up, &L.w_down})
      n += t->bytes;
  return n;
}

}  // namespace llm
