#!/usr/bin/env bash
# One run on the GPU test machine for the tensor-core products (cuda/matmul_tc): build,
# the kernel and backend tests with mm_tc on, then A/B of `llm bench --concurrency` on a
# synthetic Llama-2-7B Q4_0 and of the speculative verification cost r(k) on an F16 one,
# LLM_CUDA_TC_ROWS=0 (GEMV + f16 GEMM) against mm_tc. Logs go to $OUT (default ./out).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/gpu-tc.log") 2>&1
BUILD_DIR=${BUILD_DIR:-build-gpu}
MODEL_DIR=${MODEL_DIR:-/dev/shm/llm-models}
SHARED=${LLM_SHARED_DIR:-$(cd .. && pwd)/shared}
TC=${TC:-64}
t0=$(date +%s)
stage() { echo; echo "=== $* ($(($(date +%s) - t0)) s) ==="; }

stage build
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a >"$OUT/cmake.log" 2>&1 ||
  { tail -20 "$OUT/cmake.log"; exit 1; }
ninja -C "$BUILD_DIR" -j"$(nproc)" llm test_cuda_kernels test_cuda_backend >"$OUT/build.log" 2>&1 ||
  { grep -E "error|FAILED" -A5 "$OUT/build.log" | head -40; exit 1; }
LLM=$BUILD_DIR/llm

stage "test_cuda_kernels; test_cuda_backend with LLM_CUDA_TC_ROWS=$TC"
(cd "$BUILD_DIR/tests" && ./test_cuda_kernels) 2>&1 | tail -3
(cd "$BUILD_DIR/tests" && LLM_SHARED_DIR=$SHARED LLM_CUDA_TC_ROWS=$TC ./test_cuda_backend) 2>&1 | tail -3

mkdir -p "$MODEL_DIR"
q4=$MODEL_DIR/llama2-7b-q4_0.gguf
f16=$MODEL_DIR/llama2-7b-f16.gguf
dft=$MODEL_DIR/tinyllama-1.1b-q4_0.gguf
stage "make-model"
[ -f "$q4" ] || "$LLM" make-model --shape llama2-7b --type q4_0 -t "$(nproc)" -o "$q4" 2>&1 | tail -1
[ -f "$f16" ] || "$LLM" make-model --shape llama2-7b --type f16 -t "$(nproc)" -o "$f16" 2>&1 | tail -1
[ -f "$dft" ] || "$LLM" make-model --shape tinyllama-1.1b --type q4_0 -t "$(nproc)" -o "$dft" 2>&1 | tail -1

for rows in 0 "$TC"; do
  stage "Q4_0 bench --concurrency 8,32,64 LLM_CUDA_TC_ROWS=$rows"
  LLM_CUDA_TC_ROWS=$rows "$LLM" bench -m "$q4" -p 128 -n 128 -r 1 --concurrency 8,32,64 2>&1 |
    grep -v "^\[\|loading" | tee "$OUT/conc_tc$rows.txt"
done
stage "Q4_0 bench --concurrency 128 LLM_CUDA_TC_ROWS=128"
LLM_CUDA_TC_ROWS=128 "$LLM" bench -m "$q4" -p 128 -n 128 -r 1 --concurrency 128 2>&1 | grep -v "^\[\|loading" | tail -4
for rows in 0 "$TC"; do
  stage "F16 spec replay 0.8 k 8, batch 1,8, LLM_CUDA_TC_ROWS=$rows"
  LLM_CUDA_TC_ROWS=$rows "$LLM" bench -m "$f16" --draft-model "$dft" --spec-replay 0.8 --spec-k 8 --spec-batches 1,8 2>&1 |
    grep -v "^\[\|loading" | tee "$OUT/spec_tc$rows.txt"
done
echo "total $(($(date +%s) - t0)) s"
