// The CUDA backend: weights repacked on the device, a paged f16 KV pool sized from free
// memory, and the forward pass sequenced as kernels on one stream (the only place that
// orders kernels). Pure decode steps replay a CUDA graph per batch-size bucket.
#pragma once
#include <cublas_v2.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cuda/cuda_types.h"
#include "cuda/matmul_skinny.h"
#include "cuda/matmul_tc.h"
#include "cuda/matvec_quant.h"
#include "cuda/tp_sum.h"
#include "engine/backend.h"

namespace llm::cuda {

class CudaBackend final : public Backend {
 public:
  CudaBackend(const Model& model, const BackendOptions& opt);
  ~CudaBackend() override;
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  std::string name() const override { return name_; }
  const ModelConfig& config() const override { return cfg_; }
  void forward(const Batch& batch, float* logits) override;
  // Selects on the device after the logits (cuda/topk), outside the decode graphs, and
  // copies back only the candidates at the step's one synchronisation.
  void forward_candidates(const Batch& batch, int k, LogitCandidates& out) override;
  int block_size() const override { return block_size_; }
  int kv_blocks() const override { return kv_blocks_; }
  void copy_kv_block(int src, int dst) override;

  // Bytes of weights on the device and of the KV pool.
  size_t weight_bytes() const { return weights_.size(); }
  size_t f16_copy_bytes() const { return f16_copy_.size(); }
  size_t kv_bytes() const { return kv_.size(); }
  // Turns CUDA graphs for decode steps off (tests compare both ways).
  void set_graphs(bool on) { use_graphs_ = on; }
  // Tensor-parallel: whether the residual stream lives in the collective's fast buffer.
  bool residual_in_fast_buffer() const { return h_win_ != nullptr; }
  // Tensor-parallel small steps sum the ranks' parts inside the RMSNorm (cuda/tp_sum.h).
  bool sums_in_norm() const { return tp_sum_ != nullptr; }

  // Per-op timing: while on, steps run without graphs and with an event after every op;
  // profile() returns the accumulated time of each op name since profiling was turned on.
  struct OpTime {
    std::string op;
    double ms = 0;
    int calls = 0;
  };
  void set_profiling(bool on);
  std::vector<OpTime> profile() const { return prof_; }

 private:
  struct Layer {
    DevMatrix wq, wk, wv, wo, w_gate, w_up, w_down;
    const float* attn_norm = nullptr;  // (n_embd)
    const float* ffn_norm = nullptr;   // (n_embd)
    const float* bq = nullptr;         // (q_dim) or null
    const float* bk = nullptr;         // (kv_dim) or null
    const float* bv = nullptr;         // (kv_dim) or null
  };
  // One step's device inputs and launch decisions (see plan_step).
  struct Plan {
    int n = 0;  // rows computed (padded to the bucket in graph mode)
    int n_seqs = 0;
    int n_logits = 0;
    int n_decode = 0;  // rows for the decode attention kernel
    int n_split = 1;
    int n_tiles = 0;   // prefill attention tiles
    int n_groups = 0;  // groups of a few rows of one sequence (attention_rows)
    int n_group_split = 1;
    int n_tile_split = 1;  // key splits of each prefill tile (attention_prefill)
    bool matvec = true;    // GEMV path (few rows) or GEMM
    bool tc = false;       // not matvec: tensor-core products (cuda/matmul_tc) where supported
    bool sk = false;       // 2..sk_rows_ rows: skinny products (cuda/matmul_skinny) where supported
    const int32_t *tokens = nullptr, *positions = nullptr, *slots = nullptr, *row_seq = nullptr;
    const int32_t *logit_rows = nullptr, *decode_rows = nullptr, *table_start = nullptr,
                  *tables = nullptr;
    const int4* tiles = nullptr;
    const int4* groups = nullptr;
  };
  struct Input;  // where a linear layer reads its activations

  void upload_weights(const Model& model);
  // Dense f16 copies of the quantized matrices for GEMMs (BackendOptions::f16_copy);
  // `reserve`: device bytes the rest of the backend still needs.
  void make_f16_copies(BackendOptions::F16Copy mode, size_t reserve);
  void allocate_scratch();
  void allocate_kv(const BackendOptions& opt);
  void validate(const Batch& b) const;
  // Either output: logits (n_logits, n_vocab), or cand (resized here) when not null.
  void forward_rows(const Batch& batch, float* logits, LogitCandidates* cand);
  void run(const Batch& b, float* logits, LogitCandidates* cand);  // n_tokens <= cap_tokens_
  // graph_mode: every sequence has rows_per_seq rows; the plan pads to n_seqs_padded of
  // them (rows at the sink block) and fixes every launch shape for any context length.
  Plan plan_step(const Batch& b, bool graph_mode, int n_seqs_padded, int rows_per_seq);
  void ensure_input_capacity(size_t bytes);
  void record(const Plan& p);
  void matvec_jobs(MatvecJob* jobs, int n_jobs, const Input& in, int n);
  // Whether b's f16 rows (its dense copy, or F16 weights) follow a's in memory, so that one
  // GEMM covers both when their outputs are adjacent too.
  // Whether the step's product with W goes through cuda/matmul_skinny.
  bool use_sk(const Plan& p, const DevMatrix& W) const {
    return p.sk && mm_sk_supported(W) && (W.type != DType::F16 || sk_f16_);
  }
  static bool stacked_f16(const DevMatrix& a, const DevMatrix& b, bool outputs_adjacent);
  // Whether gate/up run in mm_sk's SwiGLU mode (writing the down product's input in the
  // formats of glu_out_formats, inside gu_) instead of gate/up then the SwiGLU kernel.
  bool glu_fused(const Plan& p, const Layer& L) const;
  // One-row steps: gate/up and the SwiGLU in one GEMV launch (matvec_glu), written to the
  // formats of glu_out_formats like the skinny products' SwiGLU mode.
  bool mv_glu_fused(const Plan& p, const Layer& L) const;
  // The skinny products' split-K workspace and configuration, the same for every launch.
  void sk_shared(MmSkArgs& s);
  ActOut glu_out_formats(const ActOut& want) const;
  // Whether q/k/v on the skinny products finish with bias, RoPE and the K/V store in
  // their epilogue (llama's Norm pairing) instead of the separate qkv_rope_store kernel.
  bool sk_rope_fused(const Plan& p, const Layer& L) const;
  // row_parallel: wo or w_down, whose tensor-parallel slices are summed by an all-reduce
  // (the GEMV then orders its sums as two ranks would: MatvecJob::k_split, k_offset).
  void linear(const DevMatrix* const* W, float* const* y, int n_jobs, int64_t ldy, bool accumulate,
              const Input& in, const Plan& p, bool row_parallel = false);
  ActOut act_for(const DevMatrix* const* W, int n_jobs, const Plan& p, int64_t k, bool want_f32);
  // Deterministic mode (BackendOptions::deterministic): every product of the step on the
  // GEMV, whatever its rows; any other product kernel must be switched off here.
  void force_gemv(Plan& p) const;
  void all_reduce_h(int n);  // tensor-parallel: sums the residual stream over the ranks
  // Rank 0 of a tensor-parallel group, or a whole model: the backend that computes logits.
  bool wants_logits() const { return !comm_ || comm_->rank() == 0; }

  const Model& model_;
  ModelConfig cfg_;
  Collective* comm_ = nullptr;  // tensor-parallel link (BackendOptions::collective)
  std::string name_;
  int device_ = 0;
  int n_sm_ = 0;
  int block_size_ = 16;
  int kv_blocks_ = 0;  // usable blocks; block kv_blocks_ is the padding rows' sink
  bool use_graphs_ = true;
  // BackendOptions::deterministic: each row's arithmetic independent of the step's other
  // rows (force_gemv, split-K attention for every row with a fixed split count).
  bool deterministic_ = false;
  int matvec_cutoff_ = 16;  // steps of at most this many rows use the GEMV
  int tc_rows_ = 0;         // steps of more rows, up to this many, use cuda/matmul_tc
  int sk_rows_ = 32;        // steps of sk_min_rows_ to this many rows use cuda/matmul_skinny
  int sk_min_rows_ = 2;
  bool sk_f16_ = false;  // F16 weights too (default: with sk_cfg_.f16_wgmma; LLM_CUDA_SK_F16)
  bool sk_rope_ = true;  // sk_rope_fused (LLM_CUDA_SK_ROPE=0: off)
  int sk_rope_rows_ = kSkRegMaxRows;  // up to this many rows (LLM_CUDA_SK_ROPE_ROWS)
  int64_t sk_rowpar_min_k_ = 8192;    // see linear() (LLM_CUDA_SK_ROWPAR_K)
  bool glu_fuse_ = true;              // mm_sk's SwiGLU mode for gate/up (LLM_CUDA_SK_GLU=0: off)
  bool prefill_split_ = true;  // key splits for few prefill tiles (LLM_CUDA_PREFILL_SPLIT=0: off)
  bool tp_order_ = true;       // wo, w_down: sums ordered as over two ranks (linear())
  int prefill_min_rows_ = 33;  // sequences with this many rows in a step use prefill tiles
  // Decode steps of attn_persist_rows_ rows or more: the persistent attention, with
  // attn_persist_bps_ blocks per SM (LLM_CUDA_ATTN_PERSIST_ROWS / _BPS).
  int attn_persist_rows_ = 16;
  // Also from as many rows as fill 2 blocks per SM with (row, head) pairs (record();
  // LLM_CUDA_ATTN_PERSIST_FILL=0: from attn_persist_rows_ only).
  bool attn_persist_fill_ = true;
  int attn_persist_bps_ = 4;
  // Sequences with this many rows or more in a step, below prefill_min_rows_, take
  // attention_rows in groups (LLM_CUDA_ATTN_ROWS=N; 0: never, and never in deterministic
  // mode, whose rows take the split-K kernel alike).
  // Decode attention reads the keys of earlier steps before the PDL wait (AttnArgs::prefetch;
  // LLM_CUDA_ATTN_PREFETCH=0..3). H100 tg128, off / 1: llama-1b draft 1,677-1,688 / 1,724-1,735,
  // 7B Q4_0 469 / 481, F16 195-196 / 198; keys alone (3) gained nothing (PERF.md, run 82).
  int attn_prefetch_ = 1;
  // One-row gate/up + SwiGLU in one launch (mv_glu_fused), which also normalizes its input
  // where it can (LLM_CUDA_MV_GLU: 1; 2 without the norm; 0 off).
  int mv_glu_ = 1;
  // One-row q/k/v products normalize their input themselves where matvec can
  // (matvec_norm_supported; LLM_CUDA_MV_NORM=0: a separate RMSNorm launch). H100, llama-1b
  // draft tg128: 1,958 -> 2,044 tok/s (PERF.md, run 83).
  bool mv_norm_ = true;
  int attn_rows_from_ = 4;    // 3 rows: r(2) 1.15 -> 1.22 at batch 8 on an H100 (PERF.md, run 60)
  MatvecVariant mv_variant_;  // LLM_CUDA_MV_KQ: alternative GEMV kernels (default: none)
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;

  DeviceBuffer weights_;
  DeviceBuffer f16_copy_;  // dense f16 copies of quantized matrices, or empty
  std::vector<Layer> layers_;
  DevMatrix tok_embd_, output_;
  const float* output_norm_ = nullptr;
  DeviceBuffer inv_freq_;  // (rope_dim / 2)

  DeviceBuffer kv_;             // (n_layer, 2, n_slots, n_head_kv, head_dim) f16
  int64_t kv_layer_elems_ = 0;  // halves per layer per K or V

  // Scratch for up to cap_tokens_ rows.
  int cap_tokens_ = 0;
  int cap_logits_ = 0;
  bool verbose_ = true;
  int64_t kmax_ = 0;  // widest activation: max(n_embd, q_dim, n_ff)
  DeviceBuffer h_;    // (cap, n_embd) f32 residual stream
  // Tensor-parallel: (win_rows_, n_embd) f32 in comm_'s fast_buffer() (an NCCL symmetric
  // window), the residual stream of steps of at most win_rows_ rows.
  float* h_win_ = nullptr;
  // Tensor-parallel steps of up to tp_sum_->rows() rows: wo and w_down write their partial
  // sums into its windows and the next RMSNorm sums them (cuda/tp_sum.h), no all-reduce.
  TpSum* tp_sum_ = nullptr;
  int win_rows_ = 0;
  float* hbuf(int n) { return n <= win_rows_ ? h_win_ : h_.as<float>(); }
  DeviceBuffer act_f32_;         // (cap, kmax) f32
  DeviceBuffer act_f16_;         // (cap, kmax) f16
  DeviceBuffer act_qs_;          // (cap, kmax) int8
  DeviceBuffer act_ds_;          // (cap, kmax / 32) float2
  DeviceBuffer qkv_;             // (cap, q_dim + 2 kv_dim) f32
  DeviceBuffer q_rot_;           // (cap, q_dim) f32
  DeviceBuffer rope_cs_;         // (cap, rope_dim / 2) float2 {cos, sin} (rope_cs_table)
  DeviceBuffer attn_;            // (cap, q_dim) f32
  DeviceBuffer gu_;              // (cap, 2 n_ff) f32: gate | up
  DeviceBuffer logits_;          // (cap, n_vocab) f32
  DeviceBuffer split_ws_;        // decode attention partials
  int split_ws_rows_ = 0;        // n_decode * n_split the workspace holds
  DeviceBuffer split_counters_;  // (cap, n_head) arrival counters of the splits
  MmTcConfig tc_cfg_;            // mm_tc launch shape (LLM_CUDA_TC_CTAS, LLM_CUDA_TC_WARPS)
  DeviceBuffer tc_partial_;      // (mm_tc_partial_floats) f32: split-K partial sums of mm_tc
  DeviceBuffer tc_counters_;     // (kTcCounters) int32 arrival counters of mm_tc's row tiles
  MmSkConfig sk_cfg_;            // mm_sk split target (LLM_CUDA_SK_CTAS)
  DeviceBuffer sk_partial_;      // (largest mm_sk_partial_floats) f32: mm_sk split-K sums
  DeviceBuffer sk_counters_;     // (largest mm_sk_counters) int32 arrival counters of mm_sk
  DeviceBuffer dq_;              // f16 dequantization scratch
  size_t dq_elems_ = 0;
  DeviceBuffer cublas_ws_;

  // Candidates (forward_candidates): the selection's workspace, and its output packed as
  // ids (n, k) i32 | vals (n, k) f32 | stats (n) for one copy to cand_host_.
  DeviceBuffer cand_ws_;
  DeviceBuffer cand_dev_;  // (cap_logits, kMaxCandidates) ids + vals, (cap_logits) stats
  PinnedBuffer cand_host_;

  // Step inputs: packed in pinned memory, copied in one transfer.
  PinnedBuffer in_host_;
  DeviceBuffer in_dev_;

  // Graphs by rows per sequence and padded sequence count (run()); steps of up to
  // graph_rows_ rows a sequence take them (LLM_CUDA_GRAPH_ROWS; 1: pure decode only).
  int graph_rows_ = 16;
  struct Graph {
    cudaGraphExec_t exec = nullptr;
  };
  std::map<int, Graph> graphs_;
  void clear_graphs();

  bool profiling_ = false;
  std::vector<cudaEvent_t> prof_events_;
  std::vector<std::string> prof_marks_;  // op that ends at each recorded event
  std::vector<OpTime> prof_;
  void mark(const char* op);
  void collect_profile();
};

}  // namespace llm::cuda
