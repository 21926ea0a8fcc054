// Upload-time repacking of GGUF weight blocks into the device layout of DevMatrix
// (cuda/cuda_types.h), and the plane sizes of that layout.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "cuda/cuda_types.h"

namespace llm::cuda {

// Bytes per row of each plane of a (rows, cols) matrix of type t; 0 = plane unused.
struct PlaneLayout {
  int64_t qs = 0, qh = 0, sc = 0, sb = 0;
  int64_t row_total() const { return qs + qh + sc + sb; }
};
// Throws llm::Error when cols does not fit the type's unit (32, or 256 for k-quants).
PlaneLayout plane_layout(DType t, int64_t cols);

// Device bytes of a matrix in the device layout, planes 256-byte aligned.
size_t device_matrix_bytes(DType t, int64_t rows, int64_t cols);

// Points a DevMatrix at `base` (device_matrix_bytes(t, rows, cols) bytes).
DevMatrix make_dev_matrix(DType t, int64_t rows, int64_t cols, void* base);

// Repacks n_rows rows of raw GGUF data (device memory, row_bytes(t, cols) bytes each,
// contiguous) into rows row0..row0+n_rows of W.
void repack_rows(const DevMatrix& W, const void* raw, int64_t row0, int64_t n_rows,
                 cudaStream_t stream);

}  // namespace llm::cuda
