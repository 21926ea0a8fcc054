// Causal attention for prompt tiles: a block takes up to 32 consecutive rows of one
// sequence and one head; K/V tiles of 32 keys are gathered from the paged cache into
// shared memory once and used by all rows. Each warp owns 8 rows: lanes own keys for
// the scores and head dimensions for P·V, with an online softmax per row.
//
// With few tiles (a short chunk after a long cached prefix) the key range is also cut into
// n_split parts of whole key tiles (blockIdx.z), as flash-decoding does: each block writes
// its rows' (max, sum, acc) partials and the tile's last block to finish merges them.
#include "cuda/attention.h"
#include "cuda/common.cuh"

namespace llm::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kRowsPerWarp = kPrefillTileRows / kWarps;  // 8
constexpr int kKeys = 32;
constexpr float kLog2e = 1.4426950408889634f;

// Shared memory: q (32, D) f32, then K and V tiles (32, D + 8) f16 (the pad keeps the
// lane-per-key 16-byte reads free of bank conflicts).
size_t prefill_smem(int D) {
  return sizeof(float) * kPrefillTileRows * D + 2 * sizeof(__half) * kKeys * (D + 8);
}

template <int DPL>
__global__ void __launch_bounds__(kWarps * 32)
    prefill_kernel(AttnArgs a, const int4* __restrict__ tiles, float* __restrict__ ws,
                   int* __restrict__ counters) {
  pdl_wait();
  pdl_trigger();
  extern __shared__ __align__(16) unsigned char smem[];
  const int D = a.head_dim, DP = D + 8;
  float* q_s = reinterpret_cast<float*>(smem);                          // (32, D)
  __half* k_s = reinterpret_cast<__half*>(q_s + kPrefillTileRows * D);  // (32, DP)
  __half* v_s = k_s + kKeys * DP;                                       // (32, DP)

  const int4 tile = tiles[blockIdx.x];
  const int row0 = tile.x, n_rows = tile.y, h = blockIdx.y;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int kvh = h / (a.n_head / a.n_head_kv);
  const float scale = rsqrtf(static_cast<float>(D)) * kLog2e;
  for (int i = threadIdx.x; i < kPrefillTileRows * D; i += blockDim.x) {
    const int r = i / D, d = i % D;
    q_s[i] =
        r < n_rows ? a.q[(static_cast<int64_t>(row0 + r) * a.n_head + h) * D + d] * scale : 0.0f;
  }
  // Rows are in position order: the last row sees the most keys.
  const int n_keys = a.positions[row0 + n_rows - 1] + 1;
  int pos[kRowsPerWarp];
#pragma unroll
  for (int i = 0; i < kRowsPerWarp; ++i) {
    const int r = warp * kRowsPerWarp + i;
    pos[i] = r < n_rows ? a.positions[row0 + r] : -1;  // -1: padding row, sees nothing
  }
  const int32_t* table = a.tables + a.table_start[tile.z];
  const int64_t kv_stride = static_cast<int64_t>(a.n_head_kv) * D;
  const bool owns_dims = lane * DPL < D;

  float m[kRowsPerWarp], l[kRowsPerWarp], acc[kRowsPerWarp][DPL];
#pragma unroll
  for (int i = 0; i < kRowsPerWarp; ++i) {
    m[i] = -INFINITY;
    l[i] = 0.0f;
#pragma unroll
    for (int j = 0; j < DPL; ++j) acc[i][j] = 0.0f;
  }

  // This block's keys: split z of the tile's key tiles (all of them when n_split is 1).
  const int n_split = gridDim.z, z = blockIdx.z;
  const int n_kt = static_cast<int>(ceil_div(n_keys, kKeys));
  const int per = static_cast<int>(ceil_div(n_kt, n_split));
  const int key_begin = min(n_kt, z * per) * kKeys, key_end = min(n_keys, (z + 1) * per * kKeys);

  for (int t0 = key_begin; t0 < key_end; t0 += kKeys) {
    __syncthreads();           // previous tile fully used (and q_s written on the first pass)
    const int chunks = D / 8;  // 16-byte chunks per key row
    for (int i = threadIdx.x; i < kKeys * chunks; i += blockDim.x) {
      const int j = i / chunks, c = i % chunks, key = t0 + j;
      uint4 kv = make_uint4(0, 0, 0, 0), vv = make_uint4(0, 0, 0, 0);
      if (key < key_end) {
        const int64_t slot =
            static_cast<int64_t>(table[key / a.block_size]) * a.block_size + key % a.block_size;
        const int64_t off = slot * kv_stride + static_cast<int64_t>(kvh) * D + c * 8;
        kv = ld16(a.k_cache + off);
        vv = ld16(a.v_cache + off);
      }
      *reinterpret_cast<uint4*>(k_s + j * DP + c * 8) = kv;
      *reinterpret_cast<uint4*>(v_s + j * DP + c * 8) = vv;
    }
    __syncthreads();

    // Scores: lane = key, for the warp's 8 rows.
    const int key = t0 + lane;
    float s[kRowsPerWarp];
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; ++i) s[i] = 0.0f;
    for (int d = 0; d < D; d += 8) {
      const uint4 raw = *reinterpret_cast<const uint4*>(k_s + lane * DP + d);
      const uint32_t w[4] = {raw.x, raw.y, raw.z, raw.w};
      float kf[8];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const float2 f = half2_bits_to_float2(w[i]);
        kf[2 * i] = f.x;
        kf[2 * i + 1] = f.y;
      }
#pragma unroll
      for (int i = 0; i < kRowsPerWarp; ++i) {
        const float4 qa = *reinterpret_cast<const float4*>(q_s + (warp * kRowsPerWarp + i) * D + d);
        const float4 qb =
            *reinterpret_cast<const float4*>(q_s + (warp * kRowsPerWarp + i) * D + d + 4);
        s[i] = fmaf(qa.x, kf[0], s[i]);
        s[i] = fmaf(qa.y, kf[1], s[i]);
        s[i] = fmaf(qa.z, kf[2], s[i]);
        s[i] = fmaf(qa.w, kf[3], s[i]);
        s[i] = fmaf(qb.x, kf[4], s[i]);
        s[i] = fmaf(qb.y, kf[5], s[i]);
        s[i] = fmaf(qb.z, kf[6], s[i]);
        s[i] = fmaf(qb.w, kf[7], s[i]);
      }
    }
    float p[kRowsPerWarp];
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; ++i) {
      const bool vis = key <= pos[i];
      const float si = vis ? s[i] : -INFINITY;
      const float tmax = warp_max(si);
      if (tmax == -INFINITY) {  // no visible key in this tile for this row
        p[i] = 0.0f;
        continue;
      }
      const float m_new = fmaxf(m[i], tmax);
      p[i] = vis ? exp2f(si - m_new) : 0.0f;
      const float corr = exp2f(m[i] - m_new);
      l[i] = l[i] * corr + warp_sum(p[i]);
#pragma unroll
      for (int j = 0; j < DPL; ++j) acc[i][j] *= corr;
      m[i] = m_new;
    }
    // P·V: lane = dims.
    const int n_valid = min(kKeys, key_end - t0);
    for (int j = 0; j < n_valid; ++j) {
      float vf[DPL];
      if (owns_dims) {
        const __half* vp = v_s + j * DP + lane * DPL;
#pragma unroll
        for (int e = 0; e < DPL; ++e) vf[e] = __half2float(vp[e]);
      } else {
#pragma unroll
        for (int e = 0; e < DPL; ++e) vf[e] = 0.0f;
      }
#pragma unroll
      for (int i = 0; i < kRowsPerWarp; ++i) {
        const float pj = __shfl_sync(0xffffffffu, p[i], j);
#pragma unroll
        for (int e = 0; e < DPL; ++e) acc[i][e] = fmaf(pj, vf[e], acc[i][e]);
      }
    }
  }

  if (n_split == 1) {
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; ++i) {
      const int r = warp * kRowsPerWarp + i;
      if (r >= n_rows || !owns_dims) continue;
      float* o = a.out + (static_cast<int64_t>(row0 + r) * a.n_head + h) * D + lane * DPL;
      const float inv = 1.0f / l[i];
#pragma unroll
      for (int e = 0; e < DPL; ++e) o[e] = acc[i][e] * inv;
    }
    return;
  }
  // Partials of this split, (tile, head, split, row of the tile) x {m, l, acc[D]}; an
  // empty range leaves m = -inf, l = 0, acc = 0.
  const int64_t part_stride = static_cast<int64_t>(kPrefillTileRows) * (D + 2);  // one split
  float* part = ws + (static_cast<int64_t>(blockIdx.x) * a.n_head + h) * n_split * part_stride;
#pragma unroll
  for (int i = 0; i < kRowsPerWarp; ++i) {
    float* p = part + z * part_stride + (warp * kRowsPerWarp + i) * (D + 2);
    if (lane == 0) {
      p[0] = m[i];
      p[1] = l[i];
    }
    if (owns_dims) {
#pragma unroll
      for (int e = 0; e < DPL; ++e) p[2 + lane * DPL + e] = acc[i][e];
    }
  }
  // The tile's last block to arrive merges: out = sum_s w_s acc_s / sum_s w_s l_s with
  // w_s = 2^(m_s - max m). Other blocks' partials are read around L1 (__ldcg).
  int* counter = counters + static_cast<int64_t>(blockIdx.x) * a.n_head + h;
  if (!last_arrival(counter, n_split)) return;
  for (int i = 0; i < kRowsPerWarp; ++i) {
    const int r = warp * kRowsPerWarp + i;
    if (r >= n_rows) continue;  // warp-uniform
    const float* pr = part + r * (D + 2);
    const float ms = lane < n_split ? __ldcg(pr + lane * part_stride) : -INFINITY;
    const float ls = lane < n_split ? __ldcg(pr + lane * part_stride + 1) : 0.0f;
    const float mx = warp_max(ms);
    const float w = ms == -INFINITY ? 0.0f : exp2f(ms - mx);
    const float inv = 1.0f / warp_sum(w * ls);
    float v[DPL];
#pragma unroll
    for (int e = 0; e < DPL; ++e) v[e] = 0.0f;
    for (int sp = 0; sp < n_split; ++sp) {
      const float wsp = __shfl_sync(0xffffffffu, w, sp);
      if (owns_dims && wsp != 0.0f) {
#pragma unroll
        for (int e = 0; e < DPL; ++e)
          v[e] = fmaf(wsp, __ldcg(pr + sp * part_stride + 2 + lane * DPL + e), v[e]);
      }
    }
    if (owns_dims) {
      float* o = a.out + (static_cast<int64_t>(row0 + r) * a.n_head + h) * D + lane * DPL;
#pragma unroll
      for (int e = 0; e < DPL; ++e) o[e] = v[e] * inv;
    }
  }
  if (threadIdx.x == 0) *counter = 0;  // ready for the next launch
}

template <int DPL>
void launch_prefill(const AttnArgs& a, const int4* tiles, int n_tiles, int n_split, float* ws,
                    int* counters, cudaStream_t stream) {
  const size_t smem = prefill_smem(a.head_dim);
  if (smem > 48 * 1024)
    CUDA_CHECK(cudaFuncSetAttribute(
        prefill_kernel<DPL>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  const dim3 grid(static_cast<unsigned>(n_tiles), static_cast<unsigned>(a.n_head),
                  static_cast<unsigned>(n_split));
  launch(prefill_kernel<DPL>, grid, kWarps * 32, smem, stream, a, tiles, ws, counters);
  CUDA_CHECK_LAUNCH();
}

}  // namespace

size_t attention_prefill_workspace(int n_tiles, int n_head, int head_dim, int n_split) {
  return n_split <= 1 ? 0
                      : sizeof(float) * static_cast<size_t>(n_tiles) * n_head * n_split *
                            kPrefillTileRows * (head_dim + 2);
}

void attention_prefill(const AttnArgs& a, const int4* tiles, int n_tiles, int n_split,
                       float* workspace, int* counters, cudaStream_t stream) {
  if (n_tiles <= 0) return;
  if (n_split < 1) n_split = 1;
  if (n_split > kMaxPrefillSplit)
    throw Error("attention: at most " + std::to_string(kMaxPrefillSplit) + " prefill splits");
  if (n_split > 1 && (!workspace || !counters))
    throw Error("attention: split prefill needs a workspace and counters");
  if (!attention_head_dim_supported(a.head_dim))
    throw Error("attention: head dimension " + std::to_string(a.head_dim) +
                " is not supported (multiple of 8, <= 256)");
  const int D = a.head_dim;
  if (D <= 32)
    launch_prefill<1>(a, tiles, n_tiles, n_split, workspace, counters, stream);
  else if (D <= 64)
    launch_prefill<2>(a, tiles, n_tiles, n_split, workspace, counters, stream);
  else if (D <= 128)
    launch_prefill<4>(a, tiles, n_tiles, n_split, workspace, counters, stream);
  else
    launch_prefill<8>(a, tiles, n_tiles, n_split, workspace, counters, stream);
}

}  // namespace llm::cuda
