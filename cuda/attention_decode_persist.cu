// Decode attention for steps of many rows as a persistent grid: 1 to 4 blocks per SM, each
// taking every G-th (row, head) item of the launch and streaming the key and value tiles of
// all its items, one after the other, through a ring of S shared-memory stages (cp.async,
// S - 1 tiles of 32 keys in flight; the next item's tiles load while the current item's
// last ones are worked on). Against attention_decode.cu's block per (split, head, row),
// whose warps each wait on a key pass and then on groups of 8 value rows, it keeps more of
// the cache in flight per SM, has no second wave, and reads the block table S - 1 tiles
// ahead by cp.async. (A block per item with the same staging, measured too, lost to this
// at 16 rows and to 4 blocks per SM here at 32 and 64: PERF.md.) Each warp takes 8 keys of
// every tile (attention_tile.cuh); an item's warps are merged at its last tile.
#include <type_traits>

#include "cuda/attention.h"
#include "cuda/attention_merge.cuh"
#include "cuda/attention_tile.cuh"
#include "cuda/mma.cuh"

namespace llm::cuda {
namespace {

constexpr int kWarps = 4, kThreads = 32 * kWarps;
constexpr int kTile = 32;                     // keys per tile
constexpr int kKeysPerWarp = kTile / kWarps;  // 8
constexpr int kMaxItems = 64;                 // (row, head) items per block

// Stages for 1 to 4 blocks per SM (H100: 227 KiB of shared memory per SM).
constexpr int stages_for(int blocks_per_sm) {
  return blocks_per_sm == 1 ? 12 : blocks_per_sm == 2 ? 6 : blocks_per_sm == 3 ? 4 : 3;
}

template <int D, int S>
constexpr size_t persist_smem() {
  return 2 * sizeof(__half) * S * kTile * D + sizeof(float) * S * D;  // K, V and q stages
}

// Item j of the block, tile t of it.
struct Cursor {
  int j = 0, t = 0;
};

template <int D, int S>
__global__ void __launch_bounds__(kThreads)
    decode_persist_kernel(AttnArgs a, const int32_t* __restrict__ rows, int n_items) {
  static_assert(D == 64 || D == 128, "head_dim 64 or 128");
  constexpr int DPL = D / 32;                     // head dims per lane in P·V
  constexpr int CH = D / 8;                       // 16-byte pieces per key row
  constexpr int kCopies = kTile * CH / kThreads;  // per thread and tile, K and V each
  extern __shared__ __align__(16) unsigned char smem[];
  __half* k_s = reinterpret_cast<__half*>(smem);               // (S, kTile, D)
  __half* v_s = k_s + S * kTile * D;                           // (S, kTile, D)
  float* q_s = reinterpret_cast<float*>(v_s + S * kTile * D);  // (S, D): the item's query
  // Block-table entry of each key of a tile, for 2S tiles in turn (tile U at U % 2S).
  __shared__ int tab_s[2 * S][kTile];
  __shared__ int it_row[kMaxItems], it_h[kMaxItems], it_keys[kMaxItems], it_table[kMaxItems];
  // Keys below it_stable were written by earlier steps (AttnArgs::prefetch): the position of
  // the first of the row's sequence's rows in this step, or 0.
  __shared__ int it_stable[kMaxItems];
  __shared__ float acc_s[kWarps * D];

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int G = gridDim.x, b = blockIdx.x;
  const int n_my = (n_items - b + G - 1) / G;  // items b, b + G, b + 2G, ...
  // The items' index chains, a thread each (step inputs: before the PDL wait).
  for (int j = threadIdx.x; j < n_my; j += kThreads) {
    const int i = b + j * G, row = rows[i / a.n_head];
    it_row[j] = row;
    it_h[j] = i % a.n_head;
    it_keys[j] = a.positions[row] + 1;
    const int seq = a.row_seq[row];
    it_table[j] = a.table_start[seq];
    if (a.prefetch > 0) {
      // The sequence's rows are consecutive and in position order; up to 16 looked at.
      int before = 0;
      bool found = false;
#pragma unroll
      for (int d = 1; d <= 16; ++d) {
        const bool same = row - d >= 0 && a.row_seq[row - d] == seq;
        if (!found && same) before = d;
        found = found || !same;
      }
      it_stable[j] = found ? a.positions[row] - before : 0;
    } else {
      it_stable[j] = 0;
    }
  }
  __syncthreads();
  auto tiles_of = [&](int j) { return static_cast<int>(ceil_div(it_keys[j], kTile)); };
  auto advance = [&](Cursor& c) {
    if (++c.t == tiles_of(c.j)) {
      c.t = 0;
      ++c.j;
    }
  };
  int total = 0;  // tiles of all the block's items
  for (int j = 0; j < n_my; ++j) total += tiles_of(j);
  const int bs = a.block_size;
  // The table entries of a tile's keys are copied into tab_s S - 1 tiles before the tile's
  // own copies are issued: with those of tile T + S - 1 (cp.async, same group), so that
  // waiting for tile T's group also delivers them. The fetch cursor (warp 0's lanes, a key
  // each) walks the tiles in that lead. Those of the first S - 1 tiles: loaded here (step
  // inputs, before the PDL wait), all loads first.
  Cursor fc;
  if (warp == 0) {
    int entry[S - 1];
    const int32_t* src[S - 1];
#pragma unroll
    for (int u = 0; u < S - 1; ++u) {
      const int key = u < total ? fc.t * kTile + lane : 0;
      src[u] = u < total && key < it_keys[fc.j] ? a.tables + it_table[fc.j] + key / bs : nullptr;
      if (u < total) advance(fc);
    }
#pragma unroll
    for (int u = 0; u < S - 1; ++u) entry[u] = src[u] ? *src[u] : 0;
#pragma unroll
    for (int u = 0; u < S - 1; ++u) tab_s[u][lane] = entry[u];
  }
  __syncthreads();

  const int64_t kv_stride = static_cast<int64_t>(a.n_head_kv) * D;  // halves per slot
  const int group = a.n_head / a.n_head_kv;
  const uint32_t ks_addr = static_cast<uint32_t>(__cvta_generic_to_shared(k_s));
  const uint32_t vs_addr = static_cast<uint32_t>(__cvta_generic_to_shared(v_s));
  const uint32_t qs_addr = static_cast<uint32_t>(__cvta_generic_to_shared(q_s));
  const uint32_t tab_addr = static_cast<uint32_t>(__cvta_generic_to_shared(&tab_s[0][0]));
  // The K and V copies of tile T (tile t of item j) into stage T % S.
  auto copy_kv = [&](int T, int j, int t) {
    const int st = T % S;
    const int64_t head_off = static_cast<int64_t>(it_h[j] / group) * D;
#pragma unroll
    for (int i = 0; i < kCopies; ++i) {
      const int c = threadIdx.x + i * kThreads, r = c / CH, piece = c % CH;
      const int key = t * kTile + r;
      const bool valid = key < it_keys[j];
      const int64_t slot = static_cast<int64_t>(tab_s[T % (2 * S)][r]) * bs + key % bs;
      const int64_t off = slot * kv_stride + head_off + piece * 8;
      const uint32_t so = static_cast<uint32_t>(((st * kTile + r) * D + piece * 8) * 2);
      cp_async16_zfill(ks_addr + so, a.k_cache + off, valid);
      cp_async16_zfill(vs_addr + so, a.v_cache + off, valid);
    }
  };
  // The first S - 1 tiles whose keys all come from earlier steps are copied before the PDL
  // wait (uncommitted: they join tile 0's group, which the first wait covers anyway).
  unsigned early = 0;  // bit T: tile T's copies went out early
  {
    Cursor pc;
#pragma unroll
    for (int T = 0; T < S - 1; ++T) {
      if (T < total && min((pc.t + 1) * kTile, it_keys[pc.j]) <= it_stable[pc.j]) {
        copy_kv(T, pc.j, pc.t);
        early |= 1u << T;
      }
      if (T < total) advance(pc);
    }
  }
  pdl_wait();
  pdl_trigger();

  // Copies tile T (the issue cursor's) into stage T % S, with the item's query on its first
  // tile and the table entries of tile T + S - 1, and commits one group either way, so
  // that the group count stays uniform.
  Cursor ic;
  auto issue = [&](int T) {
    if (T < total) {
      const int st = T % S, j = ic.j;
      if (T >= S - 1 || !(early >> T & 1u)) copy_kv(T, j, ic.t);
      if (ic.t == 0 && threadIdx.x < D / 4) {
        const float* q = a.q + (static_cast<int64_t>(it_row[j]) * a.n_head + it_h[j]) * D;
        cp_async16_s(qs_addr + static_cast<uint32_t>((st * D + 4 * threadIdx.x) * 4),
                     q + 4 * threadIdx.x);
      }
      advance(ic);
    }
    if (warp == 0 && T + S - 1 < total) {
      const int key = fc.t * kTile + lane;
      const bool valid = key < it_keys[fc.j];
      const int32_t* src = a.tables + it_table[fc.j] + (valid ? key / bs : 0);
      cp_async4_zfill(tab_addr + static_cast<uint32_t>(((T + S - 1) % (2 * S) * kTile + lane) * 4),
                      src, valid);
      advance(fc);
    }
    cp_async_commit();
  };
#pragma unroll 1
  for (int T = 0; T < S - 1; ++T) issue(T);

  Cursor cc;  // the tile being worked on
  float qr[8], m = -INFINITY, l = 0.0f, acc[DPL];
#pragma unroll 1
  for (int T = 0; T < total; ++T) {
    cp_async_wait<S - 2>();  // this thread's copies of tile T have landed
    __syncthreads();         // everyone's have; stage (T - 1) % S is free again
    issue(T + S - 1);

    const int st = T % S, j = cc.j;
    if (cc.t == 0) {  // a new item
      load_q_piece<D>(q_s + st * D, qr);
      m = -INFINITY;
      l = 0.0f;
#pragma unroll
      for (int i = 0; i < DPL; ++i) acc[i] = 0.0f;
    }
    const int key0 = cc.t * kTile + warp * kKeysPerWarp;
    attend_tile<D, kKeysPerWarp>(k_s + (st * kTile + warp * kKeysPerWarp) * D,
                                 v_s + (st * kTile + warp * kKeysPerWarp) * D, qr,
                                 it_keys[j] - key0, m, l, acc);
    if (cc.t == tiles_of(j) - 1)
      decode_block_finish<kWarps, DPL>(a, nullptr, nullptr, acc_s, it_row[j], it_h[j], 0, 0, 1, 1,
                                       m, warp_sum(l), acc);

    advance(cc);
  }
  cp_async_wait<0>();  // only empty groups are left
}

template <int D, int S>
void launch_persist(const AttnArgs& a, const int32_t* rows, int n_items, int grid,
                    cudaStream_t stream) {
  constexpr size_t smem = persist_smem<D, S>();
  CUDA_CHECK(cudaFuncSetAttribute(decode_persist_kernel<D, S>,
                                  cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  static_cast<int>(smem)));
  launch(decode_persist_kernel<D, S>, dim3(static_cast<unsigned>(grid)), kThreads, smem, stream, a,
         rows, n_items);
  CUDA_CHECK_LAUNCH();
}

// Blocks for n_items: as many as the SMs hold (n_sm * blocks_per_sm), then trimmed so that
// every block gets the same number of items or one fewer.
int persist_grid(int64_t n_items, int n_sm, int blocks_per_sm) {
  const int64_t per = ceil_div(n_items, static_cast<int64_t>(n_sm) * blocks_per_sm);
  return static_cast<int>(ceil_div(n_items, per));
}

}  // namespace

bool attention_decode_persist_fits(int n_rows, int n_head, int head_dim, int n_sm,
                                   int blocks_per_sm) {
  const int64_t items = static_cast<int64_t>(n_rows) * n_head;
  if ((head_dim != 64 && head_dim != 128) || n_sm <= 0 || items <= 0) return false;
  return ceil_div(items, persist_grid(items, n_sm, blocks_per_sm)) <= kMaxItems;
}

void attention_decode_persist(const AttnArgs& a, const int32_t* rows, int n_rows, int n_sm,
                              int blocks_per_sm, cudaStream_t stream) {
  if (n_rows <= 0) return;
  blocks_per_sm = std::clamp(blocks_per_sm, 1, 4);
  if (!attention_decode_persist_fits(n_rows, a.n_head, a.head_dim, n_sm, blocks_per_sm))
    throw Error("attention: the persistent decode kernel takes head_dim 64 or 128 and at most " +
                std::to_string(kMaxItems) + " (row, head) items per block");
  const int items = n_rows * a.n_head;
  const int grid = persist_grid(items, n_sm, blocks_per_sm);
  const auto run = [&](auto d) {
    constexpr int D = decltype(d)::value;
    switch (blocks_per_sm) {
      case 1:
        launch_persist<D, stages_for(1)>(a, rows, items, grid, stream);
        break;
      case 2:
        launch_persist<D, stages_for(2)>(a, rows, items, grid, stream);
        break;
      case 3:
        launch_persist<D, stages_for(3)>(a, rows, items, grid, stream);
        break;
      default:
        launch_persist<D, stages_for(4)>(a, rows, items, grid, stream);
    }
  };
  if (a.head_dim == 64)
    run(std::integral_constant<int, 64>{});
  else
    run(std::integral_constant<int, 128>{});
}

}  // namespace llm::cuda
