#include <algorithm>
#include <cstring>

#include "cuda/activation.h"
#include "cuda/attention.h"
#include "cuda/backend_cuda.h"
#include "cuda/backend_cuda_util.h"
#include "cuda/common.cuh"
#include "cuda/embed.h"
#include "cuda/kv_store.h"
#include "cuda/matmul.h"
#include "cuda/matmul_tc.h"
#include "cuda/matvec_glu.h"
#include "cuda/matvec_quant.h"
#include "cuda/quantize.h"
#include "cuda/rmsnorm.h"
#include "cuda/rope.h"
#include "cuda/topk.h"

namespace llm::cuda {
namespace {

constexpr int kMaxGraphBatch = 256;  // decode batches up to this size replay graphs

}  // namespace

struct CudaBackend::Input {
  const float* f32 = nullptr;
  const __half* f16 = nullptr;
  ActQ8 q8;
};

CudaBackend::~CudaBackend() {
  clear_graphs();
  for (cudaEvent_t e : prof_events_) cudaEventDestroy(e);
  if (cublas_) cublasDestroy(cublas_);
  if (stream_) cudaStreamDestroy(stream_);
}

void CudaBackend::clear_graphs() {
  for (auto& [k, g] : graphs_)
    if (g.exec) cudaGraphExecDestroy(g.exec);
  graphs_.clear();
}

void CudaBackend::ensure_input_capacity(size_t bytes) {
  if (bytes <= in_host_.size()) return;
  size_t cap = std::max<size_t>(bytes, 2 * in_host_.size());
  CUDA_CHECK(cudaStreamSynchronize(stream_));
  clear_graphs();  // graphs read the old device buffer
  in_host_ = PinnedBuffer(cap);
  in_dev_ = DeviceBuffer(cap);
}

void CudaBackend::copy_kv_block(int src, int dst) {
  if (src < 0 || src >= kv_blocks_ || dst < 0 || dst >= kv_blocks_)
    throw Error("copy_kv_block: block out of range (pool has " + std::to_string(kv_blocks_) +
                " blocks)");
  if (src == dst) return;
  const size_t n = static_cast<size_t>(block_size_) * cfg_.kv_dim();  // halves per block
  __half* base = kv_.as<__half>();
  for (int l = 0; l < 2 * cfg_.n_layer; ++l) {
    __half* layer = base + static_cast<size_t>(l) * kv_layer_elems_;
    CUDA_CHECK(cudaMemcpyAsync(layer + dst * n, layer + src * n, n * 2, cudaMemcpyDeviceToDevice,
                               stream_));
  }
  CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaBackend::validate(const Batch& b) const {
  validate_batch(b, cfg_.n_vocab, kv_blocks_, block_size_);
}

void CudaBackend::forward(const Batch& batch, float* logits) {
  forward_rows(batch, logits, nullptr);
}

void CudaBackend::forward_candidates(const Batch& batch, int k, LogitCandidates& out) {
  check_candidates_k(k, cfg_.n_vocab);
  out.resize(batch.n_logits(), k);
  out.full.clear();
  forward_rows(batch, nullptr, &out);
}

void CudaBackend::forward_rows(const Batch& batch, float* logits, LogitCandidates* cand) {
  validate(batch);
  CUDA_CHECK(cudaSetDevice(device_));
  const int n = batch.n_tokens();
  if (n <= cap_tokens_ && batch.n_logits() <= cap_logits_) {
    run(batch, logits, cand);
    return;
  }
  // Too many rows (or logit rows) for the buffers: run consecutive row ranges one after
  // another. A later range reads the K/V an earlier one wrote, so the result is the same.
  const size_t V = static_cast<size_t>(cfg_.n_vocab);
  std::vector<int> seq_of(static_cast<size_t>(n)), logits_at(static_cast<size_t>(n), 0);
  for (int s = 0; s < batch.n_seqs(); ++s)
    for (int r = batch.seq_start[static_cast<size_t>(s)];
         r < batch.seq_start[static_cast<size_t>(s) + 1]; ++r)
      seq_of[static_cast<size_t>(r)] = s;
  for (int32_t r : batch.logit_rows) ++logits_at[static_cast<size_t>(r)];
  std::vector<float> part;
  LogitCandidates part_cand;
  for (int r0 = 0, r1 = 0; r0 < n; r0 = r1) {
    int nl = 0;
    r1 = r0;
    while (r1 < n && r1 - r0 < cap_tokens_ &&
           nl + logits_at[static_cast<size_t>(r1)] <= cap_logits_)
      nl += logits_at[static_cast<size_t>(r1++)];
    if (r1 == r0) throw Error("forward: one row asks for more logits than the buffers hold");
    Batch sub;
    sub.max_blocks = batch.max_blocks;
    sub.seq_start.assign(1, 0);
    for (int r = r0; r < r1; ++r) {
      const int s = seq_of[static_cast<size_t>(r)];
      if (r == r0 || s != seq_of[static_cast<size_t>(r) - 1]) {
        if (r != r0) sub.seq_start.push_back(r - r0);
        sub.block_tables.insert(sub.block_tables.end(), batch.block_table(s),
                                batch.block_table(s) + batch.max_blocks);
      }
      sub.tokens.push_back(batch.tokens[static_cast<size_t>(r)]);
      sub.positions.push_back(batch.positions[static_cast<size_t>(r)]);
      sub.slots.push_back(batch.slots[static_cast<size_t>(r)]);
    }
    sub.seq_start.push_back(r1 - r0);
    std::vector<int> out_index;
    for (int i = 0; i < batch.n_logits(); ++i) {
      const int r = batch.logit_rows[static_cast<size_t>(i)];
      if (r >= r0 && r < r1) {
        sub.logit_rows.push_back(r - r0);
        out_index.push_back(i);
      }
    }
    if (cand) {
      part_cand.resize(static_cast<int>(out_index.size()), cand->k);
      run(sub, nullptr, &part_cand);
      for (size_t i = 0; i < out_index.size(); ++i)
        cand->copy_row(out_index[i], part_cand, static_cast<int>(i));
      continue;
    }
    part.resize(out_index.size() * V);
    run(sub, logits ? part.data() : nullptr, nullptr);  // null: a tensor-parallel rank > 0
    for (size_t i = 0; logits && i < out_index.size(); ++i)
      std::memcpy(logits + static_cast<size_t>(out_index[i]) * V, part.data() + i * V, V * 4);
  }
}

void CudaBackend::run(const Batch& b, float* logits, LogitCandidates* cand) {
  const int n = b.n_tokens();
  // Every sequence m rows (pure decode: 1; a speculative verification: k + 1), logits for
  // distinct rows: replay the graph of m rows a sequence and the sequence count's power of
  // two (padding sequences at the end), which computes logits for every row, the wanted
  // ones first (plan_step). Verifications on graphs: H100, 7B F16, batch-1 r(8) 1.14 ->
  // 1.11 (PERF.md, run 68).
  const int m = b.n_seqs() > 0 ? n / b.n_seqs() : 0;
  bool graph = use_graphs_ && !profiling_ && m >= 1 && m <= graph_rows_;
  for (int s = 0; graph && s < b.n_seqs(); ++s)
    graph = b.seq_start[static_cast<size_t>(s) + 1] - b.seq_start[static_cast<size_t>(s)] == m;
  if (graph) {
    std::vector<char> seen(static_cast<size_t>(n), 0);
    for (int32_t r : b.logit_rows) graph = graph && !seen[static_cast<size_t>(r)]++;
  }
  int nb = 1;
  while (nb < b.n_seqs()) nb *= 2;
  // A graph computes logits for all its rows: within the logits buffer too.
  if (graph && (nb * m > std::min(cap_tokens_, cap_logits_) || nb * m > kMaxGraphBatch))
    graph = false;

  const Plan p = plan_step(b, graph, nb, m);
  if (graph) {
    const int key = m * (kMaxGraphBatch + 1) + nb;
    auto it = graphs_.find(key);
    if (it == graphs_.end()) {
      cudaGraph_t g = nullptr;
      CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
      try {
        record(p);
      } catch (...) {
        cudaStreamEndCapture(stream_, &g);
        if (g) cudaGraphDestroy(g);
        throw;
      }
      CUDA_CHECK(cudaStreamEndCapture(stream_, &g));
      Graph G;
      const cudaError_t e = cudaGraphInstantiate(&G.exec, g, 0);
      cudaGraphDestroy(g);
      CUDA_CHECK(e);
      it = graphs_.emplace(key, G).first;
    }
    CUDA_CHECK(cudaGraphLaunch(it->second.exec, stream_));
  } else {
    if (profiling_) {
      gpu_spin(stream_, 20000.0);  // queue the step behind 20 ms of work
      CUDA_CHECK(cudaEventRecord(prof_events_[0], stream_));
    }
    record(p);
    if (profiling_) collect_profile();
  }
  // The step's readback: the first nl rows of logits_ are the wanted ones (graph mode
  // computes padding rows after them), or their candidates, selected here after the
  // graph so that one graph per bucket serves both outputs.
  const int nl = b.n_logits();
  const bool read = nl > 0 && wants_logits();
  size_t cand_vals = 0, cand_stats = 0, cand_bytes = 0;  // offsets in cand_dev_
  if (read && cand) {
    const size_t nk = static_cast<size_t>(nl) * cand->k;
    cand_vals = nk * 4;
    cand_stats = (nk * 8 + 15) / 16 * 16;
    cand_bytes = cand_stats + static_cast<size_t>(nl) * sizeof(CandidateStats);
    uint8_t* d = cand_dev_.as<uint8_t>();
    select_candidates(logits_.as<float>(), nl, cfg_.n_vocab, cand->k, cand_ws_.get(),
                      reinterpret_cast<int32_t*>(d), reinterpret_cast<float*>(d + cand_vals),
                      reinterpret_cast<CandidateStats*>(d + cand_stats), stream_);
    CUDA_CHECK(cudaMemcpyAsync(cand_host_.get(), d, cand_bytes, cudaMemcpyDeviceToHost, stream_));
  } else if (read) {
    CUDA_CHECK(cudaMemcpyAsync(logits, logits_.get(),
                               sizeof(float) * static_cast<size_t>(nl) * cfg_.n_vocab,
                               cudaMemcpyDeviceToHost, stream_));
  }
  CUDA_CHECK(cudaStreamSynchronize(stream_));
  if (read && cand) {
    const uint8_t* h = cand_host_.as<uint8_t>();
    std::memcpy(cand->ids.data(), h, cand_vals);
    std::memcpy(cand->logits.data(), h + cand_vals, cand_vals);
    std::memcpy(cand->stats.data(), h + cand_stats, cand_bytes - cand_stats);
  }
}

ActOut CudaBackend::act_for(const DevMatrix* const* W, int n_jobs, const Plan& p, int64_t k,
                            bool want_f32) {
  ActOut o;
  bool f32 = want_f32, f16 = false, q8 = false;
  for (int i = 0; i < n_jobs; ++i) {
    const DType t = W[i]->type;
    if (use_sk(p, *W[i]))
      (mm_sk_wants_q8(*W[i], p.n) ? q8 : f16) = true;
    else if (p.matvec)
      (is_float_type(t) ? f32 : q8) = true;
    else if (p.tc && mm_tc_supported(*W[i]))
      (mm_tc_wants_q8(*W[i]) ? q8 : f16) = true;
    else
      (t == DType::F32 ? f32 : f16) = true;
  }
  if (f32) o.f32 = act_f32_.as<float>();
  if (f16) o.f16 = act_f16_.as<__half>();
  if (q8 && k % 32 == 0) {
    o.q8.qs = act_qs_.as<int8_t>();
    o.q8.ds = act_ds_.as<float2>();
  }
  return o;
}

void CudaBackend::sk_shared(MmSkArgs& s) {
  s.ws.partial = sk_partial_.as<float>();
  s.ws.counters = sk_counters_.as<int>();
  s.cfg = sk_cfg_;
}

bool CudaBackend::glu_fused(const Plan& p, const Layer& L) const {
  const DevMatrix &g = L.w_gate, &u = L.w_up;
  return glu_fuse_ && use_sk(p, g) && use_sk(p, u) && g.type == u.type && g.cols == u.cols &&
         g.rows == u.rows && g.rows % 32 == 0 && sk_cfg_.col_split_elems == 0 && p.n <= kSkMaxCols;
}

bool CudaBackend::mv_glu_fused(const Plan& p, const Layer& L) const {
  // Not in deterministic mode, whose one-row and batched steps share the GEMV's path.
  // Blocks of 512 threads, two per SM: more than one wave lost (H100, 7B Q4_0's 344 blocks:
  // tg128 481 -> 474 tok/s; the llama-1b draft's 256 gained; PERF.md, run 82).
  return mv_glu_ > 0 && !deterministic_ && p.matvec && p.n == 1 &&
         matvec_glu_supported(L.w_gate, L.w_up) &&
         matvec_glu_blocks(L.w_gate) <= 2 * static_cast<int64_t>(n_sm_);
}

bool CudaBackend::sk_rope_fused(const Plan& p, const Layer& L) const {
  const DevMatrix &q = L.wq, &k = L.wk, &v = L.wv;
  // Q4_0 up to 32 rows with the half mode's register kernel (H100, 32 rows: 6.90 -> 6.73 ms per
  // step); with its ring kernel (LLM_CUDA_SK_REG=0) up to 16, as from the half mode on its
  // epilogue at the end of every CTA cost more than the separate kernel (PERF.md).
  const int rows = sk_cfg_.reg_weights && q.type == DType::Q4_0 ? sk_rope_rows_ : kSkHalfFrom;
  return sk_rope_ && p.n <= rows && cfg_.rope_type == RopeType::Norm && cfg_.head_dim % 2 == 0 &&
         use_sk(p, q) && use_sk(p, k) && use_sk(p, v) && q.type == k.type && k.type == v.type &&
         q.cols == k.cols && k.cols == v.cols && q.rows % 2 == 0 && k.rows % 2 == 0 &&
         v.rows % 2 == 0 && sk_cfg_.col_split_elems == 0;
}

ActOut CudaBackend::glu_out_formats(const ActOut& want) const {
  // gu_ holds cap x 2F floats; the formats sit in it side by side (7.25 of its 8 bytes
  // per element), at offsets that depend on the capacity only.
  const size_t nf = static_cast<size_t>(cap_tokens_) * static_cast<size_t>(cfg_.n_ff);
  uint8_t* base = gu_.as<uint8_t>();
  ActOut o;
  if (want.f32) o.f32 = reinterpret_cast<float*>(base);
  if (want.f16) o.f16 = reinterpret_cast<__half*>(base + 4 * nf);
  if (want.q8.qs) {
    o.q8.qs = reinterpret_cast<int8_t*>(base + 6 * nf);
    o.q8.ds = reinterpret_cast<float2*>(base + 7 * nf);
  }
  return o;
}

void CudaBackend::force_gemv(Plan& p) const {
  if (!deterministic_) return;
  // The GEMV computes every column (row of the step) with the same operations in the same
  // order whatever the number of columns in the launch (matvec_quant.cu, matvec_kq.cu);
  // cuBLAS and mm_tc pick tiles and split-K by the row count, and mm_sk's int8 sums
  // meet their scales in another order than the GEMV's.
  p.matvec = true;
  p.tc = false;
  p.sk = false;
}

void CudaBackend::matvec_jobs(MatvecJob* jobs, int n_jobs, const Input& in, int n) {
  // Consecutive matrices of one type (or mixable types) and width share a launch (at most 3).
  for (int first = 0; first < n_jobs;) {
    const int k = matvec_group(jobs + first, n_jobs - first, mv_variant_);
    matvec(jobs + first, k, in.f32, in.q8, n, stream_, mv_variant_);
    first += k;
  }
}

void CudaBackend::linear(const DevMatrix* const* W, float* const* y, int n_jobs, int64_t ldy,
                         bool accumulate, const Input& in, const Plan& p, bool row_parallel) {
  const int n = p.n;
  // Matrices the skinny products take go first (consecutive ones of one type and width
  // in one launch); the rest keep the GEMV / GEMM below.
  const DevMatrix* rest_W[3];
  float* rest_y[3];
  int n_rest = 0;
  // A row-parallel product (wo) of a Q4_0 half-mode step whose K is short goes to the f16
  // GEMM on the dense copy (the same f16 activations): split across enough CTAs to fill
  // the GPU, each of mm_sk's CTAs gets so few stages that it is latency-bound (H100, 32
  // rows, 4096 x 4096: 31 us against cuBLAS's 20; w_down, K 11008: 42 against 45; PERF.md).
  auto sk_here = [&](const DevMatrix& w) {
    return use_sk(p, w) && !(row_parallel && w.f16 && w.cols < sk_rowpar_min_k_ &&
                             mm_sk_half(w, n) && !mm_sk_wants_q8(w, n));
  };
  for (int i = 0; i < n_jobs;) {
    if (!sk_here(*W[i])) {
      rest_W[n_rest] = W[i];
      rest_y[n_rest++] = y[i++];
      continue;
    }
    MmSkArgs s;
    s.n_jobs = 0;
    while (i < n_jobs && s.n_jobs < kSkMaxJobs && sk_here(*W[i]) &&
           (s.n_jobs == 0 || (W[i]->type == s.W[0]->type && W[i]->cols == s.W[0]->cols))) {
      s.W[s.n_jobs] = W[i];
      s.y[s.n_jobs++] = y[i++];
    }
    s.x_q8 = in.q8;
    s.x_f16 = in.f16;
    s.n = n;
    s.ldy = ldy;
    s.accumulate = accumulate;
    s.split_k = row_parallel;
    // One GPU sums the halves of K as two ranks would (see the GEMV below).
    s.k_halves = row_parallel && tp_order_ && (!comm_ || comm_->world() == 1);
    sk_shared(s);
    mm_sk(s, stream_);
  }
  if (n_rest == 0) return;
  W = rest_W;
  y = rest_y;
  n_jobs = n_rest;
  if (p.matvec) {
    MatvecJob jobs[3];
    for (int i = 0; i < n_jobs; ++i) {
      jobs[i].W = *W[i];
      jobs[i].y = y[i];
      jobs[i].ldy = ldy;
      jobs[i].accumulate = accumulate;
      if (!row_parallel || !tp_order_) continue;
      // Decode gives the same bits on one GPU as on two ranks (--tp 2): one GPU sums the
      // halves of K apart, y = (y + S0) + S1, and rank r's lanes take the elements of its
      // slice that the whole matrix's lanes would (generic and float GEMV kernels).
      const int64_t step = is_float_type(W[i]->type) ? 8 : 32;
      const int world = comm_ ? comm_->world() : 1;
      if (world == 1 && W[i]->cols % (2 * step) == 0) jobs[i].k_split = W[i]->cols / 2;
      if (world > 1) jobs[i].k_offset = static_cast<int64_t>(comm_->rank()) * W[i]->cols;
    }
    matvec_jobs(jobs, n_jobs, in, n);
    return;
  }
  for (int i = 0; i < n_jobs; ++i) {
    if (p.tc && mm_tc_supported(*W[i])) {
      MmTcArgs t;
      t.W = W[i];
      t.x_q8 = in.q8;
      t.x_f16 = in.f16;
      t.n = n;
      t.y = y[i];
      t.ldy = ldy;
      t.accumulate = accumulate;
      t.ws.partial = tc_partial_.as<float>();
      t.ws.counters = tc_counters_.as<int>();
      t.cfg = tc_cfg_;
      mm_tc(t, stream_);
      continue;
    }
    // Matrices stored back to back (q | k | v, gate | up) whose outputs are back to back in
    // y are one GEMM: alone, a 4096-row product of a few hundred tokens fills half a wave
    // of an H100's SMs.
    DevMatrix merged = *W[i];
    float* const y0 = y[i];
    while (i + 1 < n_jobs && stacked_f16(merged, *W[i + 1], y0 + merged.rows == y[i + 1])) {
      ++i;
      merged.rows += W[i]->rows;
    }
    MatmulArgs a;
    a.W = &merged;
    a.x_f16 = in.f16;
    a.x_f32 = in.f32;
    a.n = n;
    a.y = y0;
    a.ldy = ldy;
    a.accumulate = accumulate;
    a.scratch = dq_.as<__half>();
    a.scratch_elems = dq_elems_;
    matmul(cublas_, a, stream_);
  }
}

bool CudaBackend::stacked_f16(const DevMatrix& a, const DevMatrix& b, bool outputs_adjacent) {
  if (!outputs_adjacent || a.cols != b.cols) return false;
  if (a.f16 || b.f16) return a.f16 && b.f16 && b.f16 == a.f16 + a.rows * a.cols;
  return a.type == DType::F16 && b.type == DType::F16 && a.qs_stride == a.cols * 2 &&
         b.qs_stride == a.qs_stride && b.qs == a.qs + a.rows * a.qs_stride;
}

void CudaBackend::record(const Plan& p) {
  const ModelConfig& c = cfg_;
  const int E = c.n_embd, Q = c.q_dim(), KV = c.kv_dim(), F = c.n_ff, V = c.n_vocab;
  const int n = p.n;
  float* h = hbuf(n);
  float* qkv = qkv_.as<float>();
  float* gu = gu_.as<float>();
  float* attn = attn_.as<float>();
  auto input_of = [](const ActOut& a, const float* f32) {
    Input in;
    in.f32 = f32 ? f32 : a.f32;
    in.f16 = a.f16;
    in.q8 = a.q8;
    return in;
  };

  embed(tok_embd_, p.tokens, n, h, stream_);
  mark("embed");
  // Tensor-parallel steps the ranks sum inside the next RMSNorm (tp_sum_): the window
  // (0: wo, 1: w_down) whose partials the next normalization adds to h, or -1.
  const bool tp_fused = tp_sum_ && n <= tp_sum_->rows();
  int pending = -1;
  // h's RMSNorm with weights w into out, summing the pending partials first.
  auto norm = [&](const float* w, const ActOut& out) {
    if (pending >= 0)
      tp_sum_norm(*tp_sum_, pending, h, w, n, E, c.rms_eps, out, stream_);
    else
      rmsnorm(h, nullptr, w, n, E, c.rms_eps, out, stream_);
    mark(pending >= 0 ? "tp_sum+rmsnorm" : "rmsnorm");
    pending = -1;
  };
  // After wo / w_down: the ranks' sum (an all-reduce, or pending for the next norm).
  auto reduce = [&](int window) {
    if (tp_fused)
      pending = window;
    else
      all_reduce_h(n);
  };
  // The step's RoPE angles once, for the skinny products' q/k/v epilogue.
  const bool sk_rope_table = layers_.size() > 0 && sk_rope_fused(p, layers_[0]);
  if (sk_rope_table) {
    rope_cs_table(p.positions, n, c.rope_dim, inv_freq_.as<float>(), rope_cs_.as<float2>(),
                  stream_);
    mark("rope_table");
  }
  for (int l = 0; l < c.n_layer; ++l) {
    const Layer& L = layers_[static_cast<size_t>(l)];
    __half* kc = kv_.as<__half>() + static_cast<int64_t>(2 * l) * kv_layer_elems_;
    __half* vc = kv_.as<__half>() + static_cast<int64_t>(2 * l + 1) * kv_layer_elems_;

    // Attention block: h += wo · attn(rope(wq·xn), rope(wk·xn), wv·xn), xn = rmsnorm(h).
    const DevMatrix* Wqkv[3] = {&L.wq, &L.wk, &L.wv};
    const ActOut xa = act_for(Wqkv, 3, p, E, false);
    // Decode: bias, RoPE and the K/V store happen in the matvec's epilogue (rows 2i, 2i+1
    // of a head meet in one warp; llama's Norm pairing only).
    const bool fused_rope = p.matvec && !use_sk(p, L.wq) && !use_sk(p, L.wk) && !use_sk(p, L.wv) &&
                            c.rope_type == RopeType::Norm && matvec_pairs_rows(L.wq) &&
                            matvec_pairs_rows(L.wk) && matvec_pairs_rows(L.wv);
    MatvecJob jobs[3];
    if (fused_rope) {
      const Epilogue ep[3] = {Epilogue::RopeToY, Epilogue::RopeToCache, Epilogue::ToCache};
      const float* bias[3] = {L.bq, L.bk, L.bv};
      __half* cache[3] = {nullptr, kc, vc};
      for (int i = 0; i < 3; ++i) {
        jobs[i].W = *Wqkv[i];
        jobs[i].epilogue = ep[i];
        jobs[i].rope.bias = bias[i];
        jobs[i].rope.positions = p.positions;
        jobs[i].rope.slots = p.slots;
        jobs[i].rope.inv_freq = inv_freq_.as<float>();
        jobs[i].rope.head_dim = c.head_dim;
        jobs[i].rope.rope_dim = c.rope_dim;
        jobs[i].rope.cache = cache[i];
      }
      jobs[0].y = q_rot_.as<float>();
      jobs[0].ldy = Q;
    }
    // One-row steps: the q/k/v product normalizes h itself where it can (mv_norm_).
    const bool qkv_norm = fused_rope && mv_norm_ && !deterministic_ && pending < 0 &&
                          matvec_norm_supported(jobs, 3, n);
    if (!qkv_norm) norm(L.attn_norm, xa);
    if (qkv_norm) {
      MatvecNorm norm;
      norm.h = h;
      norm.w = L.attn_norm;
      norm.eps = c.rms_eps;
      matvec(jobs, 3, nullptr, xa.q8, n, stream_, mv_variant_, &norm);
      mark("rmsnorm+qkv+rope+kv_store");
    } else if (fused_rope) {
      matvec_jobs(jobs, 3, input_of(xa, nullptr), n);
      mark("qkv+rope+kv_store");
    } else if (sk_rope_fused(p, L)) {
      // The same epilogue at the end of the skinny product's q/k/v launch.
      MmSkArgs s;
      s.n_jobs = 3;
      const float* bias[3] = {L.bq, L.bk, L.bv};
      __half* cache[3] = {nullptr, kc, vc};
      const Epilogue ep[3] = {Epilogue::RopeToY, Epilogue::RopeToCache, Epilogue::ToCache};
      for (int i = 0; i < 3; ++i) {
        s.W[i] = Wqkv[i];
        s.epilogue[i] = ep[i];
        s.rope[i].bias = bias[i];
        s.rope[i].positions = p.positions;
        s.rope[i].slots = p.slots;
        s.rope[i].inv_freq = inv_freq_.as<float>();
        s.rope[i].head_dim = c.head_dim;
        s.rope[i].rope_dim = c.rope_dim;
        s.rope[i].cache = cache[i];
        s.rope[i].cs = sk_rope_table ? rope_cs_.as<float2>() : nullptr;
      }
      s.y[0] = q_rot_.as<float>();
      s.ldy = Q;
      s.x_q8 = xa.q8;
      s.x_f16 = xa.f16;
      s.n = n;
      sk_shared(s);
      mm_sk(s, stream_);
      mark("qkv+rope+kv_store");
    } else {
      float* Y[3] = {qkv, qkv + Q, qkv + Q + KV};
      linear(Wqkv, Y, 3, Q + 2 * KV, false, input_of(xa, nullptr), p);
      mark("qkv");
      QkvStoreArgs s;
      s.q = qkv;
      s.k = qkv + Q;
      s.v = qkv + Q + KV;
      s.ld = Q + 2 * KV;
      s.bq = L.bq;
      s.bk = L.bk;
      s.bv = L.bv;
      s.positions = p.positions;
      s.slots = p.slots;
      s.n_rows = n;
      s.n_head = c.n_head;
      s.n_head_kv = c.n_head_kv;
      s.head_dim = c.head_dim;
      s.rope_dim = c.rope_dim;
      s.rope_type = c.rope_type;
      s.inv_freq = inv_freq_.as<float>();
      s.q_out = q_rot_.as<float>();
      s.k_cache = kc;
      s.v_cache = vc;
      qkv_rope_store(s, stream_);
      mark("rope+kv_store");
    }

    AttnArgs a;
    a.q = q_rot_.as<float>();
    a.k_cache = kc;
    a.v_cache = vc;
    a.positions = p.positions;
    a.row_seq = p.row_seq;
    a.table_start = p.table_start;
    a.tables = p.tables;
    a.n_head = c.n_head;
    a.n_head_kv = c.n_head_kv;
    a.head_dim = c.head_dim;
    a.block_size = block_size_;
    a.out = attn;
    a.prefetch = attn_prefetch_;
    {
      const DevMatrix* W[1] = {&L.wo};
      ActOut ao = act_for(W, 1, p, Q, false);
      ao.f32 = nullptr;  // the f32 output is attn itself
      // Decode-only steps get the other formats straight from the attention kernel.
      const bool fused = p.n_tiles == 0 && c.head_dim % 32 == 0;
      if (fused) {
        a.out_f16 = ao.f16;
        a.out_q8 = ao.q8;
      }
      // split_ws_rows_ / n_split rows per launch (the partials buffer): all rows at once
      // except in deterministic mode, whose split count does not shrink with the rows.
      const int per_launch = std::max(1, split_ws_rows_ / p.n_split);
      // Many rows: the persistent kernel (never in deterministic mode: one kernel there).
      // Also wherever the rows' (row, head) pairs alone give 2 blocks per SM, so that the
      // split-K kernel would not split keys: a verification's k + 1 rows (H100, 7B F16,
      // 9 rows at 512 positions: r(8) 1.20 -> 1.13; PERF.md). Whole-model heads, so that a
      // tensor-parallel rank decides as one GPU does.
      const int64_t heads = static_cast<int64_t>(c.n_head) * (comm_ ? comm_->world() : 1);
      const bool persist =
          !deterministic_ && attn_persist_rows_ > 0 &&
          (p.n_decode >= attn_persist_rows_ ||
           (attn_persist_fill_ && p.n_decode * heads >= 2 * n_sm_)) &&
          attention_decode_persist_fits(p.n_decode, c.n_head, c.head_dim, n_sm_, attn_persist_bps_);
      if (persist)
        attention_decode_persist(a, p.decode_rows, p.n_decode, n_sm_, attn_persist_bps_, stream_);
      for (int r0 = 0; !persist && r0 < p.n_decode; r0 += per_launch)
        attention_decode(a, p.decode_rows + r0, std::min(per_launch, p.n_decode - r0), p.n_split,
                         split_ws_.as<float>(), split_counters_.as<int>(), stream_);
      if (p.n_groups > 0)
        attention_rows(a, p.groups, p.n_groups, p.n_group_split, split_ws_.as<float>(),
                       split_counters_.as<int>(), stream_);
      if (p.n_tiles > 0)
        attention_prefill(a, p.tiles, p.n_tiles, p.n_tile_split, split_ws_.as<float>(),
                          split_counters_.as<int>(), stream_);
      mark("attention");
      if (!fused) convert_act(attn, n, Q, ao, stream_);
      if (!fused) mark("convert");
      float* Y[1] = {tp_fused ? tp_sum_->partial(0) : h};
      linear(W, Y, 1, E, !tp_fused && (!comm_ || comm_->rank() == 0), input_of(ao, attn), p, true);
      mark("wo");
      reduce(0);
    }

    // Feed-forward block: h += w_down · (silu(w_gate·xn) * (w_up·xn)), xn = rmsnorm(h).
    const DevMatrix* Wd[1] = {&L.w_down};
    ActOut ma = act_for(Wd, 1, p, F, false);  // the down product's input formats
    const bool glu = glu_fused(p, L);
    const bool mv_glu = !glu && mv_glu_fused(p, L);
    {
      const DevMatrix* W[2] = {&L.w_gate, &L.w_up};
      float* Y[2] = {gu, gu + F};
      const ActOut xa = act_for(W, 2, p, E, false);
      // matvec_glu normalizes h itself where it can (mv_glu_ 1).
      const bool norm_in = mv_glu && mv_glu_ == 1 && pending < 0 && matvec_glu_norm_supported(E);
      if (!norm_in) norm(L.ffn_norm, xa);
      if (glu) {
        // The skinny product's SwiGLU mode writes the down product's input itself, into
        // gu_ (its activations are read from act_*: another buffer).
        ma = glu_out_formats(ma);
        MmSkArgs s;
        s.n_jobs = 2;
        s.W[0] = W[0];
        s.W[1] = W[1];
        s.x_q8 = xa.q8;
        s.x_f16 = xa.f16;
        s.n = n;
        s.glu = true;
        s.glu_out = ma;
        sk_shared(s);
        mm_sk(s, stream_);
        mark("gate+up+swiglu");
      } else if (mv_glu) {
        ma = glu_out_formats(ma);  // not act_*, which the product reads
        GluInput gi;
        gi.x_q8 = xa.q8;
        if (norm_in) {
          gi.h = h;
          gi.norm_w = L.ffn_norm;
          gi.eps = c.rms_eps;
        }
        matvec_glu(L.w_gate, L.w_up, gi, ma, stream_);
        mark(norm_in ? "rmsnorm+gate+up+swiglu" : "gate+up+swiglu");
      } else {
        linear(W, Y, 2, 2 * F, false, input_of(xa, nullptr), p);
        mark("gate+up");
      }
    }
    {
      const DevMatrix* const* W = Wd;
      float* Y[1] = {tp_fused ? tp_sum_->partial(1) : h};
      if (!glu && !mv_glu) {
        swiglu(gu, gu + F, 2 * F, n, F, ma, stream_);
        mark("swiglu");
      }
      linear(W, Y, 1, E, !tp_fused && (!comm_ || comm_->rank() == 0), input_of(ma, nullptr), p,
             true);
      mark("down");
      reduce(1);
    }
  }

  // The last w_down's sum: every rank (each passes the barrier), logits or not.
  if (pending >= 0) {
    tp_sum_norm(*tp_sum_, pending, h, nullptr, n, E, 0.0f, ActOut{}, stream_);
    mark("tp_sum");
    pending = -1;
  }
  // Only the rows whose logits are wanted go through the final norm and the output matrix.
  if (p.n_logits > 0 && wants_logits()) {
    Plan pl = p;
    pl.n = p.n_logits;
    pl.matvec = pl.n <= matvec_cutoff_;
    pl.tc = !pl.matvec && pl.n <= tc_rows_;
    pl.sk = pl.n >= sk_min_rows_ && pl.n <= sk_rows_;
    force_gemv(pl);
    const DevMatrix* W[1] = {&output_};
    float* Y[1] = {logits_.as<float>()};
    const ActOut xa = act_for(W, 1, pl, E, false);
    rmsnorm(h, p.logit_rows, output_norm_, pl.n, E, c.rms_eps, xa, stream_);
    mark("rmsnorm");
    linear(W, Y, 1, V, false, input_of(xa, nullptr), pl);
    mark("output");
  }
}

// Tensor-parallel: wo and w_down wrote this rank's partial sum into h — rank 0 added it
// to the residual, the others overwrote it — so the sum over ranks is h + all parts.
void CudaBackend::all_reduce_h(int n) {
  if (!comm_) return;
  // In a symmetric window NCCL runs its own kernels, which read and write the peers'
  // buffers after a barrier among the ranks; they are launched so that they may begin
  // while the product before them still writes h (our kernels let their successors
  // launch early), and their barrier then passes before h is complete: wrong sums, more
  // often inside graphs (2 x H200, NCCL 2.28.9, run 45). The fence kernel has to end
  // first, and ends only after the product has.
  float* h = hbuf(n);
  if (h == h_win_) full_dependency_fence(stream_);
  comm_->all_reduce_sum(h, static_cast<size_t>(n) * cfg_.n_embd, stream_);
  mark("all-reduce");
}

}  // namespace llm::cuda

namespace llm {

std::unique_ptr<Backend> make_cuda_backend(const Model& model, const BackendOptions& opt) {
  return std::make_unique<cuda::CudaBackend>(model, opt);
}

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return n;
}

}  // namespace llm
