// Test inputs of the CUDA matrix products: weight matrices quantized on the CPU and
// repacked on the device (TestWeight), activations in every format the kernels read
// (TestAct).
#pragma once
#include <cuda_fp16.h>

#include <vector>

#include "cuda/quantize.h"
#include "cuda/qweight.h"
#include "cuda_test_util.h"
#include "engine/model.h"
#include "quant/quants.h"

namespace llm::test {

// A weight matrix quantized on the CPU (the reference's bytes) and repacked on the device.
struct TestWeight {
  std::vector<uint8_t> raw;  // GGUF bytes (rows * row_bytes)
  TensorRef ref;
  cuda::DeviceBuffer dev;
  cuda::DevMatrix W;
  TestWeight(DType t, int64_t rows, int64_t cols, uint32_t seed)
      : TestWeight(t, rows, cols, randn(static_cast<size_t>(rows * cols), seed, 0.5f)) {}
  // v: (rows, cols) f32, quantized to t.
  TestWeight(DType t, int64_t rows, int64_t cols, const std::vector<float>& v) {
    const size_t rb = row_bytes(t, cols);
    raw.resize(rb * static_cast<size_t>(rows));
    for (int64_t r = 0; r < rows; ++r)
      quantize_row(t, v.data() + r * cols, raw.data() + r * rb, cols);
    ref.type = t;
    ref.data = raw.data();
    ref.rows = rows;
    ref.cols = cols;
    ref.bytes = raw.size();
    dev = cuda::DeviceBuffer(cuda::device_matrix_bytes(t, rows, cols));
    cuda::check(cudaMemset(dev.get(), 0xff, dev.size()), "poison weights");
    W = cuda::make_dev_matrix(t, rows, cols, dev.get());
    Dev<uint8_t> staged(raw);
    // Two calls: repacking works on row ranges.
    const int64_t half = rows / 2;
    cuda::repack_rows(W, staged.p(), 0, half, nullptr);
    cuda::repack_rows(W, staged.p() + half * static_cast<int64_t>(rb), half, rows - half, nullptr);
    cuda::check(cudaDeviceSynchronize(), "repack");
  }
  std::vector<float> dequant_cpu() const {
    std::vector<float> out(static_cast<size_t>(ref.rows * ref.cols));
    for (int64_t r = 0; r < ref.rows; ++r)
      dequantize_row(ref.type, ref.row(r), out.data() + r * ref.cols, ref.cols);
    return out;
  }
};

// x (n, k) on the device in the formats the matrix products read.
struct TestAct {
  Dev<float> f32;
  Dev<__half> f16;
  Dev<int8_t> qs;
  Dev<float2> ds;
  cuda::ActQ8 q8() const { return {qs.p(), ds.p()}; }
  TestAct(const std::vector<float>& x, int n, int64_t k)
      : f32(x), f16(x.size()), qs(x.size()), ds(x.size() / 32 + 1) {
    cuda::ActOut o;
    o.f16 = f16.p();
    if (k % 32 == 0) o.q8 = q8();
    cuda::convert_act(f32.p(), n, static_cast<int>(k), o, nullptr);
  }
  // The values the integer dot products actually see: d * q of every q8 block.
  std::vector<float> q8_values() const {
    const std::vector<int8_t> q = qs.get();
    const std::vector<float2> d = ds.get();
    std::vector<float> v(f32.n);
    for (size_t i = 0; i < v.size(); ++i) v[i] = d[i / 32].x * q[i];
    return v;
  }
};

}  // namespace llm::test
