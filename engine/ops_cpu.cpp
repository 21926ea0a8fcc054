#include "engine/ops_cpu.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstring>
#include <thread>
#include <vector>

#include "quant/quants.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define LLM_X86 1
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

namespace llm::cpu {
namespace {

int resolve_threads(int n_threads) {
  if (n_threads > 0) return n_threads;
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return std::max(1u, std::thread::hardware_concurrency());
#endif
}

// --- dot products -------------------------------------------------------------
// Every output element of matmul is one call of the same dot function on the same
// inputs, whatever the batch: results are bit-identical between a batch of 1 and a
// prefill batch, and between sequences batched together or alone.

float dot_generic(const float* a, const float* b, int64_t n) {
  // 8 independent partial sums so the compiler can vectorise without -ffast-math.
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) acc[j] += a[i + j] * b[i + j];
  float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

void f16_to_f32_generic(const uint16_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(src[i]);
}

void bf16_to_f32_generic(const uint16_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(src[i]);
}

#ifdef LLM_X86
__attribute__((target("avx2,fma"))) inline float hsum256(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
  return _mm_cvtss_f32(lo);
}

__attribute__((target("avx2,fma"))) float dot_avx2(const float* a, const float* b, int64_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(),
         s3 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
    s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
  }
  for (; i + 8 <= n; i += 8)
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
  float s = hsum256(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

__attribute__((target("avx2,f16c"))) void f16_to_f32_avx2(const uint16_t* src, float* dst,
                                                          int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i,
                     _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
  for (; i < n; ++i) dst[i] = f16_to_f32(src[i]);
}

__attribute__((target("avx2"))) void bf16_to_f32_avx2(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i)));
    _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(_mm256_slli_epi32(w, 16)));
  }
  for (; i < n; ++i) dst[i] = bf16_to_f32(src[i]);
}
#endif

// The kernels picked once for this CPU.
struct Kernels {
  float (*dot)(const float*, const float*, int64_t) = dot_generic;
  void (*f16)(const uint16_t*, float*, int64_t) = f16_to_f32_generic;
  void (*bf16)(const uint16_t*, float*, int64_t) = bf16_to_f32_generic;
};

const Kernels& kernels() {
  static const Kernels k = [] {
    Kernels r;
#ifdef LLM_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
      r.dot = dot_avx2;
      r.bf16 = bf16_to_f32_avx2;
      // Every AVX2 CPU has F16C, but ask anyway.
      if (__builtin_cpu_supports("f16c")) r.f16 = f16_to_f32_avx2;
    }
#endif
    return r;
  }();
  return k;
}

// Dequantizes one weight row into dst (cols); the plain-float types take a fast path.
void dequant_row(const Kernels& k, DType t, const void* src, float* dst, int64_t cols) {
  switch (t) {
    case DType::F16:
      k.f16(static_cast<const uint16_t*>(src), dst, cols);
      return;
    case DType::BF16:
      k.bf16(static_cast<const uint16_t*>(src), dst, cols);
      return;
    default:
      dequantize_row(t, src, dst, cols);
  }
}

}  // namespace

void embed(const TensorRef& W, const int32_t* tokens, int n, float* out) {
  const Kernels& k = kernels();
  for (int i = 0; i < n; ++i) {
    assert(tokens[i] >= 0 && tokens[i] < W.rows);
    dequant_row(k, W.type, W.row(tokens[i]), out + static_cast<int64_t>(i) * W.cols, W.cols);
  }
}

void rmsnorm(const float* x, const float* w, float* y, int n_rows, int n, float eps) {
  for (int r = 0; r < n_rows; ++r) {
    const float* xr = x + static_cast<int64_t>(r) * n;
    float* yr = y + static_cast<int64_t>(r) * n;
    // Sum of squares in double: it is n terms of one sign, where f32 loses digits.
    double ss = 0;
    for (int i = 0; i < n; ++i) ss += static_cast<double>(xr[i]) * xr[i];
    const float scale = static_cast<float>(1.0 / std::sqrt(ss / n + eps));
    for (int i = 0; i < n; ++i) yr[i] = xr[i] * scale * w[i];
  }
}

void matmul(const TensorRef& W, const float* x, float* y, int n_rows, int n_threads) {
  assert(n_rows >= 0);
  if (n_rows == 0) return;
  const Kernels& k = kernels();
  const int64_t cols = W.cols, rows = W.rows;
  // Weight rows are handled in tiles of kTile: a tile is dequantized once into a
  // thread-local buffer and then dotted with every activation row, so each weight byte is
  // read once per call whatever n_rows is. F32 weights are used in place.
  constexpr int64_t kTile = 8;
  const int64_t n_tiles = (rows + kTile - 1) / kTile;
  // Small products are not worth waking threads for (stories260K has 64 x 64 matrices).
  const double work = static_cast<double>(rows) * cols * n_rows;
  int threads = resolve_threads(n_threads);
  threads = static_cast<int>(std::min<double>(threads, std::max(1.0, work / 32768.0)));
  threads = static_cast<int>(std::min<int64_t>(threads, n_tiles));
  const bool in_place = W.type == DType::F32;

  auto run = [&](int64_t t0, int64_t t1) {
    std::vector<float> buf(in_place ? 0 : static_cast<size_t>(kTile * cols));  // (kTile, cols)
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t r0 = t * kTile, r1 = std::min(rows, r0 + kTile);
      const float* wt;
      if (in_place) {
        wt = static_cast<const float*>(W.row(r0));
      } else {
        for (int64_t r = r0; r < r1; ++r)
          dequant_row(k, W.type, W.row(r), buf.data() + (r - r0) * cols, cols);
        wt = buf.data();
      }
      for (int i = 0; i < n_rows; ++i) {
        const float* xi = x + static_cast<int64_t>(i) * cols;
        float* yi = y + static_cast<int64_t>(i) * rows;
        for (int64_t r = r0; r < r1; ++r) yi[r] = k.dot(wt + (r - r0) * cols, xi, cols);
      }
    }
  };

  if (threads <= 1) {
    run(0, n_tiles);
    return;
  }
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
  {
    const int64_t nt = omp_get_num_threads(), id = omp_get_thread_num();
    run(n_tiles * id / nt, n_tiles * (id + 1) / nt);
  }
#else
  std::vector<std::thread> pool;
  for (int id = 0; id < threads; ++id)
    pool.emplace_back(run, n_tiles * id / threads, n_tiles * (id + 1) / threads);
  for (std::thread& th : pool) th.join();
#endif
}

void add_bias(float* y, const float* b, int n_rows, int n) {
  for (int r = 0; r < n_rows; ++r) {
    float* yr = y + static_cast<int64_t>(r) * n;
    for (int i = 0; i < n; ++i) yr[i] += b[i];
  }
}

void rope(float* x, const int32_t* positions, int n_rows, int n_heads, int head_dim, int rope_dim,
          RopeType type, const float* inv_freq) {
  assert(rope_dim % 2 == 0 && rope_dim <= head_dim);
  const int half = rope_dim / 2;
  std::vector<float> cs(static_cast<size_t>(half)), sn(static_cast<size_t>(half));
  for (int r = 0; r < n_rows; ++r) {
    // The angle in double: pos * inv_freq reaches 1e5 rad at long context, where an f32
    // angle keeps only ~2 correct digits after the reduction mod 2*pi.
    for (int i = 0; i < half; ++i) {
      const double theta = static_cast<double>(positions[r]) * inv_freq[i];
      cs[static_cast<size_t>(i)] = static_cast<float>(std::cos(theta));
      sn[static_cast<size_t>(i)] = static_cast<float>(std::sin(theta));
    }
    for (int h = 0; h < n_heads; ++h) {
      float* v = x + (static_cast<int64_t>(r) * n_heads + h) * head_dim;
      for (int i = 0; i < half; ++i) {
        // Norm rotates neighbours (2i, 2i+1); Neox rotates the two halves (i, i + half).
        const int a = type == RopeType::Norm ? 2 * i : i;
        const int b = type == RopeType::Norm ? 2 * i + 1 : i + half;
        const float x0 = v[a], x1 = v[b];
        const float c = cs[static_cast<size_t>(i)], s = sn[static_cast<size_t>(i)];
        v[a] = x0 * c - x1 * s;
        v[b] = x0 * s + x1 * c;
      }
    }
  }
}

void swiglu(const float* gate, const float* up, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void attention(const float* q, const float* k_cache, const float* v_cache, const Batch& batch,
               int n_head, int n_head_kv, int head_dim, int block_size, float* out, int n_threads) {
  assert(n_head % n_head_kv == 0);
  const int n_tokens = batch.n_tokens();
  const int group = n_head / n_head_kv;
  const int64_t kv_stride = static_cast<int64_t>(n_head_kv) * head_dim;  // floats per slot
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  const Kernels& k = kernels();

  std::vector<int> seq_of(static_cast<size_t>(n_tokens));  // (n_tokens) sequence of each row
  for (int s = 0; s < batch.n_seqs(); ++s)
    for (int r = batch.seq_start[static_cast<size_t>(s)];
         r < batch.seq_start[static_cast<size_t>(s) + 1]; ++r)
      seq_of[static_cast<size_t>(r)] = s;

  // One (row, head) pair per work item; each is computed independently in a fixed order,
  // so batching never changes a result.
  auto one = [&](int64_t item, std::vector<float>& scores) {
    const int r = static_cast<int>(item / n_head), h = static_cast<int>(item % n_head);
    const int kvh = h / group;
    const int32_t* table = batch.block_table(seq_of[static_cast<size_t>(r)]);
    const int n_ctx = batch.positions[static_cast<size_t>(r)] + 1;
    const float* qv = q + (static_cast<int64_t>(r) * n_head + h) * head_dim;
    float* o = out + (static_cast<int64_t>(r) * n_head + h) * head_dim;
    scores.resize(static_cast<size_t>(n_ctx));
    auto slot = [&](int p) -> int64_t {
      return static_cast<int64_t>(table[p / block_size]) * block_size + p % block_size;
    };
    // scores = q·k_p / sqrt(d), then a max-subtracted softmax.
    float mx = -INFINITY;
    for (int p = 0; p < n_ctx; ++p) {
      const float* kv = k_cache + slot(p) * kv_stride + static_cast<int64_t>(kvh) * head_dim;
      const float s = k.dot(qv, kv, head_dim) * scale;
      scores[static_cast<size_t>(p)] = s;
      mx = std::max(mx, s);
    }
    float sum = 0;
    for (int p = 0; p < n_ctx; ++p) {
      const float e = std::exp(scores[static_cast<size_t>(p)] - mx);
      scores[static_cast<size_t>(p)] = e;
      sum += e;
    }
    std::fill(o, o + head_dim, 0.0f);
    for (int p = 0; p < n_ctx; ++p) {
      const float* vv = v_cache + slot(p) * kv_stride + static_cast<int64_t>(kvh) * head_dim;
      const float w = scores[static_cast<size_t>(p)];
      for (int d = 0; d < head_dim; ++d) o[d] += w * vv[d];
    }
    const float inv = 1.0f / sum;
    for (int d = 0; d < head_dim; ++d) o[d] *= inv;
  };

  const int64_t n_items = static_cast<int64_t>(n_tokens) * n_head;
  int64_t work = 0;  // (row, head, position) triples
  for (int r = 0; r < n_tokens; ++r)
    work += static_cast<int64_t>(batch.positions[static_cast<size_t>(r)]) + 1;
  work *= static_cast<int64_t>(n_head) * head_dim;
  int threads = resolve_threads(n_threads);
  threads =
      static_cast<int>(std::min<int64_t>({threads, std::max<int64_t>(1, work / 32768), n_items}));
  if (threads <= 1) {
    std::vector<float> scores;
    for (int64_t it = 0; it < n_items; ++it) one(it, scores);
    return;
  }
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
  {
    std::vector<float> scores;
#pragma omp for schedule(dynamic, 4)
    for (int64_t it = 0; it < n_items; ++it) one(it, scores);
  }
#else
  std::vector<std::thread> pool;
  for (int id = 0; id < threads; ++id)
    pool.emplace_back([&, id] {
      std::vector<float> scores;
      for (int64_t it = id; it < n_items; it += threads) one(it, scores);
    });
  for (std::thread& th : pool) th.join();
#endif
}

}  // namespace llm::cpu
