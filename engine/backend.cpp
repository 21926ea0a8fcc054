#include "engine/backend.h"

#include "engine/backend_tp.h"

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

std::unique_ptr<Backend> make_backend(const Model& model, const BackendOptions& opt) {
  if (opt.tp != 1) return make_tp_backend(model, opt);
  if (opt.device == DeviceKind::Cuda) return make_cuda_backend(model, opt);
  return make_cpu_backend(model, opt);
}

}  // namespace llm
