#include "server/op_profile.h"

#ifdef LLM_HAVE_CUDA
#include <cstdio>
#include <map>
#include <string>

namespace llm {

// Per-op GPU time of profiled steps (CudaBackend::set_profiling), per step, with the
// bandwidth of the weight-reading ops.
void print_op_profile(const Model& model, const std::vector<cuda::CudaBackend::OpTime>& prof,
                      int steps, const char* what) {
  if (steps <= 0) return;
  std::map<std::string, double> op_bytes;  // weight bytes each matrix op reads per step
  for (const LayerWeights& L : model.weights.layers) {
    op_bytes["qkv"] += static_cast<double>(L.wq.bytes + L.wk.bytes + L.wv.bytes);
    op_bytes["qkv+rope+kv_store"] += static_cast<double>(L.wq.bytes + L.wk.bytes + L.wv.bytes);
    op_bytes["rmsnorm+qkv+rope+kv_store"] +=
        static_cast<double>(L.wq.bytes + L.wk.bytes + L.wv.bytes);
    op_bytes["wo"] += static_cast<double>(L.wo.bytes);
    op_bytes["gate+up"] += static_cast<double>(L.w_gate.bytes + L.w_up.bytes);
    op_bytes["gate+up+swiglu"] += static_cast<double>(L.w_gate.bytes + L.w_up.bytes);
    op_bytes["rmsnorm+gate+up+swiglu"] += static_cast<double>(L.w_gate.bytes + L.w_up.bytes);
    op_bytes["down"] += static_cast<double>(L.w_down.bytes);
  }
  op_bytes["output"] = static_cast<double>(model.weights.output.bytes);
  double total = 0;
  for (const auto& o : prof) total += o.ms;
  std::fprintf(stderr,
               "\nper-op GPU time of %s (mean of %d steps; ops queued back to back, no graph, no "
               "PDL overlap):\n",
               what, steps);
  std::fprintf(stderr, "| %-18s | %6s | %10s | %6s | %9s |\n", "op", "calls", "us/step", "share",
               "GB/s");
  for (const auto& o : prof) {
    const double us = 1000.0 * o.ms / steps;
    const auto it = op_bytes.find(o.op);
    std::fprintf(stderr, "| %-18s | %6d | %10.1f | %5.1f%% | %9s |\n", o.op.c_str(),
                 o.calls / steps, us, 100.0 * o.ms / total,
                 it == op_bytes.end()
                     ? ""
                     : std::to_string(static_cast<int>(it->second / (us * 1e-6) / 1e9)).c_str());
  }
  std::fprintf(stderr, "| %-18s | %6s | %10.1f |\n", "total", "", 1000.0 * total / steps);
}

}  // namespace llm
#endif
