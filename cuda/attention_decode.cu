// Flash-decoding (split-K) attention for rows that each attend on their own: one block
// per (split, head, row), 4 warps. In a warp, lanes own keys for the scores (one 32-key
// tile at a time, online softmax) and own head dimensions for the P·V accumulation.
// The last block of a (row, head) to finish merges the splits' (max, sum, acc) partials.
#include <type_traits>

#include "cuda/attention.h"
#include "cuda/attention_merge.cuh"

namespace llm::cuda {

bool attention_head_dim_supported(int head_dim) {
  return head_dim > 0 && head_dim % 8 == 0 && head_dim <= 256;
}

size_t attention_decode_workspace(int n_rows, int n_head, int head_dim, int n_split) {
  return sizeof(float) * static_cast<size_t>(n_rows) * n_head * n_split * (head_dim + 2);
}

namespace {

constexpr int kWarps = 4;
constexpr int kMaxSplit = kDecodeMaxSplit;
constexpr float kLog2e = 1.4426950408889634f;

// DPL: head dims per lane in P·V (1, 2, 4 or 8; head_dim % DPL == 0).
//
// The step's inputs (row list, positions, block tables) were copied in before the step's
// first kernel, so the index chain down to the first tile's slots is read before waiting
// for the kernel that wrote q and this step's K/V rows (PDL).
template <int DPL>
__global__ void __launch_bounds__(kWarps * 32)
    decode_split_kernel(AttnArgs a, const int32_t* __restrict__ rows, float* __restrict__ ws,
                        int* __restrict__ counters) {
  __shared__ float q_s[256];
  const int split = blockIdx.x, n_split = gridDim.x, h = blockIdx.y, z = blockIdx.z;
  const int row = rows[z];
  const int D = a.head_dim, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int kvh = h / (a.n_head / a.n_head_kv);
  const int n_keys = a.positions[row] + 1;
  // Only as many splits as give each at least kAttnSplitKeys keys (a graph is captured with
  // the most splits any context needs; short contexts use fewer). Splits cover whole
  // 32-key tiles; a split of 64 keys leaves two of the block's warps without one.
  const int n_eff = min(n_split, static_cast<int>(ceil_div(n_keys, kAttnSplitKeys)));
  if (split >= n_eff) return;
  const int chunk = static_cast<int>(ceil_div(ceil_div(n_keys, n_eff), 32) * 32);
  const int start = split * chunk, end = min(n_keys, start + chunk);
  const int32_t* table = a.tables + a.table_start[a.row_seq[row]];
  auto slot_of = [&](int key) {
    return static_cast<int64_t>(table[key / a.block_size]) * a.block_size + key % a.block_size;
  };
  const int t_first = start + warp * 32;  // the warp's first tile
  const int64_t slot_first = t_first + lane < end ? slot_of(t_first + lane) : 0;
  const int64_t kv_stride = static_cast<int64_t>(a.n_head_kv) * D;  // halves per slot
  const __half* kbase = a.k_cache + static_cast<int64_t>(kvh) * D;
  const __half* vbase = a.v_cache + static_cast<int64_t>(kvh) * D;

  // Keys below `stable` were written by earlier steps; the kernel before this one writes
  // the row's own position (and those of its sequence's other rows, which come before it:
  // then nothing is read early). The first tile's key rows load before the PDL wait, and
  // its value rows are prefetched, so that the wait is followed by arithmetic, not DRAM.
  constexpr int kChunks = DPL >= 4 ? 16 : 4 * DPL;  // 16-byte chunks of a key row per pass
  const int chunks = D / 8;
  uint4 raw[kChunks];  // the whole key row (up to 128 dims) in flight at once
  bool early = false;
  if (a.prefetch > 0 && chunks <= kChunks) {
    const int seq = a.row_seq[row];
    const int stable = row > 0 && a.row_seq[row - 1] == seq ? 0 : n_keys - 1;
    early = t_first + lane < min(end, stable);
    if (early) {
      const __half* kp = kbase + slot_first * kv_stride;
#pragma unroll
      for (int c = 0; c < kChunks; ++c)
        if (c < chunks) raw[c] = ld16(kp + 8 * c);
      const char* vp = reinterpret_cast<const char*>(vbase + slot_first * kv_stride);
      for (int b = 0; a.prefetch <= 2 && b < 2 * D; b += 128) {
        if (a.prefetch == 1)
          asm volatile("prefetch.global.L2 [%0];" ::"l"(vp + b));
        else
          asm volatile("prefetch.global.L1 [%0];" ::"l"(vp + b));
      }
    }
  }
  pdl_wait();
  pdl_trigger();
  const float scale = rsqrtf(static_cast<float>(D)) * kLog2e;  // softmax in base 2
  for (int d = threadIdx.x; d < D; d += blockDim.x)
    q_s[d] = a.q[(static_cast<int64_t>(row) * a.n_head + h) * D + d] * scale;
  __syncthreads();
  const bool owns_dims = lane * DPL < D;
  using VecT =
      typename std::conditional<DPL == 8, uint4,
                                typename std::conditional<DPL == 4, uint2, uint32_t>::type>::type;
  auto load_v = [&](int64_t sj) {
    const __half* vp = vbase + sj * kv_stride + lane * DPL;
    if constexpr (DPL == 8)
      return ld16(vp);
    else if constexpr (DPL == 4)
      return ld8(vp);
    else if constexpr (DPL == 2)
      return ld4(vp);
    else
      return static_cast<uint32_t>(*reinterpret_cast<const uint16_t*>(vp));
  };
  // acc += pj * (the lane's DPL dims of value row v).
  auto add_v = [&](float* acc, float pj, const VecT& v) {
    if constexpr (DPL == 8) {
      const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const float2 f = half2_bits_to_float2(w[i]);
        acc[2 * i] = fmaf(pj, f.x, acc[2 * i]);
        acc[2 * i + 1] = fmaf(pj, f.y, acc[2 * i + 1]);
      }
    } else if constexpr (DPL == 4) {
      const float2 f0 = half2_bits_to_float2(v.x), f1 = half2_bits_to_float2(v.y);
      acc[0] = fmaf(pj, f0.x, acc[0]);
      acc[1] = fmaf(pj, f0.y, acc[1]);
      acc[2] = fmaf(pj, f1.x, acc[2]);
      acc[3] = fmaf(pj, f1.y, acc[3]);
    } else if constexpr (DPL == 2) {
      const float2 f = half2_bits_to_float2(v);
      acc[0] = fmaf(pj, f.x, acc[0]);
      acc[1] = fmaf(pj, f.y, acc[1]);
    } else {
      acc[0] = fmaf(pj, half_bits_to_float(static_cast<uint16_t>(v)), acc[0]);
    }
  };

  float m = -INFINITY, l = 0.0f, acc[DPL];
#pragma unroll
  for (int i = 0; i < DPL; ++i) acc[i] = 0.0f;

  for (int t0 = t_first; t0 < end; t0 += kWarps * 32) {
    const int key = t0 + lane;
    const bool valid = key < end;
    const int64_t slot = !valid ? 0 : t0 == t_first ? slot_first : slot_of(key);
    const int n_valid = min(32, end - t0);
    float s = -INFINITY;
    if (valid) {
      const __half* kp = kbase + slot * kv_stride;
      float dot[4] = {0.0f, 0.0f, 0.0f, 0.0f};  // four chains: latency, not throughput
      for (int c0 = 0; c0 < chunks; c0 += kChunks) {
        if (!early) {
#pragma unroll
          for (int c = 0; c < kChunks; ++c)
            if (c0 + c < chunks) raw[c] = ld16(kp + 8 * (c0 + c));
        }
        early = false;  // the early loads were the first tile's (one pass)
#pragma unroll
        for (int c = 0; c < kChunks; ++c) {
          if (c0 + c >= chunks) break;
          const uint32_t w[4] = {raw[c].x, raw[c].y, raw[c].z, raw[c].w};
#pragma unroll
          for (int i = 0; i < 4; ++i) {
            const float2 f = half2_bits_to_float2(w[i]);
            dot[i] = fmaf(q_s[8 * (c0 + c) + 2 * i], f.x, dot[i]);
            dot[i] = fmaf(q_s[8 * (c0 + c) + 2 * i + 1], f.y, dot[i]);
          }
        }
      }
      s = (dot[0] + dot[1]) + (dot[2] + dot[3]);
    }
    const float m_new = fmaxf(m, warp_max(s));  // finite: key t0 is valid
    const float p = valid ? exp2f(s - m_new) : 0.0f;
    const float corr = exp2f(m - m_new);
    l = l * corr + warp_sum(p);
#pragma unroll
    for (int i = 0; i < DPL; ++i) acc[i] *= corr;
    m = m_new;
    // P·V in groups of 8 keys: the 8 value loads go out before their FMAs (a whole 32-key
    // tile at once, and groups of 16, measured slower on an H100: PERF.md).
    constexpr int kGroup = 8;
    for (int j0 = 0; j0 < n_valid; j0 += kGroup) {
      VecT vr[kGroup];
#pragma unroll
      for (int g = 0; g < kGroup; ++g) {
        const int j = j0 + g;
        const int64_t sj = __shfl_sync(0xffffffffu, slot, j & 31);
        vr[g] = VecT{};
        if (owns_dims && j < n_valid) vr[g] = load_v(sj);
      }
#pragma unroll
      for (int g = 0; g < kGroup; ++g) {
        const int j = j0 + g;
        float pj = __shfl_sync(0xffffffffu, p, j & 31);
        if (j >= n_valid) pj = 0.0f;
        add_v(acc, pj, vr[g]);
      }
    }
  }

  __shared__ float acc_s[kWarps * 256];
  decode_block_finish<kWarps, DPL>(a, ws, counters, acc_s, row, h, z, split, n_split, n_eff, m, l,
                                   acc);
}

}  // namespace

void attention_decode(const AttnArgs& a, const int32_t* rows, int n_rows, int n_split,
                      float* workspace, int* counters, cudaStream_t stream) {
  if (n_rows <= 0) return;
  if (!attention_head_dim_supported(a.head_dim))
    throw Error("attention: head dimension " + std::to_string(a.head_dim) +
                " is not supported (multiple of 8, <= 256)");
  if (n_split < 1) n_split = 1;
  if (n_split > kMaxSplit) n_split = kMaxSplit;
  if (a.out_q8.qs && a.head_dim % 32 != 0)
    throw Error("attention: q8 output needs a head dimension divisible by 32");
  const dim3 grid(static_cast<unsigned>(n_split), static_cast<unsigned>(a.n_head),
                  static_cast<unsigned>(n_rows));
  const int dpl = a.head_dim <= 32 ? 1 : a.head_dim <= 64 ? 2 : a.head_dim <= 128 ? 4 : 8;
#define LLM_ATTN(DPL) \
  launch(decode_split_kernel<DPL>, grid, kWarps * 32, 0, stream, a, rows, workspace, counters)
  switch (dpl) {
    case 1:
      LLM_ATTN(1);
      break;
    case 2:
      LLM_ATTN(2);
      break;
    case 4:
      LLM_ATTN(4);
      break;
    default:
      LLM_ATTN(8);
      break;
  }
#undef LLM_ATTN
  CUDA_CHECK_LAUNCH();
}

}  // namespace llm::cuda
