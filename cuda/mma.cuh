// Tensor-core, asynchronous-copy and split-K primitives (PTX, sm_80+) shared by the
// products of few activation rows (cuda/matmul_tc, cuda/matmul_skinny). The mma wrappers that write
// their outputs are plain register operations (not volatile), so the compiler may schedule
// them around the loads; ldmatrix and cp.async stay volatile, ordered against the waits
// that publish the data.
//
// Fragments (PTX ISA, mma.sync): lane = 4 g + t. A (16 x K) holds rows g and g + 8,
// B (K x 8) column g, C (16 x 8) rows g, g + 8 and columns 2t, 2t + 1.
#pragma once
#include <cstdint>

namespace llm::cuda {

// C += A · B, s8 x s8 -> s32, k = 16: a0 row g, a1 row g + 8 (4 bytes each, k 4t..4t+3).
__device__ __forceinline__ void mma_s8_k16(int (&c)[4], int a0, int a1, int b0) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5}, {%6}, "
      "{%0,%1,%2,%3};"
      : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
      : "r"(a0), "r"(a1), "r"(b0));
}

// C = A · B + kFloatBias, s8 x s8 -> s32, k = 32: a0 / a1 rows g / g + 8 at k 4t..4t+3,
// a2 / a3 the same rows at k 16+4t..16+4t+3; b0, b1 column g at those k. The results' bits are the
// floats 1.5 * 2^23 + sum (exact for |sum| < 2^22), which one FADD turns into the sum: no int ->
// float conversion (a quarter-rate instruction on sm_90).
constexpr int kFloatBias = 0x4B400000;  // the bits of 12582912.0f = 1.5 * 2^23
__device__ __forceinline__ void mma_s8_k32_biased(int (&c)[4], int a0, int a1, int a2, int a3,
                                                  int b0, int b1) {
  asm("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%10,%10,%10,%10};"
      : "=r"(c[0]), "=r"(c[1]), "=r"(c[2]), "=r"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1), "r"(kFloatBias));
}
// The integer sum of a biased product as a float (exact).
__device__ __forceinline__ float unbias(int c) {
  return __int_as_float(c) - 12582912.0f;
}

// C += A · B, f16 x f16 -> f32, k = 16: a0 / a1 rows g / g + 8 at k 2t, 2t+1, a2 / a3 at
// k 8+2t, 9+2t; b0, b1 column g at those k.
__device__ __forceinline__ void mma_f16(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                        uint32_t a3, uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// Four 8 x 8 matrices of 16-bit elements (8 rows of 16 bytes each) from shared memory:
// lanes 8m .. 8m + 7 give the row addresses of matrix m, and lane 4 g + t receives word t
// (bytes 4t..4t+3) of row g of each matrix in r[m].
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* smem_row) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem_row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s));
}

// Asynchronous global -> shared copies: the next data lands while this is multiplied.
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(s), "l"(gmem) : "memory");
}
__device__ __forceinline__ void cp_async8(void* smem, const void* gmem) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 8;" ::"r"(s), "l"(gmem) : "memory");
}
__device__ __forceinline__ void cp_async4(void* smem, const void* gmem) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;" ::"r"(s), "l"(gmem) : "memory");
}
// The same with a shared-memory address already converted (__cvta_generic_to_shared).
__device__ __forceinline__ void cp_async16_s(uint32_t s, const void* gmem) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(s), "l"(gmem) : "memory");
}
template <int N>
__device__ __forceinline__ void cp_async_s(uint32_t s, const void* gmem) {
  static_assert(N == 4 || N == 8 || N == 16, "cp.async copies 4, 8 or 16 bytes");
  if constexpr (N == 16)
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(s), "l"(gmem) : "memory");
  else
    asm volatile("cp.async.ca.shared.global [%0], [%1], %2;" ::"r"(s), "l"(gmem), "n"(N)
                 : "memory");
}
// An opaque use: the compiler keeps v in a register across a loop instead of working it
// out again from the thread index in every iteration (as it did for mm_sk's copy addresses).
__device__ __forceinline__ void keep_in_register(uint32_t& v) {
  asm volatile("" : "+r"(v));
}
__device__ __forceinline__ void keep_in_register(const uint8_t*& p) {
  asm volatile("" : "+l"(p));
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;" ::: "memory");
}
// Waits until at most N of this thread's committed groups are still in flight.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}

// Split-K arrival: after every thread of the CTA stored its partial sums, counts the CTA in
// for its tile (one counter per blockIdx.x) and returns, in every thread, whether it is the
// tile's last of `splits` CTAs; that one then sums the partials (all visible to it) and
// resets the counter for the next launch. `flag`: a __shared__ int of the caller.
__device__ __forceinline__ bool last_split_arrival(int* counters, int splits, int& flag) {
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) flag = atomicAdd(&counters[blockIdx.x], 1) == splits - 1;
  __syncthreads();
  const bool last = flag != 0;
  if (last) __threadfence();
  return last;
}
// A 16-byte copy through L1 or not (`l1` uniform over the warp): cp.async.ca allocates
// the line in L1, for data that the other CTAs of an SM read too.
__device__ __forceinline__ void cp_async16_l1_s(uint32_t s, const void* gmem, bool l1) {
  if (l1)
    asm volatile("cp.async.ca.shared.global [%0], [%1], 16;" ::"r"(s), "l"(gmem) : "memory");
  else
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(s), "l"(gmem) : "memory");
}

}  // namespace llm::cuda
