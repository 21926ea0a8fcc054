// Writes a GGUF file whose tensors are produced as f32 rows and converted to their
// file type on worker threads, chunk by chunk, while the calling thread writes finished
// chunks in file order. Memory stays bounded by a few chunks per thread, whatever the
// size of a tensor (a 128256 x 4096 embedding is 2 GB in f32), so a 13 GB model is
// written with well under 1 GB of memory.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/gguf.h"
#include "quant/formats.h"

namespace llm {

struct TensorSource {
  std::string name;
  DType type = DType::F32;     // the type written
  std::vector<int64_t> shape;  // ggml order: shape[0] is the row length
  // Fills rows [row0, row0 + n) in f32: dst is (n, shape[0]). Called concurrently for
  // different chunks; must depend only on its arguments (results must not depend on
  // the number of threads or the chunking).
  std::function<void(int64_t row0, int64_t n, float* dst)> rows;
  // >= 0: the index of an earlier tensor of the same type and shape (itself not an
  // alias) whose data this one shares: its tensor info gets that tensor's offset
  // (GgufWriter::add_tensor_alias) and `rows` is not called.
  int64_t same_data_as = -1;

  int64_t n_rows() const;
};

// Rows of an existing tensor (any type dequantize_row reads) as f32: the source of a
// tensor being re-typed. The tensor's data must outlive the returned function.
std::function<void(int64_t row0, int64_t n, float* dst)> dequantized_rows(const GgufTensor& t);

struct StreamOptions {
  int n_threads = 0;  // workers; 0 = hardware threads
  bool data = true;   // false: matrices left as zero holes, 1-D tensors written (tests)
  // Called on the writing thread after tensor i (0-based) is complete; for a tensor that
  // shares another's data, right after the data tensor before it.
  std::function<void(size_t i, const TensorSource& t)> on_tensor;
};

// Adds the tensors to w (whose metadata is already set), writes the file at path and
// finishes it. Throws llm::Error on I/O failure and rethrows a worker's exception.
void write_gguf_streamed(GgufWriter& w, const std::vector<TensorSource>& tensors,
                         const std::string& path, const StreamOptions& opt);

}  // namespace llm
