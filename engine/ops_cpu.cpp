#include "engine/ops_cpu.h"

#include <algorithm>
#include <atomic>
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
// Every output element of matmul is computed by the same sequence of float operations
// whatever the batch, the tiling or the thread count: the 4-row kernels below repeat the
// single-row kernel's accumulation exactly (two 8-lane accumulators over 16-element
// steps, one 8-element step, a fixed horizontal sum, then a scalar tail), and the f16 /
// bf16 kernels convert exactly. So results are bit-identical between a batch of 1 and a
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

// out[k] = w[k] · x for 4 weight rows.
void dot4_generic(const float* const w[4], const float* x, int64_t n, float out[4]) {
  for (int k = 0; k < 4; ++k) out[k] = dot_generic(w[k], x, n);
}

void f16_to_f32_generic(const uint16_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(src[i]);
}

void bf16_to_f32_generic(const uint16_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(src[i]);
}

#ifdef LLM_X86
#define LLM_AVX2 __attribute__((target("avx2,fma,f16c")))

LLM_AVX2 inline float hsum256(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
  return _mm_cvtss_f32(lo);
}

// Loads 8 weights of each storage type as floats (exact conversions).
struct LoadF32 {
  using T = float;
  LLM_AVX2 static __m256 load(const float* p) { return _mm256_loadu_ps(p); }
  static float one(const float* p) { return *p; }
};
struct LoadF16 {
  using T = uint16_t;
  LLM_AVX2 static __m256 load(const uint16_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static float one(const uint16_t* p) { return f16_to_f32(*p); }
};
struct LoadBF16 {
  using T = uint16_t;
  LLM_AVX2 static __m256 load(const uint16_t* p) {
    __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
  }
  static float one(const uint16_t* p) { return bf16_to_f32(*p); }
};

template <class L>
LLM_AVX2 float dot_avx2(const typename L::T* w, const float* x, int64_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    s0 = _mm256_fmadd_ps(L::load(w + i), _mm256_loadu_ps(x + i), s0);
    s1 = _mm256_fmadd_ps(L::load(w + i + 8), _mm256_loadu_ps(x + i + 8), s1);
  }
  if (i + 8 <= n) {
    s0 = _mm256_fmadd_ps(L::load(w + i), _mm256_loadu_ps(x + i), s0);
    i += 8;
  }
  float s = hsum256(_mm256_add_ps(s0, s1));
  // Explicit fma: the tails of dot and dot4 must round alike whatever the compiler
  // would contract.
  for (; i < n; ++i) s = std::fma(L::one(w + i), x[i], s);
  return s;
}

// Four dot_avx2 at once, sharing the loads of x: the same operations per output.
template <class L>
LLM_AVX2 void dot4_avx2(const typename L::T* const w[4], const float* x, int64_t n, float out[4]) {
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), b0 = _mm256_setzero_ps(),
         b1 = _mm256_setzero_ps(), c0 = _mm256_setzero_ps(), c1 = _mm256_setzero_ps(),
         d0 = _mm256_setzero_ps(), d1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256 x0 = _mm256_loadu_ps(x + i), x1 = _mm256_loadu_ps(x + i + 8);
    a0 = _mm256_fmadd_ps(L::load(w[0] + i), x0, a0);
    a1 = _mm256_fmadd_ps(L::load(w[0] + i + 8), x1, a1);
    b0 = _mm256_fmadd_ps(L::load(w[1] + i), x0, b0);
    b1 = _mm256_fmadd_ps(L::load(w[1] + i + 8), x1, b1);
    c0 = _mm256_fmadd_ps(L::load(w[2] + i), x0, c0);
    c1 = _mm256_fmadd_ps(L::load(w[2] + i + 8), x1, c1);
    d0 = _mm256_fmadd_ps(L::load(w[3] + i), x0, d0);
    d1 = _mm256_fmadd_ps(L::load(w[3] + i + 8), x1, d1);
  }
  if (i + 8 <= n) {
    const __m256 x0 = _mm256_loadu_ps(x + i);
    a0 = _mm256_fmadd_ps(L::load(w[0] + i), x0, a0);
    b0 = _mm256_fmadd_ps(L::load(w[1] + i), x0, b0);
    c0 = _mm256_fmadd_ps(L::load(w[2] + i), x0, c0);
    d0 = _mm256_fmadd_ps(L::load(w[3] + i), x0, d0);
    i += 8;
  }
  out[0] = hsum256(_mm256_add_ps(a0, a1));
  out[1] = hsum256(_mm256_add_ps(b0, b1));
  out[2] = hsum256(_mm256_add_ps(c0, c1));
  out[3] = hsum256(_mm256_add_ps(d0, d1));
  for (; i < n; ++i)
    for (int k = 0; k < 4; ++k) out[k] = std::fma(L::one(w[k] + i), x[i], out[k]);
}

LLM_AVX2 void f16_to_f32_avx2(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, LoadF16::load(src + i));
  for (; i < n; ++i) dst[i] = f16_to_f32(src[i]);
}

LLM_AVX2 void bf16_to_f32_avx2(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, LoadBF16::load(src + i));
  for (; i < n; ++i) dst[i] = bf16_to_f32(src[i]);
}
#endif

// The kernels picked once for this CPU. The 16-bit ones (null without AVX2) read f16 /
// bf16 weights in place; they must agree bit for bit with converting first and using
// the f32 kernels.
struct Kernels {
  float (*dot)(const float*, const float*, int64_t) = dot_generic;
  void (*dot4)(const float* const[4], const float*, int64_t, float[4]) = dot4_generic;
  void (*dot4_f16)(const uint16_t* const[4], const float*, int64_t, float[4]) = nullptr;
  void (*dot4_bf16)(const uint16_t* const[4], const float*, int64_t, float[4]) = nullptr;
  void (*f16)(const uint16_t*, float*, int64_t) = f16_to_f32_generic;
  void (*bf16)(const uint16_t*, float*, int64_t) = bf16_to_f32_generic;
};

const Kernels& kernels() {
  static const Kernels k = [] {
    Kernels r;
#ifdef LLM_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
        __builtin_cpu_supports("f16c")) {
      r.dot = dot_avx2<LoadF32>;
      r.dot4 = dot4_avx2<LoadF32>;
      r.dot4_f16 = dot4_avx2<LoadF16>;
      r.dot4_bf16 = dot4_avx2<LoadBF16>;
      r.f16 = f16_to_f32_avx2;
      r.bf16 = bf16_to_f32_avx2;
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
      dequantize_row(t, src, dst, cols);  // picks quant/'s AVX2 decoders at run time
  }
}

// y[i * rows + r] for r in [r0, r1) and every activation row i, from weight rows held as
// f32 at w[r - r0] (cols each).
void tile_dot(const Kernels& k, const float* w, int64_t r0, int64_t r1, int64_t cols,
              const float* x, float* y, int n_rows, int64_t rows) {
  for (int i = 0; i < n_rows; ++i) {
    const float* xi = x + static_cast<int64_t>(i) * cols;
    float* yi = y + static_cast<int64_t>(i) * rows;
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4) {
      const float* wp[4] = {w + (r - r0) * cols, w + (r + 1 - r0) * cols, w + (r + 2 - r0) * cols,
                            w + (r + 3 - r0) * cols};
      k.dot4(wp, xi, cols, yi + r);
    }
    for (; r < r1; ++r) yi[r] = k.dot(w + (r - r0) * cols, xi, cols);
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
  // Weight rows go in tiles of kTile. A quantized tile is dequantized once into a
  // thread-local buffer (kTile x cols f32, L2-sized) and dotted with every activation
  // row, so each weight byte is read once per call whatever n_rows is. F32 weights are
  // used in place; f16 / bf16 ones are read in place for the few-row (decode) case,
  // where converting first would double the passes over the weights.
  const int64_t kTile = n_rows <= 2 ? 4 : 16;  // decode: a tile small enough for L1
  const int64_t n_tiles = (rows + kTile - 1) / kTile;
  // Small products are not worth waking threads for (stories260K has 64 x 64 matrices).
  const double work = static_cast<double>(rows) * cols * n_rows;
  int threads = resolve_threads(n_threads);
  threads = static_cast<int>(std::min<double>(threads, std::max(1.0, work / 65536.0)));
  threads = static_cast<int>(std::min<int64_t>(threads, n_tiles));
  const bool in_place_16 = n_rows <= 2 && ((W.type == DType::F16 && k.dot4_f16) ||
                                           (W.type == DType::BF16 && k.dot4_bf16));

  auto tile = [&](int64_t t, std::vector<float>& buf) {
    const int64_t r0 = t * kTile, r1 = std::min(rows, r0 + kTile);
    if (W.type == DType::F32) {
      tile_dot(k, static_cast<const float*>(W.row(r0)), r0, r1, cols, x, y, n_rows, rows);
      return;
    }
    if (in_place_16) {
      auto dot4 = W.type == DType::F16 ? k.dot4_f16 : k.dot4_bf16;
      float tmp[4];
      for (int i = 0; i < n_rows; ++i) {
        const float* xi = x + static_cast<int64_t>(i) * cols;
        float* yi = y + static_cast<int64_t>(i) * rows;
        for (int64_t r = r0; r < r1; r += 4) {
          // A partial group repeats its last row; only the valid outputs are kept.
          const uint16_t* wp[4];
          for (int j = 0; j < 4; ++j)
            wp[j] = static_cast<const uint16_t*>(W.row(std::min(r + j, r1 - 1)));
          dot4(wp, xi, cols, tmp);
          for (int j = 0; j < 4 && r + j < r1; ++j) yi[r + j] = tmp[j];
        }
      }
      return;
    }
    buf.resize(static_cast<size_t>(kTile * cols));  // (kTile, cols)
    for (int64_t r = r0; r < r1; ++r)
      dequant_row(k, W.type, W.row(r), buf.data() + (r - r0) * cols, cols);
    tile_dot(k, buf.data(), r0, r1, cols, x, y, n_rows, rows);
  };

  if (threads <= 1) {
    std::vector<float> buf;
    for (int64_t t = 0; t < n_tiles; ++t) tile(t, buf);
    return;
  }
  // Tiles are handed out dynamically: on a shared machine a thread may lose its core,
  // and a static split would make everyone wait for it.
  std::atomic<int64_t> next{0};
  const int64_t chunk = std::max<int64_t>(1, n_tiles / (static_cast<int64_t>(threads) * 8));
  auto worker = [&] {
    std::vector<float> buf;
    for (int64_t t0; (t0 = next.fetch_add(chunk)) < n_tiles;)
      for (int64_t t = t0; t < std::min(n_tiles, t0 + chunk); ++t) tile(t, buf);
  };
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
  worker();
#else
  std::vector<std::thread> pool;
  for (int id = 0; id < threads; ++id) pool.emplace_back(worker);
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
