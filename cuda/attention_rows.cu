// Decode attention for a few consecutive rows of one sequence — a speculative step's k + 1
// rows, a short prompt — on the tensor cores. The per-row kernel (attention_decode.cu)
// reads every key and value again for each row and does each row's work on its own; here
// a warp multiplies all the group's rows (up to 16, padded) with a 16-key tile at once:
// S = Q·Kᵀ and O += P·V as mma.sync m16n8k16 (f16 operands, f32 sums), K and V tiles
// copied by cp.async into the warp's two shared-memory stages and read with ldmatrix, the
// online softmax on the accumulator fragments (the FlashAttention-2 scheme).
//
// Block (split, head, group): 4 warps take the split's 16-key tiles in turn; at the end
// they merge through shared memory, and the group's splits merge as the per-row kernel's
// do (partials, the last block to arrive sums them).
#include <algorithm>

#include "cuda/act.cuh"
#include "cuda/attention.h"
#include "cuda/attention_tile.cuh"
#include "cuda/mma.cuh"

namespace llm::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kKeys = 16;  // keys per warp tile

__device__ __forceinline__ uint32_t pack_half2(float lo, float hi) {
  const __half2 h = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&h);
}

// ldmatrix .trans: lane 4 g + t receives, of each 8 x 8 matrix, elements (2t, g) and
// (2t + 1, g) — the B operand of P·V from value rows stored key-major.
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* smem_row) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem_row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s));
}

// Shared memory: per warp, 2 stages of a K and a V tile (16 rows of D + 8 halves: the pad
// spreads ldmatrix's rows over the banks), reused at the end for the warps' states; then
// the group's queries (16 rows of D + 8 halves).
template <int D>
__host__ __device__ constexpr size_t rows_tiles_smem() {
  constexpr size_t tiles = sizeof(__half) * kWarps * 2 * 2 * kKeys * (D + 8);
  constexpr size_t merge = sizeof(float) * kWarps * 16 * (D + 2);
  return tiles > merge ? tiles : merge;
}
template <int D>
__host__ __device__ constexpr size_t rows_smem() {
  return rows_tiles_smem<D>() + sizeof(__half) * 16 * (D + 8);
}

template <int D>
__global__ void __launch_bounds__(kWarps * 32)
    rows_kernel(AttnArgs a, const int4* __restrict__ groups, float* __restrict__ ws,
                int* __restrict__ counters) {
  constexpr int DP = D + 8, NT = D / 8, KS = D / 16;
  extern __shared__ __align__(16) unsigned char smem[];
  const int split = blockIdx.x, n_split = gridDim.x, h = blockIdx.y;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  const int4 grp = groups[blockIdx.z];  // {first row, rows, sequence, first partials row}
  const int row0 = grp.x, G = grp.y;
  const int kvh = h / (a.n_head / a.n_head_kv);
  // Rows are in position order: the last one sees the most keys. Split s covers keys
  // [s * chunk, (s + 1) * chunk), chunk a tile a warp unless the launch has too few splits
  // for that: then a row's key ranges, and so its sums, do not depend on the other rows of
  // its group (where a speculative step's k + 1 rows start).
  const int n_keys = a.positions[row0 + G - 1] + 1;
  constexpr int kSpan = kWarps * kKeys;
  const int chunk = static_cast<int>(ceil_div(ceil_div(n_keys, kSpan), n_split)) * kSpan;
  const int n_eff = static_cast<int>(ceil_div(n_keys, chunk));
  if (split >= n_eff) return;
  const int start = split * chunk, end = min(n_keys, start + chunk);
  const int32_t* table = a.tables + a.table_start[grp.z];
  const int64_t kv_stride = static_cast<int64_t>(a.n_head_kv) * D;
  const __half* kbase = a.k_cache + static_cast<int64_t>(kvh) * D;
  const __half* vbase = a.v_cache + static_cast<int64_t>(kvh) * D;
  // Positions of the lane's two rows (g, g + 8); -1: a padding row, sees no key.
  const int pos_lo = g < G ? a.positions[row0 + g] : -1;
  const int pos_hi = g + 8 < G ? a.positions[row0 + g + 8] : -1;

  __half* kv_s = reinterpret_cast<__half*>(smem) + warp * 2 * 2 * kKeys * DP;
  // Tile copies: lane copies chunks lane, lane + 32, ... of the tile's 16 rows x D / 8
  // 16-byte chunks of K, and the same of V.
  auto issue = [&](int tile0, int stage) {
    __half* ks = kv_s + stage * 2 * kKeys * DP;
    __half* vs = ks + kKeys * DP;
    for (int c = lane; c < kKeys * (D / 8); c += 32) {
      const int r = c / (D / 8), piece = c % (D / 8);
      const int key = tile0 + r;
      const bool valid = key < end;
      const int64_t slot = valid ? static_cast<int64_t>(table[key / a.block_size]) * a.block_size +
                                       key % a.block_size
                                 : 0;
      const uint32_t sk = static_cast<uint32_t>(__cvta_generic_to_shared(ks + r * DP + piece * 8));
      const uint32_t sv = static_cast<uint32_t>(__cvta_generic_to_shared(vs + r * DP + piece * 8));
      cp_async16_zfill(sk, kbase + slot * kv_stride + piece * 8, valid);
      cp_async16_zfill(sv, vbase + slot * kv_stride + piece * 8, valid);
    }
    cp_async_commit();
  };
  const int first = start + warp * kKeys, step = kWarps * kKeys;
  // Keys below the position of the sequence's first row in this step were written by
  // earlier steps: a first tile of only those is copied before the PDL wait (AttnArgs::
  // prefetch); q and this step's K/V rows come from the kernel before.
  const bool early = a.prefetch > 0 && first < end && (row0 == 0 || a.row_seq[row0 - 1] != grp.z) &&
                     min(first + kKeys, end) <= a.positions[row0];
  if (early) issue(first, 0);
  pdl_wait();
  pdl_trigger();
  if (first < end && !early) issue(first, 0);

  // The group's queries, scaled for a base-2 softmax, into shared memory as f16 (float4
  // loads by the whole block; rows past G zero), then as A fragments by ldmatrix.
  __half* q_s = reinterpret_cast<__half*>(smem + rows_tiles_smem<D>());
  const float scale = rsqrtf(static_cast<float>(D)) * kAttnLog2e;
  for (int i = threadIdx.x; i < 16 * (D / 4); i += kWarps * 32) {
    const int r = i / (D / 4), d = (i % (D / 4)) * 4;
    float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (r < G)
      v = *reinterpret_cast<const float4*>(a.q +
                                           (static_cast<int64_t>(row0 + r) * a.n_head + h) * D + d);
    uint2 packed;
    packed.x = pack_half2(v.x * scale, v.y * scale);
    packed.y = pack_half2(v.z * scale, v.w * scale);
    *reinterpret_cast<uint2*>(q_s + r * DP + d) = packed;
  }
  __syncthreads();
  uint32_t qa[KS][4];
#pragma unroll
  for (int ks = 0; ks < KS; ++ks) {
    // Matrices: rows 0-7 / 8-15 (m & 1) x dims lo / hi of the k-step (m >> 1).
    const int mi = lane >> 3;
    ldmatrix_x4(qa[ks], q_s + ((mi & 1) * 8 + (lane & 7)) * DP + ks * 16 + (mi >> 1) * 8);
  }

  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};  // rows g, g + 8
  float o[NT][4];
#pragma unroll
  for (int n = 0; n < NT; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;

  int stage = 0;
  for (int tile0 = first; tile0 < end; tile0 += step, stage ^= 1) {
    if (tile0 + step < end) {
      issue(tile0 + step, stage ^ 1);
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncwarp();
    const __half* ks = kv_s + stage * 2 * kKeys * DP;
    const __half* vs = ks + kKeys * DP;
    // S (16 rows x 16 keys): two 8-key n-tiles.
    float s[2][4] = {{0.0f, 0.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 0.0f, 0.0f}};
#pragma unroll
    for (int kstep = 0; kstep < KS; ++kstep) {
      // Matrices: keys 0-7 / 8-15 (m >> 1) x dims lo / hi of the k-step (m & 1).
      const int mi = lane >> 3;
      uint32_t b[4];
      ldmatrix_x4(b, ks + ((mi >> 1) * 8 + (lane & 7)) * DP + kstep * 16 + (mi & 1) * 8);
      mma_f16(s[0], qa[kstep][0], qa[kstep][1], qa[kstep][2], qa[kstep][3], b[0], b[1]);
      mma_f16(s[1], qa[kstep][0], qa[kstep][1], qa[kstep][2], qa[kstep][3], b[2], b[3]);
    }
    // Causal mask and the tile's row maxima (a row's values sit in the 4 lanes of its quad).
    float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int n = 0; n < 2; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int key = tile0 + n * 8 + 2 * t + (e & 1);
        const int pos = e < 2 ? pos_lo : pos_hi;
        if (key >= end || key > pos) s[n][e] = -INFINITY;
        mx[e >> 1] = fmaxf(mx[e >> 1], s[n][e]);
      }
    float corr[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 1));
      mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 2));
      const float m_new = fmaxf(m[i], mx[i]);
      corr[i] = m[i] == -INFINITY ? 0.0f : exp2f(m[i] - m_new);
      m[i] = m_new;
    }
    float p[2][4];
    l[0] *= corr[0];
    l[1] *= corr[1];
#pragma unroll
    for (int n = 0; n < 2; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        p[n][e] = s[n][e] == -INFINITY ? 0.0f : exp2f(s[n][e] - m[e >> 1]);
        l[e >> 1] += p[n][e];
      }
#pragma unroll
    for (int n = 0; n < NT; ++n) {
      o[n][0] *= corr[0];
      o[n][1] *= corr[0];
      o[n][2] *= corr[1];
      o[n][3] *= corr[1];
    }
    // P as the A fragment of P·V (keys = k), then V's dims in pairs of 8-dim n-tiles.
    const uint32_t pa0 = pack_half2(p[0][0], p[0][1]), pa1 = pack_half2(p[0][2], p[0][3]),
                   pa2 = pack_half2(p[1][0], p[1][1]), pa3 = pack_half2(p[1][2], p[1][3]);
#pragma unroll
    for (int n = 0; n < NT; n += 2) {
      // Matrices: keys 0-7 / 8-15 (m & 1) x dims n*8 / n*8 + 8 (m >> 1), transposed.
      const int mi = lane >> 3;
      uint32_t b[4];
      ldmatrix_x4_trans(b, vs + ((mi & 1) * 8 + (lane & 7)) * DP + (n + (mi >> 1)) * 8);
      mma_f16(o[n], pa0, pa1, pa2, pa3, b[0], b[1]);
      mma_f16(o[n + 1], pa0, pa1, pa2, pa3, b[2], b[3]);
    }
    __syncwarp();  // the stage is overwritten two tiles on
  }
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    l[i] += __shfl_xor_sync(0xffffffffu, l[i], 1);
    l[i] += __shfl_xor_sync(0xffffffffu, l[i], 2);
  }

  // The warps' states through shared memory: st (kWarps, 16, D + 2) = {m, l, o[D]} per row.
  __syncthreads();  // every warp is done with its tiles
  float* st = reinterpret_cast<float*>(smem);
  {
    float* w = st + warp * 16 * (D + 2);
    if (t == 0) {
      w[g * (D + 2)] = m[0];
      w[g * (D + 2) + 1] = l[0];
      w[(g + 8) * (D + 2)] = m[1];
      w[(g + 8) * (D + 2) + 1] = l[1];
    }
#pragma unroll
    for (int n = 0; n < NT; ++n) {
      const int d = n * 8 + 2 * t;
      w[g * (D + 2) + 2 + d] = o[n][0];
      w[g * (D + 2) + 2 + d + 1] = o[n][1];
      w[(g + 8) * (D + 2) + 2 + d] = o[n][2];
      w[(g + 8) * (D + 2) + 2 + d + 1] = o[n][3];
    }
  }
  __syncthreads();
  // Warp w merges rows w, w + 4, ...: lanes take 32 consecutive dims at a time (act_store).
  const ActOut out{a.out, a.out_f16, a.out_q8};
  const int64_t ld = static_cast<int64_t>(a.n_head) * D;
  for (int r = warp; r < G; r += kWarps) {
    float M = -INFINITY;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) M = fmaxf(M, st[(w * 16 + r) * (D + 2)]);
    float wt[kWarps], L = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      const float mw = st[(w * 16 + r) * (D + 2)];
      wt[w] = mw == -INFINITY ? 0.0f : exp2f(mw - M);
      L += wt[w] * st[(w * 16 + r) * (D + 2) + 1];
    }
    float* part = ws + ((static_cast<int64_t>(grp.w) + r) * a.n_head + h) * n_split * (D + 2);
    // v * (1 / L), as the merge of splits below: a row whose group has one split gives the
    // bits it gets in a group with more (their extra splits hold none of its keys).
    const float inv_l = 1.0f / L;
    for (int d = lane; d < D; d += 32) {
      float v = 0.0f;
#pragma unroll
      for (int w = 0; w < kWarps; ++w) v += wt[w] * st[(w * 16 + r) * (D + 2) + 2 + d];
      if (n_eff == 1)
        act_store(out, row0 + r, ld, static_cast<int64_t>(h) * D + d, v * inv_l);
      else
        part[split * (D + 2) + 2 + d] = v;
    }
    if (n_eff > 1 && lane == 0) {
      part[split * (D + 2)] = M;
      part[split * (D + 2) + 1] = L;
    }
  }
  if (n_eff == 1) return;
  // The group's last split to arrive merges all of them, row by row.
  int* counter = counters + static_cast<int64_t>(grp.w) * a.n_head + h;
  if (!last_arrival(counter, n_eff)) return;
  for (int r = warp; r < G; r += kWarps) {
    const float* part = ws + ((static_cast<int64_t>(grp.w) + r) * a.n_head + h) * n_split * (D + 2);
    const float ms = lane < n_eff ? __ldcg(part + lane * (D + 2)) : -INFINITY;
    const float ls = lane < n_eff ? __ldcg(part + lane * (D + 2) + 1) : 0.0f;
    const float mx = warp_max(ms);
    const float w = ms == -INFINITY ? 0.0f : exp2f(ms - mx);
    const float inv_l = 1.0f / warp_sum(w * ls);
    for (int d = lane; d < D; d += 32) {
      float v = 0.0f;
      for (int s = 0; s < n_eff; ++s)
        v += __shfl_sync(0xffffffffu, w, s) * __ldcg(part + s * (D + 2) + 2 + d);
      act_store(out, row0 + r, ld, static_cast<int64_t>(h) * D + d, v * inv_l);
    }
  }
  if (threadIdx.x == 0) *counter = 0;  // ready for the next launch
}

template <int D>
void launch_rows(const AttnArgs& a, const int4* groups, int n_groups, int n_split, float* ws,
                 int* counters, cudaStream_t stream) {
  constexpr size_t smem = rows_smem<D>();
  CUDA_CHECK(cudaFuncSetAttribute(rows_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  static_cast<int>(smem)));
  const dim3 grid(static_cast<unsigned>(n_split), static_cast<unsigned>(a.n_head),
                  static_cast<unsigned>(n_groups));
  launch(rows_kernel<D>, grid, kWarps * 32, smem, stream, a, groups, ws, counters);
  CUDA_CHECK_LAUNCH();
}

}  // namespace

bool attention_rows_supported(int head_dim) {
  return head_dim == 64 || head_dim == 128;
}

void attention_rows(const AttnArgs& a, const int4* groups, int n_groups, int n_split,
                    float* workspace, int* counters, cudaStream_t stream) {
  if (n_groups <= 0) return;
  if (!attention_rows_supported(a.head_dim))
    throw Error("attention_rows: head dimension " + std::to_string(a.head_dim) +
                " is not supported (64 or 128)");
  if (a.out_q8.qs && a.head_dim % 32 != 0)
    throw Error("attention: q8 output needs a head dimension divisible by 32");
  n_split = std::clamp(n_split, 1, kAttnRowsMaxSplit);
  if (a.head_dim == 64)
    launch_rows<64>(a, groups, n_groups, n_split, workspace, counters, stream);
  else
    launch_rows<128>(a, groups, n_groups, n_split, workspace, counters, stream);
}

}  // namespace llm::cuda
