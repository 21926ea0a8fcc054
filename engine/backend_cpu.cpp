#include "engine/backend_cpu.h"

#include <algorithm>
#include <cstring>
#include <thread>

#include "engine/error.h"
#include "engine/ops_cpu.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace llm {

CpuBackend::CpuBackend(const Model& model, const BackendOptions& opt)
    : model_(model), cfg_(model.config), comm_(opt.collective), block_size_(opt.block_size) {
  if (opt.block_size <= 0)
    throw Error("KV block size must be positive, got " + std::to_string(opt.block_size));
  if (opt.kv_tokens < 0) throw Error("KV capacity must not be negative");
  n_threads_ = opt.n_threads;
  deterministic_ = opt.deterministic;
  if (n_threads_ <= 0) {
#ifdef _OPENMP
    n_threads_ = omp_get_max_threads();
#else
    n_threads_ = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
#endif
  }
  const int64_t tokens = opt.kv_tokens > 0 ? opt.kv_tokens : std::min(cfg_.n_ctx_train, 4096);
  const int64_t blocks = (tokens + block_size_ - 1) / block_size_;
  if (blocks > (1 << 30) / block_size_)
    throw Error("KV capacity of " + std::to_string(tokens) + " tokens is too large");
  kv_blocks_ = static_cast<int>(blocks);
  const size_t per_layer = static_cast<size_t>(blocks) * block_size_ * cfg_.kv_dim();
  for (int l = 0; l < cfg_.n_layer; ++l) {
    k_.emplace_back(static_cast<float*>(std::calloc(per_layer, sizeof(float))));
    v_.emplace_back(static_cast<float*>(std::calloc(per_layer, sizeof(float))));
    if (!k_.back() || !v_.back())
      throw Error(
          "cannot allocate the KV cache of " + std::to_string(tokens) + " tokens (" +
          std::to_string(2.0 * cfg_.n_layer * per_layer * sizeof(float) / (1 << 30)).substr(0, 5) +
          " GiB); use a smaller context (-c)");
  }
  for (int i = 0; i < cfg_.rope_dim / 2; ++i)
    inv_freq_.push_back(rope_inv_freq(cfg_, model.weights, i));
}

std::string CpuBackend::name() const {
  // Deterministic or not, the same arithmetic (ops_cpu.cpp's matmul and attention compute
  // each row alike whatever the batch or the threads): the flag only shows here.
  return "cpu (" + std::to_string(n_threads_) + " threads" +
         (deterministic_ ? ", deterministic)" : ")");
}

void CpuBackend::copy_kv_block(int src, int dst) {
  if (src < 0 || src >= kv_blocks_ || dst < 0 || dst >= kv_blocks_)
    throw Error("copy_kv_block: block out of range (pool has " + std::to_string(kv_blocks_) +
                " blocks)");
  if (src == dst) return;
  const size_t n = static_cast<size_t>(block_size_) * cfg_.kv_dim();
  for (int l = 0; l < cfg_.n_layer; ++l) {
    std::copy_n(k_[static_cast<size_t>(l)].get() + src * n, n,
                k_[static_cast<size_t>(l)].get() + dst * n);
    std::copy_n(v_[static_cast<size_t>(l)].get() + src * n, n,
                v_[static_cast<size_t>(l)].get() + dst * n);
  }
}

void CpuBackend::validate(const Batch& b) const { validate_batch(b, cfg_.n_vocab, kv_blocks_, block_size_); }

void CpuBackend::reserve(int n_tokens, int n_logits) {
  if (n_tokens > cap_tokens_) {
    cap_tokens_ = n_tokens;
    const size_t n = static_cast<size_t>(n_tokens);
    x_.resize(n * cfg_.n_embd);
    xb_.resize(n * cfg_.n_embd);
    q_.resize(n * cfg_.q_dim());
    kk_.resize(n * cfg_.kv_dim());
    vv_.resize(n * cfg_.kv_dim());
    att_.resize(n * cfg_.q_dim());
    gate_.resize(n * cfg_.n_ff);
    up_.resize(n * cfg_.n_ff);
  }
  if (n_logits > cap_logits_) {
    cap_logits_ = n_logits;
    out_.resize(static_cast<size_t>(n_logits) * cfg_.n_embd);
  }
}

void CpuBackend::forward(const Batch& batch, float* logits) {
  validate(batch);
  const int n = batch.n_tokens();
  reserve(n, batch.n_logits());
  const ModelConfig& c = cfg_;
  const ModelWeights& w = model_.weights;
  const int E = c.n_embd, KV = c.kv_dim(), F = c.n_ff;
  const int T = n_threads_;
  auto f32 = [](const TensorRef& t) { return static_cast<const float*>(t.data); };

  cpu::embed(w.tok_embd, batch.tokens.data(), n, x_.data());
  for (int l = 0; l < c.n_layer; ++l) {
    const LayerWeights& L = w.layers[static_cast<size_t>(l)];
    float* kc = k_[static_cast<size_t>(l)].get();  // (n_slots, n_head_kv, head_dim)
    float* vc = v_[static_cast<size_t>(l)].get();

    // Attention block: x += wo · attn(rope(wq·xn), rope(wk·xn), wv·xn), xn = rmsnorm(x).
    cpu::rmsnorm(x_.data(), f32(L.attn_norm), xb_.data(), n, E, c.rms_eps);
    cpu::matmul(L.wq, xb_.data(), q_.data(), n, T);
    cpu::matmul(L.wk, xb_.data(), kk_.data(), n, T);
    cpu::matmul(L.wv, xb_.data(), vv_.data(), n, T);
    if (c.has_qkv_bias) {
      cpu::add_bias(q_.data(), f32(L.bq), n, c.q_dim());
      cpu::add_bias(kk_.data(), f32(L.bk), n, KV);
      cpu::add_bias(vv_.data(), f32(L.bv), n, KV);
    }
    cpu::rope(q_.data(), batch.positions.data(), n, c.n_head, c.head_dim, c.rope_dim, c.rope_type,
              inv_freq_.data());
    cpu::rope(kk_.data(), batch.positions.data(), n, c.n_head_kv, c.head_dim, c.rope_dim,
              c.rope_type, inv_freq_.data());
    for (int r = 0; r < n; ++r) {
      const int64_t slot = batch.slots[static_cast<size_t>(r)];
      std::memcpy(kc + slot * KV, kk_.data() + static_cast<int64_t>(r) * KV, sizeof(float) * KV);
      std::memcpy(vc + slot * KV, vv_.data() + static_cast<int64_t>(r) * KV, sizeof(float) * KV);
    }
    cpu::attention(q_.data(), kc, vc, batch, c.n_head, c.n_head_kv, c.head_dim, block_size_,
                   att_.data(), T);
    cpu::matmul(L.wo, att_.data(), xb_.data(), n, T);
    add_branch(n);

    // Feed-forward block: x += w_down · (silu(w_gate·xn) * (w_up·xn)), xn = rmsnorm(x).
    cpu::rmsnorm(x_.data(), f32(L.ffn_norm), xb_.data(), n, E, c.rms_eps);
    cpu::matmul(L.w_gate, xb_.data(), gate_.data(), n, T);
    cpu::matmul(L.w_up, xb_.data(), up_.data(), n, T);
    cpu::swiglu(gate_.data(), up_.data(), gate_.data(), static_cast<int64_t>(n) * F);
    cpu::matmul(L.w_down, gate_.data(), xb_.data(), n, T);
    add_branch(n);
  }

  // Only the rows whose logits are wanted go through the final norm and the (large)
  // output matrix.
  const int nl = batch.n_logits();
  if (nl == 0 || (comm_ && comm_->rank() != 0)) return;  // tensor-parallel: rank 0's job
  for (int i = 0; i < nl; ++i)
    std::memcpy(out_.data() + static_cast<int64_t>(i) * E,
                x_.data() + static_cast<int64_t>(batch.logit_rows[static_cast<size_t>(i)]) * E,
                sizeof(float) * E);
  cpu::rmsnorm(out_.data(), f32(w.output_norm), out_.data(), nl, E, c.rms_eps);
  cpu::matmul(w.output, out_.data(), logits, nl, T);
}

// x += xb. Tensor-parallel, xb is this rank's partial sum: rank 0 adds it to x, the other
// ranks replace x by it, and the all-reduce leaves x + (sum of the parts) on every rank —
// no extra buffer.
void CpuBackend::add_branch(int n) {
  const size_t count = static_cast<size_t>(n) * cfg_.n_embd;
  if (!comm_ || comm_->rank() == 0) {
    for (size_t i = 0; i < count; ++i) x_[i] += xb_[i];
  } else {
    std::copy_n(xb_.data(), count, x_.data());
  }
  if (comm_) comm_->all_reduce_sum(x_.data(), count, nullptr);
}

std::unique_ptr<Backend> make_cpu_backend(const Model& model, const BackendOptions& opt) {
  return std::make_unique<CpuBackend>(model, opt);
}

}  // namespace llm
