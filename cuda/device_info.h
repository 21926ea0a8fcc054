// The two ceilings of a GPU, measured rather than taken from the datasheet: device-to-
// device copy bandwidth (bytes read + written per second) and the f16 tensor-core GEMM
// rate of cuBLAS on random data. `llm bench` reports speeds as a share of these.
#pragma once
#include <cstddef>
#include <string>

namespace llm::cuda {

struct DeviceCeiling {
  std::string name;        // "NVIDIA H100 80GB HBM3"
  double copy_gbs = 0;     // GB/s (1e9 bytes), read + write
  double gemm_tflops = 0;  // f16 in, f32 accumulate, 8192^3
  size_t memory_total = 0;
};

DeviceCeiling measure_device_ceiling(int gpu);

}  // namespace llm::cuda
