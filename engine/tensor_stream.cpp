#include "engine/tensor_stream.h"

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <exception>
#include <mutex>
#include <thread>

#include "engine/error.h"
#include "quant/quants.h"

namespace llm {

int64_t TensorSource::n_rows() const {
  int64_t n = 1;
  for (size_t d = 1; d < shape.size(); ++d) n *= shape[d];
  return n;
}

std::function<void(int64_t, int64_t, float*)> dequantized_rows(const GgufTensor& t) {
  const GgufTensor* src = &t;
  return [src](int64_t row0, int64_t n, float* dst) {
    const int64_t cols = src->shape[0];
    const size_t rb = row_bytes(src->type, cols);
    for (int64_t r = 0; r < n; ++r)
      dequantize_row(src->type, src->data + static_cast<size_t>(row0 + r) * rb, dst + r * cols,
                     cols);
  };
}

namespace {

// About 4 MB of f32 per chunk: large enough to amortise scheduling, small enough that
// 2 chunks per worker stay cheap.
constexpr int64_t kChunkElems = 1 << 20;

struct Chunk {
  size_t tensor;
  int64_t row0, n_rows;
  bool last;  // completes its tensor
};

std::vector<Chunk> make_chunks(const std::vector<TensorSource>& tensors) {
  std::vector<Chunk> chunks;
  for (size_t t = 0; t < tensors.size(); ++t) {
    if (tensors[t].same_data_as >= 0) continue;  // no data of its own
    const int64_t cols = tensors[t].shape[0], rows = tensors[t].n_rows();
    const int64_t per = std::max<int64_t>(1, kChunkElems / cols);
    for (int64_t r = 0; r < rows; r += per)
      chunks.push_back({t, r, std::min(per, rows - r), r + per >= rows});
  }
  return chunks;
}

// Produces one chunk: f32 rows from the source, converted row by row.
std::vector<uint8_t> produce(const TensorSource& t, const Chunk& c) {
  const int64_t cols = t.shape[0];
  const size_t rb = row_bytes(t.type, cols);
  std::vector<float> f(static_cast<size_t>(c.n_rows * cols));  // (n_rows, cols)
  t.rows(c.row0, c.n_rows, f.data());
  std::vector<uint8_t> out(rb * static_cast<size_t>(c.n_rows));  // (n_rows, rb)
  for (int64_t r = 0; r < c.n_rows; ++r)
    quantize_row(t.type, f.data() + r * cols, out.data() + static_cast<size_t>(r) * rb, cols);
  return out;
}

}  // namespace

void write_gguf_streamed(GgufWriter& w, const std::vector<TensorSource>& tensors,
                         const std::string& path, const StreamOptions& opt) {
  for (size_t i = 0; i < tensors.size(); ++i) {
    const TensorSource& t = tensors[i];
    if (t.same_data_as < 0) {
      w.add_tensor(t.name, t.type, t.shape);
      continue;
    }
    const size_t of = static_cast<size_t>(t.same_data_as);
    if (of >= i || tensors[of].same_data_as >= 0 || tensors[of].type != t.type ||
        tensors[of].shape != t.shape)
      throw Error("tensor " + t.name + " cannot share the data of tensor " + std::to_string(of));
    w.add_tensor_alias(t.name, of);
  }
  // on_tensor for tensor i, then for the aliases that follow it in the table.
  auto completed = [&](size_t i) {
    if (!opt.on_tensor) return;
    opt.on_tensor(i, tensors[i]);
    for (size_t k = i + 1; k < tensors.size() && tensors[k].same_data_as >= 0; ++k)
      opt.on_tensor(k, tensors[k]);
  };
  w.begin(path);
  if (!opt.data) {
    for (size_t i = 0; i < tensors.size(); ++i) {
      const TensorSource& t = tensors[i];
      if (t.same_data_as >= 0) continue;  // reported by completed()
      if (t.shape.size() == 1) {  // norms, biases, rope factors: tiny, and checked by loaders
        std::vector<uint8_t> data = produce(t, Chunk{i, 0, 1, true});
        w.write_tensor_data(data.data(), data.size());
      } else {
        w.skip_tensor_data();
      }
      completed(i);
    }
    w.finish();
    return;
  }

  const std::vector<Chunk> chunks = make_chunks(tensors);
  int n_threads =
      opt.n_threads > 0 ? opt.n_threads : static_cast<int>(std::thread::hardware_concurrency());
  n_threads = std::max(1, n_threads);
  const size_t max_in_flight = 2 * static_cast<size_t>(n_threads);

  // Workers claim chunks in order (never more than max_in_flight ahead of the writer)
  // and park results in `done`; this thread writes them in order.
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::vector<uint8_t>> done(chunks.size());
  std::vector<char> ready(chunks.size(), 0);
  size_t next = 0, written = 0;
  bool stop = false;
  std::exception_ptr error;

  auto worker = [&] {
    for (;;) {
      size_t i;
      {
        std::unique_lock lock(mu);
        cv.wait(lock,
                [&] { return stop || next >= chunks.size() || next < written + max_in_flight; });
        if (stop || next >= chunks.size()) return;
        i = next++;
      }
      try {
        std::vector<uint8_t> out = produce(tensors[chunks[i].tensor], chunks[i]);
        std::lock_guard lock(mu);
        done[i] = std::move(out);
        ready[i] = 1;
      } catch (...) {
        std::lock_guard lock(mu);
        if (!error) error = std::current_exception();
        stop = true;
      }
      cv.notify_all();
    }
  };
  std::vector<std::thread> pool;
  for (int k = 0; k < n_threads; ++k) pool.emplace_back(worker);

  try {
    for (size_t i = 0; i < chunks.size(); ++i) {
      std::vector<uint8_t> data;
      {
        std::unique_lock lock(mu);
        cv.wait(lock, [&] { return stop || ready[i]; });
        if (stop) break;
        data = std::move(done[i]);
      }
      w.write_tensor_part(data.data(), data.size());
      if (chunks[i].last) completed(chunks[i].tensor);
      {
        std::lock_guard lock(mu);
        ++written;
      }
      cv.notify_all();
    }
  } catch (...) {
    std::lock_guard lock(mu);
    if (!error) error = std::current_exception();
    stop = true;
  }
  {
    std::lock_guard lock(mu);
    stop = true;
  }
  cv.notify_all();
  for (std::thread& th : pool) th.join();
  if (error) {
    std::remove(path.c_str());  // no half-written model left behind
    std::rethrow_exception(error);
  }
  w.finish();
}

}  // namespace llm
