#include "engine/backend.h"

namespace llm {

#ifndef LLM_HAVE_CUDA
std::unique_ptr<Backend> make_cuda_backend(const Model&, const BackendOptions&) {
  throw Error("this llm was built without CUDA (nvcc was not found at build time); use --device cpu");
}
int cuda_device_count() { return 0; }
#endif

std::unique_ptr<Backend> make_backend(const Model& model, const BackendOptions& opt) {
  if (opt.device == DeviceKind::Cuda) return make_cuda_backend(model, opt);
  return make_cpu_backend(model, opt);
}

}  // namespace llm
