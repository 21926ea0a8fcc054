#include "engine/backend.h"

#include <algorithm>
#include <string>

#include "engine/backend_tp.h"
#include "engine/error.h"

namespace llm {

#ifndef LLM_HAVE_CUDA
std::unique_ptr<Backend> make_cuda_backend(const Model&, const BackendOptions&) {
  throw Error("this llm was built without CUDA (nvcc was not found at build time); use --device cpu");
}
std::unique_ptr<Backend> make_cuda_tp_backend(const Model&, const BackendOptions&) {
  throw Error(
      "this llm was built without CUDA (nvcc was not found at build time); use --device cpu");
}
int cuda_device_count() { return 0; }
#endif

void check_candidates_k(int k, int n_vocab) {
  if (k < 1 || k > kMaxCandidates || k > n_vocab)
    throw Error("forward_candidates: k = " + std::to_string(k) + " is outside 1.." +
                std::to_string(std::min(kMaxCandidates, n_vocab)));
}

void Backend::forward_candidates(const Batch& batch, int k, LogitCandidates& out) {
  const int V = config().n_vocab;
  check_candidates_k(k, V);
  out.full.resize(static_cast<size_t>(batch.n_logits()) * V);
  forward(batch, out.full.data());
  select_candidates_rows(out.full.data(), batch.n_logits(), V, k, out);
}

std::unique_ptr<Backend> make_backend(const Model& model, const BackendOptions& opt) {
  if (opt.tp != 1) return make_tp_backend(model, opt);
  if (opt.device == DeviceKind::Cuda) return make_cuda_backend(model, opt);
  return make_cpu_backend(model, opt);
}

}  // namespace llm
