#include <cfloat>
#include <climits>
#include <string>

#include "cuda/common.cuh"
#include "cuda/topk.h"

namespace llm::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kChunk = 4096;    // logits per select block: 16 KiB of shared memory
constexpr int kMaxChunks = 64;  // so that the merge holds kMaxChunks * kMaxCandidates entries
constexpr size_t kMaxChunkSmem = 200u << 10;  // dynamic shared memory of a select block
constexpr size_t kDefaultSmem = 48u << 10;    // above this a kernel must opt in

// Logits per chunk: kChunk, or more (a multiple of 1024) when the row would need more
// than kMaxChunks chunks.
int chunk_len(int n_vocab) {
  if (ceil_div(n_vocab, kChunk) <= kMaxChunks) return kChunk;
  return static_cast<int>(ceil_div(ceil_div(n_vocab, kMaxChunks), 1024) * 1024);
}

// One chunk of a row: sum = sum of exp(l - max) over its logits (0 when max is -inf).
struct ChunkStats {
  double sum;
  float max;
  int n_finite;
};

// The sampler's sanitising (NaN -> -inf, +inf -> FLT_MAX), and -0 -> +0 so that equal
// floats get equal keys.
__device__ __forceinline__ float sanitise(float l) {
  if (isnan(l)) return -INFINITY;
  if (l == INFINITY) return FLT_MAX;
  return l == 0.0f ? 0.0f : l;
}

// Order-preserving key of a sanitised float: a > b <=> key(a) > key(b). Never 0 (only a
// negative NaN would map there), which the sort uses for padding.
__device__ __forceinline__ uint32_t order_key(float v) {
  const uint32_t b = __float_as_uint(v);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

__device__ __forceinline__ double warp_sum_double(double v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Block-wide sums for kThreads threads; `red` holds 32 values. Every thread gets the sum.
template <class T>
__device__ T block_sum_of(T v, T* red) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  __syncthreads();
  if (lane == 0) red[warp] = v;
  __syncthreads();
  v = lane < kThreads / 32 ? red[lane] : T(0);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

struct SelectSmem {
  unsigned hist[256];  // radix histogram of one digit
  int warp_cnt[kThreads / 32];
  int n_gt;
  unsigned digit;
  int above;
  uint32_t skey[kMaxCandidates];  // the bitonic sort's keys and indices
  int sidx[kMaxCandidates];
};

// The kk best of n entries (kk <= min(n, kMaxCandidates)) in the order "key descending,
// then index ascending", best first, into sel[0..kk) (shared). key(i) reads shared memory.
// Called by all kThreads threads.
//
// A radix select finds T, the kk-th largest key, 8 bits per pass from the top (each pass
// histograms the next digit of the keys that match the digits found so far); the keys
// above T are gathered in any order, then the `remaining` keys equal to T of lowest index
// in index order (a block-wide ballot scan, so that ties keep the lowest ids), and a
// bitonic network sorts the kk.
template <class Key>
__device__ void block_select(const Key& key, int n, int kk, int* sel, SelectSmem& sm) {
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  uint32_t prefix = 0, mask = 0;
  int remaining = kk;  // entries still to take among those whose key matches prefix
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int b = tid; b < 256; b += kThreads) sm.hist[b] = 0;
    __syncthreads();
    for (int i = tid; i < n; i += kThreads) {
      const uint32_t u = key(i);
      if ((u & mask) == prefix) atomicAdd(&sm.hist[(u >> shift) & 255u], 1u);
    }
    __syncthreads();
    if (warp == 0) {
      // Lane l holds digits 255 - 8l .. 248 - 8l, so lanes in order walk down from the top.
      int cnt[8], local = 0;
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        cnt[j] = static_cast<int>(sm.hist[255 - 8 * lane - j]);
        local += cnt[j];
      }
      int incl = local;
#pragma unroll
      for (int o = 1; o < 32; o <<= 1) {
        const int t = __shfl_up_sync(0xffffffffu, incl, o);
        if (lane >= o) incl += t;
      }
      int acc = incl - local;  // entries in the digits above this lane's
      if (acc < remaining && remaining <= incl) {
        for (int j = 0; j < 8; ++j) {
          if (acc + cnt[j] >= remaining) {
            sm.digit = static_cast<unsigned>(255 - 8 * lane - j);
            sm.above = acc;
            break;
          }
          acc += cnt[j];
        }
      }
    }
    __syncthreads();
    prefix |= sm.digit << shift;
    mask |= 255u << shift;
    remaining -= sm.above;
  }
  const uint32_t T = prefix;
  const int n_gt = kk - remaining;  // entries with key > T

  if (tid == 0) sm.n_gt = 0;
  __syncthreads();
  for (int i = tid; i < n; i += kThreads)
    if (key(i) > T) sel[atomicAdd(&sm.n_gt, 1)] = i;
  int base = 0;  // entries equal to T before this round, in index order
  for (int i0 = 0; i0 < n && base < remaining; i0 += kThreads) {
    const int i = i0 + tid;
    const bool eq = i < n && key(i) == T;
    const unsigned ballot = __ballot_sync(0xffffffffu, eq);
    if (lane == 0) sm.warp_cnt[warp] = __popc(ballot);
    __syncthreads();
    int before = 0, total = 0;
#pragma unroll
    for (int w = 0; w < kThreads / 32; ++w) {
      const int c = sm.warp_cnt[w];
      before += w < warp ? c : 0;
      total += c;
    }
    const int rank = base + before + __popc(ballot & ((1u << lane) - 1u));
    if (eq && rank < remaining) sel[n_gt + rank] = i;
    base += total;
    __syncthreads();
  }
  __syncthreads();

  if (warp == 0) {
    for (int j = lane; j < kMaxCandidates; j += 32) {
      const bool real = j < kk;
      sm.sidx[j] = real ? sel[j] : INT_MAX;
      sm.skey[j] = real ? key(sel[j]) : 0u;
    }
    __syncwarp();
    // Bitonic sort of kMaxCandidates (2 x 32) entries, one compare-exchange per lane.
    for (int size = 2; size <= kMaxCandidates; size <<= 1) {
      for (int stride = size >> 1; stride > 0; stride >>= 1) {
        const int i = 2 * stride * (lane / stride) + lane % stride, j = i + stride;
        const bool up = (i & size) == 0;  // this run ends best first
        const uint32_t ki = sm.skey[i], kj = sm.skey[j];
        const int ii = sm.sidx[i], ij = sm.sidx[j];
        const bool j_better = kj > ki || (kj == ki && ij < ii);
        if (j_better == up) {
          sm.skey[i] = kj;
          sm.skey[j] = ki;
          sm.sidx[i] = ij;
          sm.sidx[j] = ii;
        }
        __syncwarp();
      }
    }
    for (int j = lane; j < kk; j += 32) sel[j] = sm.sidx[j];
  }
  __syncthreads();
}
static_assert(kMaxCandidates == 64, "the bitonic sort is one compare-exchange per lane");

// grid (n_chunks, n_rows). logits: (n_rows, n_vocab); ws_*: (n_rows, n_chunks, k) and
// (n_rows, n_chunks). Each block: its chunk's min(k, len) best, best first, its stats.
__global__ void __launch_bounds__(kThreads)
    select_chunks_kernel(const float* __restrict__ logits, int n_vocab, int chunk, int k,
                         float* __restrict__ ws_vals, int32_t* __restrict__ ws_ids,
                         ChunkStats* __restrict__ ws_stats) {
  extern __shared__ float sv[];  // (chunk) this chunk's sanitised logits
  __shared__ SelectSmem sm;
  __shared__ int sel[kMaxCandidates];
  __shared__ float redf[32];
  __shared__ int redi[32];
  __shared__ double redd[32];
  pdl_wait();
  pdl_trigger();
  const int c = blockIdx.x, n_chunks = gridDim.x, row = blockIdx.y;
  const int c0 = c * chunk, len = min(chunk, n_vocab - c0);
  const float* x = logits + static_cast<int64_t>(row) * n_vocab + c0;
  float mx = -INFINITY;
  int nf = 0;
  for (int i = threadIdx.x; i < len; i += kThreads) {
    const float v = sanitise(x[i]);
    sv[i] = v;
    mx = fmaxf(mx, v);
    nf += v > -INFINITY;
  }
  mx = block_max(mx, redf);  // its barriers also publish sv
  nf = block_sum_of(nf, redi);
  double s = 0;
  if (mx > -INFINITY)
    for (int i = threadIdx.x; i < len; i += kThreads) s += static_cast<double>(expf(sv[i] - mx));
  s = block_sum_of(s, redd);

  const int kk = min(k, len);
  block_select([&](int i) { return order_key(sv[i]); }, len, kk, sel, sm);
  const int64_t o = (static_cast<int64_t>(row) * n_chunks + c) * k;
  for (int j = threadIdx.x; j < kk; j += kThreads) {
    ws_vals[o + j] = sv[sel[j]];
    ws_ids[o + j] = c0 + sel[j];
  }
  if (threadIdx.x == 0) {
    ChunkStats& st = ws_stats[static_cast<int64_t>(row) * n_chunks + c];
    st.sum = s;
    st.max = mx;
    st.n_finite = nf;
  }
}

// grid (n_rows). The row's k best of its chunks' lists, and its stats. The lists lie
// chunk after chunk, each best first, so entries of equal logit appear in ascending id
// order: the index order that block_select breaks ties by is the id order.
__global__ void __launch_bounds__(kThreads)
    merge_chunks_kernel(int n_vocab, int chunk, int n_chunks, int k,
                        const float* __restrict__ ws_vals, const int32_t* __restrict__ ws_ids,
                        const ChunkStats* __restrict__ ws_stats, int32_t* __restrict__ ids,
                        float* __restrict__ vals, CandidateStats* __restrict__ stats) {
  __shared__ float mv[kMaxChunks * kMaxCandidates];    // (n) candidate logits
  __shared__ int32_t mi[kMaxChunks * kMaxCandidates];  // (n) their ids
  __shared__ SelectSmem sm;
  __shared__ int sel[kMaxCandidates];
  pdl_wait();
  pdl_trigger();
  const int row = blockIdx.x, tid = threadIdx.x, lane = tid & 31;
  const int last_len = n_vocab - (n_chunks - 1) * chunk;
  const int n = (n_chunks - 1) * k + min(k, last_len);
  const int64_t base = static_cast<int64_t>(row) * n_chunks * k;
  for (int i = tid; i < n; i += kThreads) {
    mv[i] = ws_vals[base + i];
    mi[i] = ws_ids[base + i];
  }
  if (tid < 32) {
    // lse = M + log(sum_c sum_c' * exp(max_c - M)), M the largest chunk max.
    const ChunkStats* cs = ws_stats + static_cast<int64_t>(row) * n_chunks;
    float m = -INFINITY;
    int nf = 0;
    for (int c = lane; c < n_chunks; c += 32) {
      m = fmaxf(m, cs[c].max);
      nf += cs[c].n_finite;
    }
    m = warp_max(m);
    nf = warp_sum_int(nf);
    double s = 0;
    if (m > -INFINITY)
      for (int c = lane; c < n_chunks; c += 32)
        if (cs[c].max > -INFINITY)
          s += cs[c].sum * exp(static_cast<double>(cs[c].max) - static_cast<double>(m));
    s = warp_sum_double(s);
    if (lane == 0) {
      CandidateStats& st = stats[row];
      st.lse = m > -INFINITY ? static_cast<double>(m) + log(s) : -static_cast<double>(INFINITY);
      st.max = m;
      st.n_finite = nf;
    }
  }
  __syncthreads();
  block_select([&](int i) { return order_key(mv[i]); }, n, k, sel, sm);
  for (int j = tid; j < k; j += kThreads) {
    ids[static_cast<int64_t>(row) * k + j] = mi[sel[j]];
    vals[static_cast<int64_t>(row) * k + j] = mv[sel[j]];
  }
}

// Workspace: stats (n_rows, n_chunks) first (8-byte aligned), then vals and ids
// (n_rows, n_chunks, k).
struct WsLayout {
  size_t stats, vals, ids, total;
};
WsLayout ws_layout(int n_rows, int n_chunks, int k) {
  const size_t slots = static_cast<size_t>(n_rows) * n_chunks;
  WsLayout L;
  L.stats = 0;
  L.vals = (slots * sizeof(ChunkStats) + 255) / 256 * 256;
  L.ids = L.vals + (slots * k * 4 + 255) / 256 * 256;
  L.total = L.ids + slots * k * 4;
  return L;
}

}  // namespace

size_t candidates_workspace_bytes(int n_rows, int n_vocab) {
  const int n_chunks = static_cast<int>(ceil_div(n_vocab, chunk_len(n_vocab)));
  return ws_layout(n_rows, n_chunks, kMaxCandidates).total;
}

void select_candidates(const float* logits, int n_rows, int n_vocab, int k, void* workspace,
                       int32_t* ids, float* vals, CandidateStats* stats, cudaStream_t stream) {
  if (k < 1 || k > kMaxCandidates || k > n_vocab)
    throw Error("select_candidates: k = " + std::to_string(k) + " is outside 1.." +
                std::to_string(std::min(kMaxCandidates, n_vocab)));
  if (n_rows <= 0) return;
  const int chunk = chunk_len(n_vocab);
  const int n_chunks = static_cast<int>(ceil_div(n_vocab, chunk));
  const size_t smem = static_cast<size_t>(chunk) * sizeof(float);
  if (smem > kMaxChunkSmem)
    throw Error("select_candidates: a vocabulary of " + std::to_string(n_vocab) +
                " tokens is too large for the device selection");
  if (smem > kDefaultSmem)
    CUDA_CHECK(cudaFuncSetAttribute(
        select_chunks_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  const WsLayout L = ws_layout(n_rows, n_chunks, k);
  uint8_t* ws = static_cast<uint8_t*>(workspace);
  auto* ws_stats = reinterpret_cast<ChunkStats*>(ws + L.stats);
  auto* ws_vals = reinterpret_cast<float*>(ws + L.vals);
  auto* ws_ids = reinterpret_cast<int32_t*>(ws + L.ids);
  launch(select_chunks_kernel, dim3(n_chunks, n_rows), kThreads, smem, stream, logits, n_vocab,
         chunk, k, ws_vals, ws_ids, ws_stats);
  CUDA_CHECK_LAUNCH();
  launch(merge_chunks_kernel, n_rows, kThreads, 0, stream, n_vocab, chunk, n_chunks, k, ws_vals,
         ws_ids, ws_stats, ids, vals, stats);
  CUDA_CHECK_LAUNCH();
}

}  // namespace llm::cuda
