// Per-op GPU time of the CUDA backend's steps (`llm bench --profile`): an event after each
// op of a step run without a graph, summed per op name when the step ends.
#include <algorithm>

#include "cuda/backend_cuda.h"
#include "cuda/common.cuh"

namespace llm::cuda {

void CudaBackend::set_profiling(bool on) {
  profiling_ = on;
  prof_.clear();
  if (on && prof_events_.empty()) {
    prof_events_.resize(4096);
    for (cudaEvent_t& e : prof_events_) CUDA_CHECK(cudaEventCreate(&e));
  }
}

void CudaBackend::mark(const char* op) {
  if (!profiling_ || prof_marks_.size() + 1 >= prof_events_.size()) return;
  prof_marks_.push_back(op);
  CUDA_CHECK(cudaEventRecord(prof_events_[prof_marks_.size()], stream_));
}

void CudaBackend::collect_profile() {
  CUDA_CHECK(cudaEventSynchronize(prof_events_[prof_marks_.size()]));
  for (size_t i = 0; i < prof_marks_.size(); ++i) {
    float ms = 0;
    CUDA_CHECK(cudaEventElapsedTime(&ms, prof_events_[i], prof_events_[i + 1]));
    auto it = std::find_if(prof_.begin(), prof_.end(),
                           [&](const OpTime& o) { return o.op == prof_marks_[i]; });
    if (it == prof_.end()) it = prof_.insert(prof_.end(), OpTime{prof_marks_[i], 0.0, 0});
    it->ms += ms;
    it->calls += 1;
  }
  prof_marks_.clear();
}

}  // namespace llm::cuda
