#!/usr/bin/env bash
# One run on the GPU test machine for the batching engine (issue 4): build, the CUDA
# backend test, `llm run` on CUDA against the golden stories260K text, then
# `llm bench --concurrency` and `--prefix-ttft` on a synthetic Llama-2-7B Q4_0.
# Logs go to $OUT (default ./out). LLM_SHARED_DIR points at a copy of ../shared.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/gpu-batch.log") 2>&1
BUILD_DIR=${BUILD_DIR:-build-gpu}
MODEL_DIR=${MODEL_DIR:-/dev/shm/llm-models}
CONC=${CONC:-1,8,32,64,128}
SHARED=${LLM_SHARED_DIR:-$(cd .. && pwd)/shared}
t0=$(date +%s)
stage() { echo; echo "=== $* ($(($(date +%s) - t0)) s) ==="; }

stage build
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a >"$OUT/cmake.log" 2>&1 ||
  { tail -20 "$OUT/cmake.log"; exit 1; }
ninja -C "$BUILD_DIR" -j"$(nproc)" llm test_cuda_backend >"$OUT/build.log" 2>&1 ||
  { grep -E "error|FAILED" -A5 "$OUT/build.log" | head -40; exit 1; }

stage test_cuda_backend
(cd "$BUILD_DIR/tests" && LLM_SHARED_DIR=$SHARED ./test_cuda_backend) 2>&1 | tail -4

stage "llm run on CUDA (stories260K, greedy 200)"
"$BUILD_DIR/llm" run -m "$SHARED/models/stories260K.gguf" --device cuda --temp 0 -n 200 -p "" >"$OUT/run.txt" 2>"$OUT/run.err"
tail -4 "$OUT/run.err"
if cmp -s <(tr -d '\n' <"$OUT/run.txt" | sed 's/^ //') <(tr -d '\n' <"$SHARED/models/stories260K.greedy200.txt"); then
  echo "llm run --device cuda: golden text OK"
else
  echo "llm run --device cuda: differs from the golden text"; head -c 300 "$OUT/run.txt"; echo
fi

mkdir -p "$MODEL_DIR"
m=$MODEL_DIR/llama2-7b-q4_0.gguf
stage "make-model llama2-7b q4_0"
[ -f "$m" ] || "$BUILD_DIR/llm" make-model --shape llama2-7b --type q4_0 -t "$(nproc)" -o "$m" 2>&1 | tail -2

stage "bench --concurrency $CONC (128-token prompts, 128 generated)"
"$BUILD_DIR/llm" bench -m "$m" -p 128 -n 128 -r 1 --concurrency "$CONC" 2>&1 | grep -v "^\[" | tee "$OUT/bench_conc.txt"

stage "bench --prefix-ttft 1024"
"$BUILD_DIR/llm" bench -m "$m" --prefix-ttft 1024 -r 3 2>&1 | grep -v "^\[" | tee "$OUT/bench_prefix.txt"
echo "total $(($(date +%s) - t0)) s"
