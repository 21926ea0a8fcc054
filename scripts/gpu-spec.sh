#!/usr/bin/env bash
# One run on the GPU test machine for speculative decoding (issue 7): build, greedy
# identity on CUDA for stories260K with every proposer, then the `llm bench` harness on
# a synthetic Llama-2-7B F16 target with a TinyLlama-1.1B-shaped Q4_0 draft (same
# 32000-token vocabulary): r(k), c, and the replay speed-up at ALPHA.
# Logs go to $OUT (default ./out). LLM_SHARED_DIR points at a copy of ../shared.
# Environment: ALPHA=0.8, K=8, BATCHES=1,8,32, BUILD_DIR, MODEL_DIR, SKIP_BUILD=1.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/gpu-spec.log") 2>&1
BUILD_DIR=${BUILD_DIR:-build-gpu}
MODEL_DIR=${MODEL_DIR:-/dev/shm/llm-models}
ALPHA=${ALPHA:-0.8}
K=${K:-8}
BATCHES=${BATCHES:-1,8,32}
SHARED=${LLM_SHARED_DIR:-$(cd .. && pwd)/shared}
LLM=$BUILD_DIR/llm
t0=$(date +%s)
stage() { echo; echo "=== $* ($(($(date +%s) - t0)) s) ==="; }

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  stage build
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a >"$OUT/cmake.log" 2>&1 ||
    { tail -20 "$OUT/cmake.log"; exit 1; }
  ninja -C "$BUILD_DIR" -j"$(nproc)" llm >"$OUT/build.log" 2>&1 ||
    { grep -E "error|FAILED" -A5 "$OUT/build.log" | head -40; exit 1; }
fi

mkdir -p "$MODEL_DIR"
stage "greedy identity on CUDA, stories260K, 200 tokens, every proposer"
s=$SHARED/models/stories260K.gguf
q8=$MODEL_DIR/stories260K-q8_0.gguf
[ -f "$q8" ] || "$LLM" quantize "$s" "$q8" q8_0 >/dev/null 2>&1
"$LLM" run -m "$s" --device cuda --temp 0 -n 200 -p "Once upon a time" >"$OUT/spec_base.txt" 2>"$OUT/spec_base_err.txt"
[ -s "$OUT/spec_base.txt" ] || { echo "FAIL: no output without speculation"; tail -3 "$OUT/spec_base_err.txt"; }
for variant in "--draft-model $q8" "--spec ngram" "--spec self --draft-quant q4_0" "--spec self --draft-quant q8_0"; do
  # shellcheck disable=SC2086
  "$LLM" run -m "$s" --device cuda --temp 0 -n 200 -p "Once upon a time" $variant >"$OUT/spec_out.txt" 2>"$OUT/spec_err.txt"
  acc=$(grep -E "drafted" "$OUT/spec_err.txt" | tail -1 | sed "s/^ *//")
  if [ -s "$OUT/spec_out.txt" ] && cmp -s "$OUT/spec_base.txt" "$OUT/spec_out.txt"; then
    echo "same greedy text: $variant   ($acc)"
  else
    echo "DIFFERS: $variant"; tail -3 "$OUT/spec_err.txt"
  fi
done

tgt=$MODEL_DIR/llama2-7b-f16.gguf
dft=$MODEL_DIR/tinyllama-1.1b-q4_0.gguf
stage "make-model llama2-7b f16, tinyllama-1.1b q4_0"
[ -f "$tgt" ] || "$LLM" make-model --shape llama2-7b --type f16 -t "$(nproc)" -o "$tgt" 2>&1 | tail -1
[ -f "$dft" ] || "$LLM" make-model --shape tinyllama-1.1b --type q4_0 -t "$(nproc)" -o "$dft" 2>&1 | tail -1

stage "bench --spec-replay $ALPHA --spec-k $K --spec-batches $BATCHES"
"$LLM" bench -m "$tgt" --draft-model "$dft" --spec-replay "$ALPHA" --spec-k "$K" --spec-batches "$BATCHES" 2>&1 |
  grep -v "^\[\|loading weights" | tee "$OUT/bench_spec.txt"
echo "total $(($(date +%s) - t0)) s"
