// The CUDA backend's load-time work: construction (device and memory checks, the kernel
// choices and their LLM_CUDA_* switches), weights uploaded from the mmap and repacked on
// the device, dense f16 copies for the GEMMs, the scratch buffers and the KV pool.
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "cuda/attention.h"
#include "cuda/backend_cuda.h"
#include "cuda/backend_cuda_util.h"
#include "cuda/common.cuh"
#include "cuda/matmul.h"
#include "cuda/nccl.h"
#include "cuda/qweight.h"
#include "cuda/topk.h"

namespace llm::cuda {
namespace {

// Up to this many rows a step uses the GEMV (weights read once per 8 rows), above it the
// GEMM (f16 weights, a dense copy or dequantized per call). Quantized: two GEMV passes
// still read less than f16.
constexpr int kMatvecCutoffQuant = 16;
// Float weights: the GEMV reads the same bytes as the GEMM but its FMAs per weight grow
// with the columns; on an H100 (PERF.md) F16 7B steps of 5..8 rows took 1.9..2.5x one row
// on the GEMV and 8 rows 13.5 ms, against 1.4x and 8.0 ms (16 rows) on cuBLAS.
constexpr int kMatvecCutoffFloat = 4;
// Tensor-core products (cuda/matmul_tc) for steps of (GEMV cut-over, tc_rows_] rows: off
// by default, as measured on an H100 they lose to the GEMV and the f16 GEMM (PERF.md);
// LLM_CUDA_TC_ROWS=N turns them on, and with every matrix supported the GEMV then keeps
// only single rows.
constexpr int kMatvecCutoffTc = 1;
constexpr int kTcRowsDefault = 0;
// A sequence with at least this many rows in a step (more than 64) uses the prefill tiles;
// fewer go through the split-K decode kernel, which keeps the GPU busy with few query rows
// (speculative verification, short chunks, a suffix after a cached prefix), where the
// tiles would be one CTA per head. Measured on an H100 (PERF.md): 4 -> 65 took a 64-token
// suffix after 1024 cached tokens from 17.9 to 15.9 ms and r(3) of the F16 7B from 2.6 to 1.3.
constexpr int kPrefillMinRows = 33;        // PERF.md: 64-row chunks after a cached prefix
constexpr int kSplitWorkspaceRows = 2048;  // n_decode * n_split the partials buffer holds
constexpr size_t kStagingBytes = 64ull << 20;
constexpr size_t kDequantMaxElems = 64ull << 20;
constexpr size_t kCublasWorkspace = 32ull << 20;

std::string gib(double bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f GiB", bytes / (1024.0 * 1024 * 1024));
  return buf;
}

size_t align256(size_t x) {
  return (x + 255) / 256 * 256;
}

}  // namespace

CudaBackend::CudaBackend(const Model& model, const BackendOptions& opt)
    : model_(model), cfg_(model.config), comm_(opt.collective), block_size_(opt.block_size) {
  if (opt.block_size <= 0)
    throw Error("KV block size must be positive, got " + std::to_string(opt.block_size));
  if (opt.kv_tokens < 0) throw Error("KV capacity must not be negative");
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    (void)cudaGetLastError();
    throw Error("no CUDA device is available (use --device cpu)");
  }
  if (opt.gpu < 0 || opt.gpu >= count)
    throw Error("--gpu " + std::to_string(opt.gpu) + " is out of range: " + std::to_string(count) +
                " CUDA device(s)");
  device_ = opt.gpu;
  CUDA_CHECK(cudaSetDevice(device_));
  cudaDeviceProp prop{};
  CUDA_CHECK(cudaGetDeviceProperties(&prop, device_));
  n_sm_ = prop.multiProcessorCount;
  name_ = "cuda:" + std::to_string(device_) + " " + prop.name;
  deterministic_ = opt.deterministic;
  // NCCL adds more than two ranks' parts in an order that follows the message size, i.e.
  // the step's rows; two parts give the same sum in either order.
  if (deterministic_ && comm_ && comm_->world() > 2)
    throw Error("--deterministic works with --tp 1 or 2 on CUDA (NCCL's sums over " +
                std::to_string(comm_->world()) + " GPUs depend on the batch)");
  if (!attention_head_dim_supported(cfg_.head_dim))
    throw Error(
        "the CUDA backend needs a head dimension that is a multiple of 8 and at most 256, model "
        "has " +
        std::to_string(cfg_.head_dim));
  CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  cublas_check(cublasCreate(&cublas_), "cublasCreate");

  // Everything but the KV pool must fit; say how much when it does not.
  size_t free_b = 0, total_b = 0;
  CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  // Counted from the weight views, not the file: a tensor-parallel shard has none.
  size_t wbytes = 0;
  auto count_matrix = [&](const TensorRef& t) {
    wbytes +=
        type_supported(t.type) ? device_matrix_bytes(t.type, t.rows, t.cols) : align256(t.bytes);
  };
  auto count_vector = [&](const TensorRef& t) { wbytes += t ? align256(t.bytes) : 0; };
  count_matrix(model.weights.tok_embd);
  if (!cfg_.tied_output) count_matrix(model.weights.output);
  count_vector(model.weights.output_norm);
  for (const LayerWeights& L : model.weights.layers) {
    for (const TensorRef* t : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down})
      count_matrix(*t);
    for (const TensorRef* t : {&L.attn_norm, &L.ffn_norm, &L.bq, &L.bk, &L.bv}) count_vector(*t);
  }
  cap_tokens_ = 2048;
  kmax_ = std::max({cfg_.n_embd, cfg_.q_dim(), cfg_.n_ff});
  const int64_t per_token_scratch = 4 * (cfg_.n_embd + kmax_ + cfg_.q_dim() * 2 + cfg_.q_dim() +
                                         2 * cfg_.kv_dim() + 2 * cfg_.n_ff) +
                                    2 * kmax_ + kmax_ + kmax_ / 4;
  const size_t scratch = static_cast<size_t>(per_token_scratch) * cap_tokens_ +
                         kDequantMaxElems * 2 + kCublasWorkspace + (256ull << 20);
  const size_t kv_per_token = static_cast<size_t>(cfg_.n_layer) * 2 * cfg_.kv_dim() * 2;
  const size_t min_kv = kv_per_token * static_cast<size_t>(std::min(cfg_.n_ctx_train, 512));
  if (wbytes + scratch + min_kv > free_b)
    throw Error(
        "model needs " + gib(static_cast<double>(wbytes + scratch + min_kv)) + " on " + name_ +
        " (weights " + gib(static_cast<double>(wbytes)) + ", buffers " +
        gib(static_cast<double>(scratch)) + ", KV for 512 tokens " +
        gib(static_cast<double>(min_kv)) + "), " + gib(static_cast<double>(free_b)) + " free" +
        (comm_ || count < 2
             ? ""
             : " (--tp N splits the weights over N of the " + std::to_string(count) + " GPUs)"));

  verbose_ = opt.verbose;
  // LLM_CUDA_GRAPHS=0: every step eager (a switch for measurements and debugging).
  if (const char* g = std::getenv("LLM_CUDA_GRAPHS"); g && std::string(g) == "0")
    use_graphs_ = false;
  // LLM_CUDA_GRAPH_ROWS=N: steps of up to N rows a sequence replay graphs (default 16;
  // 1: pure decode steps only).
  if (const char* g = std::getenv("LLM_CUDA_GRAPH_ROWS")) graph_rows_ = std::max(1, std::atoi(g));
  upload_weights(model);
  bool all_float = true;
  for (const Layer& L : layers_)
    for (const DevMatrix* m : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down})
      all_float = all_float && is_float_type(m->type);
  bool all_tc = true;
  for (const Layer& L : layers_)
    for (const DevMatrix* m : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down})
      all_tc = all_tc && mm_tc_supported(*m);
  tc_rows_ = kTcRowsDefault;
  if (const char* e = std::getenv("LLM_CUDA_TC_ROWS")) tc_rows_ = std::max(0, std::atoi(e));
  {
    const char* c = std::getenv("LLM_CUDA_TC_CTAS");
    const char* w = std::getenv("LLM_CUDA_TC_WARPS");
    tc_cfg_ = mm_tc_config(c ? std::atoi(c) : MmTcConfig{}.target_ctas,
                           w ? std::atoi(w) : MmTcConfig{}.warps);
  }
  // Skinny products (cuda/matmul_skinny) for steps of 2..32 rows of quantized weights:
  // measured on an H100 (PERF.md) they beat the GEMV from 2 rows and the f16 GEMM up to 32;
  // F16 weights as below. Measurement switches:
  // LLM_CUDA_SK_ROWS=N (0: never), LLM_CUDA_SK_MIN=N (first row count), LLM_CUDA_SK_F16=1,
  // LLM_CUDA_SK_CTAS=N (grid the split wo / w_down products aim for; default one per SM),
  // LLM_CUDA_SK_KSPLIT=E (split the other products' K every E elements; default whole).
  sk_cfg_.target_ctas = n_sm_;
  if (const char* e = std::getenv("LLM_CUDA_SK_ROWS")) sk_rows_ = std::max(0, std::atoi(e));
  if (const char* e = std::getenv("LLM_CUDA_SK_MIN")) sk_min_rows_ = std::max(2, std::atoi(e));
  // F16 weights take the skinny products where their warpgroup-MMA kernel runs (sm_90a
  // builds on an H100 / H200; LLM_CUDA_SK_F16WG=0: not that kernel); elsewhere the GEMV
  // and cuBLAS, which beat the other F16 forms.
  sk_cfg_.f16_wgmma = mm_sk_wgmma_available();
  if (const char* e = std::getenv("LLM_CUDA_SK_F16WG"))
    sk_cfg_.f16_wgmma = sk_cfg_.f16_wgmma && std::atoi(e) != 0;
  sk_f16_ = sk_cfg_.f16_wgmma;
  if (const char* e = std::getenv("LLM_CUDA_SK_F16")) sk_f16_ = std::atoi(e) != 0;
  if (const char* e = std::getenv("LLM_CUDA_SK_CTAS"))
    sk_cfg_.target_ctas = std::max(1, std::atoi(e));
  if (const char* e = std::getenv("LLM_CUDA_SK_KSPLIT"))
    sk_cfg_.col_split_elems = std::max(0, std::atoi(e));
  // LLM_CUDA_SK_REG=0: Q4_0 half-mode passes of 17..32 rows through the weight ring too;
  // LLM_CUDA_SK_REG_BUFS=2|3: weight stages the register mode holds.
  if (const char* e = std::getenv("LLM_CUDA_SK_REG")) sk_cfg_.reg_weights = std::atoi(e) != 0;
  if (const char* e = std::getenv("LLM_CUDA_SK_REG_BUFS"))
    sk_cfg_.reg_bufs = std::atoi(e) == 3 ? 3 : 2;
  // LLM_CUDA_SK_REG_XSLOTS=3|4: its activation ring slots.
  if (const char* e = std::getenv("LLM_CUDA_SK_REG_XSLOTS"))
    sk_cfg_.reg_x_slots = std::atoi(e) == 4 ? 4 : 3;
  // LLM_CUDA_SK_REG_XL1=0|1, LLM_CUDA_SK_RING_XL1=0|1: the activation copies through L1
  // (neighbouring CTAs of an SM read the same activations).
  if (const char* e = std::getenv("LLM_CUDA_SK_REG_XL1")) sk_cfg_.reg_x_l1 = std::atoi(e) != 0;
  if (const char* e = std::getenv("LLM_CUDA_SK_RING_XL1")) sk_cfg_.ring_x_l1 = std::atoi(e) != 0;
  matvec_cutoff_ = all_tc && tc_rows_ > 0 ? kMatvecCutoffTc
                   : all_float            ? kMatvecCutoffFloat
                                          : kMatvecCutoffQuant;
  prefill_min_rows_ = kPrefillMinRows;
  // Tuning experiments (PERF.md): LLM_CUDA_MATVEC_ROWS=N moves the GEMV cut-over,
  // LLM_CUDA_TC_ROWS=N the tensor-core/GEMM one (0: no tensor-core products).
  if (const char* e = std::getenv("LLM_CUDA_MATVEC_ROWS"))
    matvec_cutoff_ = std::max(0, std::atoi(e));
  // LLM_CUDA_PREFILL_ROWS=N: sequences of N rows or more use the prefill attention tiles.
  if (const char* e = std::getenv("LLM_CUDA_PREFILL_ROWS"))
    prefill_min_rows_ = std::max(1, std::atoi(e));
  // LLM_CUDA_SK_ROPE=0: q/k/v on the skinny products, then the RoPE/K-V store kernel.
  if (const char* e = std::getenv("LLM_CUDA_SK_ROPE")) sk_rope_ = std::atoi(e) != 0;
  if (const char* e = std::getenv("LLM_CUDA_SK_ROPE_ROWS")) sk_rope_rows_ = std::atoi(e);
  if (const char* e = std::getenv("LLM_CUDA_SK_ROWPAR_K")) sk_rowpar_min_k_ = std::atoll(e);
  // LLM_CUDA_SK_GLU=0: gate/up and the SwiGLU kernel apart on the skinny products too.
  if (const char* e = std::getenv("LLM_CUDA_SK_GLU")) glu_fuse_ = std::atoi(e) != 0;
  // LLM_CUDA_PREFILL_SPLIT=0: prefill tiles never split their keys across blocks.
  if (const char* e = std::getenv("LLM_CUDA_PREFILL_SPLIT")) prefill_split_ = std::atoi(e) != 0;
  // LLM_CUDA_TP_ORDER=0: one sum per row in wo and w_down (MatvecJob::k_split, k_offset).
  if (const char* e = std::getenv("LLM_CUDA_TP_ORDER")) tp_order_ = std::atoi(e) != 0;
  // LLM_CUDA_ATTN_PERSIST_ROWS: decode steps of at least this many rows use the persistent
  // decode attention (0: never); _BPS: its blocks per SM (1 to 4).
  if (const char* e = std::getenv("LLM_CUDA_ATTN_PERSIST_ROWS")) attn_persist_rows_ = std::atoi(e);
  // LLM_CUDA_ATTN_ROWS=N: a sequence's N to 32 rows in a step share K/V tiles on the tensor
  // cores (attention_rows; default 4; 0: each row on its own).
  if (const char* e = std::getenv("LLM_CUDA_ATTN_ROWS"))
    attn_rows_from_ = std::max(0, std::atoi(e));
  if (deterministic_ || !attention_rows_supported(cfg_.head_dim)) attn_rows_from_ = 0;
  if (const char* e = std::getenv("LLM_CUDA_MV_GLU")) mv_glu_ = std::clamp(std::atoi(e), 0, 2);
  if (const char* e = std::getenv("LLM_CUDA_MV_NORM")) mv_norm_ = std::atoi(e) != 0;
  if (const char* e = std::getenv("LLM_CUDA_ATTN_PREFETCH"))
    attn_prefetch_ = std::clamp(std::atoi(e), 0, 3);
  if (const char* e = std::getenv("LLM_CUDA_ATTN_PERSIST_FILL"))
    attn_persist_fill_ = std::atoi(e) != 0;
  if (const char* e = std::getenv("LLM_CUDA_ATTN_PERSIST_BPS"))
    attn_persist_bps_ = std::clamp(std::atoi(e), 1, 4);
  // Deterministic mode: every row through the split-K decode attention (plan_step).
  if (deterministic_) prefill_min_rows_ = INT_MAX;
  // LLM_CUDA_MV_KQ=bits: the GEMV kernel set (cuda/matvec_quant.h; default 15).
  mv_variant_ = matvec_variant_from_env();
  if (mv_variant_.pairs_below > 0) mv_variant_.pairs_below = 8 * static_cast<int64_t>(n_sm_);
  if (verbose_ && (mv_variant_.kquant || mv_variant_.q8))
    std::fprintf(stderr, "matvec kernels (LLM_CUDA_MV_KQ):%s%s%s%s%s\n",
                 mv_variant_.kquant ? " k-quant" : "", mv_variant_.q8 ? " q8_0" : "",
                 mv_variant_.mixed ? " mixed" : "", mv_variant_.uncapped ? " uncapped" : "",
                 mv_variant_.q8_deep ? " q8-4-slots" : "");
  // Deterministic mode never runs a GEMM: no f16 copy for it.
  make_f16_copies(deterministic_ ? BackendOptions::F16Copy::Off : opt.f16_copy, scratch + min_kv);
  allocate_scratch();
  allocate_kv(opt);
  if (deterministic_) {
    name_ += " (deterministic)";
    if (verbose_)
      std::fprintf(stderr,
                   "deterministic mode: every step on the GEMV and the split-K decode attention "
                   "(%d splits), results independent of the batch\n",
                   kMaxSplit);
  }
}

// mmap -> pinned staging (two buffers, alternating) -> raw device chunk -> repack kernel
// into the final layout, with progress on stderr.
void CudaBackend::upload_weights(const Model& model) {
  const ModelWeights& w = model.weights;
  struct Item {
    const TensorRef* ref;
    DevMatrix* mat;     // matrices
    const float** vec;  // f32 vectors
  };
  std::vector<Item> items;
  layers_.resize(w.layers.size());
  items.push_back({&w.tok_embd, &tok_embd_, nullptr});
  if (!cfg_.tied_output) items.push_back({&w.output, &output_, nullptr});
  items.push_back({&w.output_norm, nullptr, &output_norm_});
  for (size_t l = 0; l < w.layers.size(); ++l) {
    const LayerWeights& L = w.layers[l];
    Layer& D = layers_[l];
    items.push_back({&L.attn_norm, nullptr, &D.attn_norm});
    items.push_back({&L.wq, &D.wq, nullptr});
    items.push_back({&L.wk, &D.wk, nullptr});
    items.push_back({&L.wv, &D.wv, nullptr});
    if (L.bq) items.push_back({&L.bq, nullptr, &D.bq});
    if (L.bk) items.push_back({&L.bk, nullptr, &D.bk});
    if (L.bv) items.push_back({&L.bv, nullptr, &D.bv});
    items.push_back({&L.wo, &D.wo, nullptr});
    items.push_back({&L.ffn_norm, nullptr, &D.ffn_norm});
    items.push_back({&L.w_gate, &D.w_gate, nullptr});
    items.push_back({&L.w_up, &D.w_up, nullptr});
    items.push_back({&L.w_down, &D.w_down, nullptr});
  }
  size_t total = 0, raw_total = 0;
  for (const Item& it : items) {
    const TensorRef& t = *it.ref;
    if (it.mat) {
      if (!type_supported(t.type))
        throw Error(std::string("the CUDA backend does not support tensor type ") +
                    dtype_name(t.type));
      total += device_matrix_bytes(t.type, t.rows, t.cols);
    } else {
      total += align256(t.bytes);
    }
    raw_total += t.bytes;
  }
  weights_ = DeviceBuffer(total);
  uint8_t* cur = weights_.as<uint8_t>();

  PinnedBuffer pinned[2] = {PinnedBuffer(kStagingBytes), PinnedBuffer(kStagingBytes)};
  DeviceBuffer raw[2] = {DeviceBuffer(kStagingBytes), DeviceBuffer(kStagingBytes)};
  cudaEvent_t done[2];
  CUDA_CHECK(cudaEventCreateWithFlags(&done[0], cudaEventDisableTiming));
  CUDA_CHECK(cudaEventCreateWithFlags(&done[1], cudaEventDisableTiming));
  const bool verbose = verbose_;
  // A terminal gets one line redrawn at every percent; a log file a line every 25 %.
  const bool tty = isatty(fileno(stderr)) != 0;
  const int step = tty ? 1 : 25;
  int slot = 0, last_pct = -1;
  size_t sent = 0;
  auto progress = [&](bool end) {
    const int pct =
        raw_total
            ? static_cast<int>(100.0 * static_cast<double>(sent) / static_cast<double>(raw_total))
            : 100;
    if (!verbose || (pct / step == last_pct / step && last_pct >= 0 && !end)) return;
    if (end && !tty && last_pct == 100) return;  // the 100 % line is out already
    last_pct = pct;
    std::fprintf(stderr, "%sloading weights to %s: %3d%% (%s / %s)%s", tty ? "\r" : "",
                 name_.c_str(), pct, gib(static_cast<double>(sent)).c_str(),
                 gib(static_cast<double>(raw_total)).c_str(), end || !tty ? "\n" : "");
    std::fflush(stderr);
  };
  try {
    for (const Item& it : items) {
      const TensorRef& t = *it.ref;
      if (!it.mat) {  // f32 vector: straight copy
        CUDA_CHECK(cudaMemcpy(cur, t.data, t.bytes, cudaMemcpyHostToDevice));
        *it.vec = reinterpret_cast<const float*>(cur);
        cur += align256(t.bytes);
        sent += t.bytes;
        continue;
      }
      *it.mat = make_dev_matrix(t.type, t.rows, t.cols, cur);
      cur += device_matrix_bytes(t.type, t.rows, t.cols);
      const size_t rb = t.row_bytes();
      const int64_t chunk_rows = std::max<int64_t>(1, static_cast<int64_t>(kStagingBytes / rb));
      if (rb > kStagingBytes) throw Error("a weight row larger than the staging buffer");
      for (int64_t r0 = 0; r0 < t.rows; r0 += chunk_rows) {
        const int64_t nr = std::min(chunk_rows, t.rows - r0);
        const size_t bytes = rb * static_cast<size_t>(nr);
        CUDA_CHECK(cudaEventSynchronize(done[slot]));  // this staging pair is free again
        std::memcpy(pinned[slot].get(), t.row(r0), bytes);
        CUDA_CHECK(cudaMemcpyAsync(raw[slot].get(), pinned[slot].get(), bytes,
                                   cudaMemcpyHostToDevice, stream_));
        repack_rows(*it.mat, raw[slot].get(), r0, nr, stream_);
        CUDA_CHECK(cudaEventRecord(done[slot], stream_));
        slot ^= 1;
        sent += bytes;
        progress(false);
      }
    }
    CUDA_CHECK(cudaStreamSynchronize(stream_));
  } catch (...) {
    cudaStreamSynchronize(stream_);
    cudaEventDestroy(done[0]);
    cudaEventDestroy(done[1]);
    throw;
  }
  cudaEventDestroy(done[0]);
  cudaEventDestroy(done[1]);
  progress(true);
  if (cfg_.tied_output) output_ = tok_embd_;

  std::vector<float> inv(static_cast<size_t>(cfg_.rope_dim / 2));
  for (int i = 0; i < cfg_.rope_dim / 2; ++i)
    inv[static_cast<size_t>(i)] = rope_inv_freq(cfg_, w, i);
  inv_freq_ = DeviceBuffer(sizeof(float) * inv.size());
  CUDA_CHECK(
      cudaMemcpy(inv_freq_.get(), inv.data(), sizeof(float) * inv.size(), cudaMemcpyHostToDevice));
}

void CudaBackend::make_f16_copies(BackendOptions::F16Copy mode, size_t reserve) {
  using Mode = BackendOptions::F16Copy;
  if (mode == Mode::Off) return;
  std::vector<DevMatrix*> mats;
  auto consider = [&](DevMatrix& m) {
    if (m.type != DType::F16 && m.type != DType::F32) mats.push_back(&m);
  };
  consider(output_);
  for (Layer& L : layers_)
    for (DevMatrix* m : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down}) consider(*m);
  size_t bytes = 0;
  for (const DevMatrix* m : mats) bytes += align256(static_cast<size_t>(m->rows * m->cols) * 2);
  if (bytes == 0) return;
  size_t free_b = 0, total_b = 0;
  CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  const size_t avail = free_b > reserve ? free_b - reserve : 0;
  if (mode == Mode::Auto && bytes > avail / 2) {
    if (verbose_)
      std::fprintf(stderr,
                   "f16 weight copy for batched steps: off (needs %s, %s free after the weights; "
                   "batches of more than %d rows dequantize each step)\n",
                   gib(static_cast<double>(bytes)).c_str(), gib(static_cast<double>(avail)).c_str(),
                   matvec_cutoff_);
    return;
  }
  if (bytes > avail)
    throw Error("--f16-copy on needs " + gib(static_cast<double>(bytes)) + " on " + name_ + ", " +
                gib(static_cast<double>(avail)) + " free after the weights and buffers");
  f16_copy_ = DeviceBuffer(bytes);
  uint8_t* cur = f16_copy_.as<uint8_t>();
  for (DevMatrix* m : mats) {
    dequantize(*m, 0, m->rows, reinterpret_cast<__half*>(cur), stream_);
    m->f16 = reinterpret_cast<const __half*>(cur);
    cur += align256(static_cast<size_t>(m->rows * m->cols) * 2);
  }
  CUDA_CHECK(cudaStreamSynchronize(stream_));
  if (verbose_)
    std::fprintf(stderr, "f16 weight copy for batched steps: %s\n",
                 gib(static_cast<double>(bytes)).c_str());
}

void CudaBackend::allocate_scratch() {
  const size_t cap = static_cast<size_t>(cap_tokens_);
  const size_t E = static_cast<size_t>(cfg_.n_embd), Q = static_cast<size_t>(cfg_.q_dim()),
               KV = static_cast<size_t>(cfg_.kv_dim()), F = static_cast<size_t>(cfg_.n_ff),
               K = static_cast<size_t>(kmax_), V = static_cast<size_t>(cfg_.n_vocab);
  h_ = DeviceBuffer(cap * E * 4);
  // Tensor-parallel: the residual stream is what the ranks all-reduce, twice a layer. In
  // the collective's fast buffer (an NCCL symmetric window) NCCL sums small messages with
  // its low-latency kernels. Llama-2-7B F16, two H200s, decode tok/s with the window for
  // every step / never: 1 sequence 334-339 / 320-328, 2: 581-589 / 577-584, 4: 1,113-1,129
  // / 1,111-1,150, 8: 2,006-2,075 / 2,097-2,211 (PERF.md, run 47). So only steps whose
  // all-reduce is at most LLM_NCCL_SYMMETRIC_MAX_KB (default 32: 2 rows of n_embd 4096)
  // use it.
  if (comm_) {
    size_t max_kb = 32;
    if (const char* e = std::getenv("LLM_NCCL_SYMMETRIC_MAX_KB"))
      max_kb = std::strtoull(e, nullptr, 10);
    const size_t rows = std::min(cap, max_kb * 1024 / (E * 4));
    if (rows > 0) h_win_ = comm_->fast_buffer(rows * E * 4);
    if (h_win_) win_rows_ = static_cast<int>(rows);
    if (verbose_)
      std::fprintf(stderr, "tensor parallel: %s\n",
                   h_win_ ? ("steps of up to " + std::to_string(rows) +
                             " rows all-reduce in an NCCL symmetric window")
                                .c_str()
                          : "all-reduces in ordinary device memory");
    // Steps of up to LLM_TP_FUSED_ROWS rows (default 2) sum the ranks' partials inside the
    // next RMSNorm through NCCL's device API, where this build and the library have it.
    int fused_rows = 2;
    if (const char* e = std::getenv("LLM_TP_FUSED_ROWS")) fused_rows = std::atoi(e);
    fused_rows = std::min(fused_rows, static_cast<int>(cap));
    if (fused_rows > 0 && comm_->world() == 2 && !deterministic_)
      tp_sum_ = nccl_tp_sum(comm_, fused_rows, cfg_.n_embd);
    if (verbose_ && tp_sum_)
      std::fprintf(stderr,
                   "tensor parallel: steps of up to %d rows sum the ranks' parts inside the "
                   "RMSNorm (NCCL device API)\n",
                   fused_rows);
  }
  act_f32_ = DeviceBuffer(cap * K * 4);
  act_f16_ = DeviceBuffer(cap * K * 2);
  act_qs_ = DeviceBuffer(cap * K);
  act_ds_ = DeviceBuffer(cap * (K / 32 + 1) * 8);
  qkv_ = DeviceBuffer(cap * (Q + 2 * KV) * 4);
  q_rot_ = DeviceBuffer(cap * Q * 4);
  rope_cs_ = DeviceBuffer(cap * static_cast<size_t>(std::max(1, cfg_.rope_dim / 2)) * 8);
  attn_ = DeviceBuffer(cap * Q * 4);
  gu_ = DeviceBuffer(cap * 2 * F * 4);
  // Logit rows per step: up to 256 MiB of logits (more are computed in row ranges).
  cap_logits_ = static_cast<int>(std::clamp<size_t>((256ull << 20) / (V * 4), 16, cap));
  logits_ = DeviceBuffer(static_cast<size_t>(cap_logits_) * V * 4);
  cand_ws_ = DeviceBuffer(candidates_workspace_bytes(cap_logits_, cfg_.n_vocab));
  const size_t cand_bytes = static_cast<size_t>(cap_logits_) * (kMaxCandidates * 8 + 16) + 256;
  cand_dev_ = DeviceBuffer(cand_bytes);
  cand_host_ = PinnedBuffer(cand_bytes);
  split_ws_rows_ = kSplitWorkspaceRows;
  split_ws_ =
      DeviceBuffer(attention_decode_workspace(split_ws_rows_, cfg_.n_head, cfg_.head_dim, 1));
  split_counters_ = DeviceBuffer(sizeof(int) * cap * static_cast<size_t>(cfg_.n_head));
  CUDA_CHECK(cudaMemset(split_counters_.get(), 0, split_counters_.size()));
  tc_partial_ = DeviceBuffer(mm_tc_partial_floats(tc_cfg_) * sizeof(float));
  tc_counters_ = DeviceBuffer(sizeof(int) * kTcCounters);
  CUDA_CHECK(cudaMemset(tc_counters_.get(), 0, tc_counters_.size()));
  {
    // A launch takes up to 3 matrices (q/k/v): room for 3 of the largest.
    size_t floats = 0, counters = 0;
    auto size_for = [&](const DevMatrix& m) {
      if (!mm_sk_supported(m)) return;
      floats = std::max(floats, mm_sk_partial_floats(m, kSkMaxJobs * m.rows, sk_cfg_));
      counters = std::max(counters, kSkMaxJobs * mm_sk_tiles(m));
    };
    for (const Layer& L : layers_)
      for (const DevMatrix* m : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down})
        size_for(*m);
    size_for(output_);
    sk_partial_ = DeviceBuffer(floats * sizeof(float));
    sk_counters_ = DeviceBuffer(counters * sizeof(int));
    if (counters) CUDA_CHECK(cudaMemset(sk_counters_.get(), 0, sk_counters_.size()));
  }
  // Dequantization scratch: the largest matrix that needs one, capped (big ones go in chunks).
  size_t need = 0;
  auto consider = [&](const DevMatrix& m) {
    if (m.type != DType::F16 && m.type != DType::F32)
      need = std::max(need, static_cast<size_t>(m.rows * m.cols));
  };
  consider(tok_embd_);
  consider(output_);
  for (const Layer& L : layers_)
    for (const DevMatrix* m : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down})
      consider(*m);
  dq_elems_ = std::min(need, kDequantMaxElems);
  dq_ = DeviceBuffer(std::max<size_t>(dq_elems_, 1) * 2);
  cublas_ws_ = DeviceBuffer(kCublasWorkspace);
  cublas_check(cublasSetWorkspace(cublas_, cublas_ws_.get(), kCublasWorkspace),
               "cublasSetWorkspace");
  ensure_input_capacity(1 << 20);
}

void CudaBackend::allocate_kv(const BackendOptions& opt) {
  const size_t per_token = static_cast<size_t>(cfg_.n_layer) * 2 * cfg_.kv_dim() * 2;
  int64_t tokens = opt.kv_tokens;
  size_t free_b = 0, total_b = 0;
  CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  if (tokens == 0) {
    const double frac =
        opt.kv_memory_fraction > 0 && opt.kv_memory_fraction <= 1 ? opt.kv_memory_fraction : 0.9;
    tokens =
        static_cast<int64_t>(static_cast<double>(free_b) * frac / static_cast<double>(per_token));
  }
  int64_t blocks = tokens / block_size_;
  blocks = std::min<int64_t>(blocks, (INT_MAX / 2) / block_size_ - 1);
  if (blocks < 1)
    throw Error("no room for the KV cache on " + name_ + ": one block of " +
                std::to_string(block_size_) + " tokens needs " +
                gib(static_cast<double>(per_token * block_size_)) + ", " +
                gib(static_cast<double>(free_b)) + " free");
  const size_t bytes =
      per_token * static_cast<size_t>((blocks + 1) * block_size_);  // +1: padding sink
  if (bytes > free_b)
    throw Error("KV cache of " + std::to_string(blocks * block_size_) + " tokens needs " +
                gib(static_cast<double>(bytes)) + ", " + gib(static_cast<double>(free_b)) +
                " free on " + name_);
  kv_ = DeviceBuffer(bytes);
  CUDA_CHECK(cudaMemsetAsync(kv_.get(), 0, bytes, stream_));  // padding rows read the sink block
  CUDA_CHECK(cudaStreamSynchronize(stream_));
  kv_blocks_ = static_cast<int>(blocks);
  kv_layer_elems_ = (blocks + 1) * block_size_ * static_cast<int64_t>(cfg_.kv_dim());
}

}  // namespace llm::cuda
