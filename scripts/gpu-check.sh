#!/usr/bin/env bash
# One run on the GPU test machine: build for sm_90, run the GPU tests (and, with
# SANITIZE=1, compute-sanitizer memcheck + racecheck on the kernel test), make synthetic
# Llama-2-7B models with `llm make-model`, benchmark each with `llm bench`, and print a
# summary table last. The full log and the bench JSON go to $OUT (default ./out).
#
# Environment: TYPES="q4_0 q4_k_m q8_0 f16" (models to bench; "" for none),
#   SANITIZE=0|1, TESTS=0|1, REPS=3, BUILD_DIR=build-gpu, MODEL_DIR=/dev/shm/llm-models,
#   BENCH_ARGS (extra arguments for llm bench), PROFILE=1 (per-op decode profile of each
#   model), AB="LLM_CUDA_PDL=0 LLM_CUDA_MV_ROWS=2" (also bench generation of every model
#   with each of these environment settings, for A/B comparisons in one run).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
LOG=$OUT/gpu-check.log
exec > >(tee -a "$LOG") 2>&1
TYPES=${TYPES-"q4_0 q4_k_m q8_0 f16"}
SANITIZE=${SANITIZE:-0}
TESTS=${TESTS:-1}
REPS=${REPS:-3}
BUILD_DIR=${BUILD_DIR:-build-gpu}
MODEL_DIR=${MODEL_DIR:-/dev/shm/llm-models}
NPROC=$(nproc)
export LLM_SHARED_DIR=${LLM_SHARED_DIR:-$(cd .. && pwd)/shared}
summary=()
t_start=$(date +%s)
stage() { echo; echo "=== $* ($(($(date +%s) - t_start)) s) ==="; }

stage "machine"
nvidia-smi --query-gpu=name,memory.total,memory.used,clocks.sm,clocks.mem,power.limit --format=csv || true
nvcc --version | tail -1 || true

stage "build"
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a >"$OUT/cmake.log" 2>&1 ||
  { tail -30 "$OUT/cmake.log"; echo "FAIL: cmake"; exit 1; }
CUDA_TESTS="test_cuda_kernels test_cuda_attention test_cuda_skinny test_cuda_backend"
if ! ninja -C "$BUILD_DIR" -j"$NPROC" llm $CUDA_TESTS >"$OUT/build.log" 2>&1; then
  grep -E "error|FAILED" -A5 "$OUT/build.log" | head -60
  echo "FAIL: build"
  exit 1
fi
summary+=("build: ok ($(($(date +%s) - t_start)) s)")

if [ "$TESTS" = 1 ]; then
  for t in $CUDA_TESTS; do
    stage "$t"
    t0=$(date +%s)
    (cd "$BUILD_DIR/tests" && ./$t --duration=true) >"$OUT/$t.log" 2>&1
    rc=$?
    grep -E "MESSAGE|skipped|ERROR|FAILED|CHECK|test cases|assertions|s - " "$OUT/$t.log" | head -80
    summary+=("$t: rc=$rc ($(($(date +%s) - t0)) s) $(grep -E '^\[doctest\] test cases' "$OUT/$t.log" | tr -s ' ')")
  done
fi

mkdir -p "$MODEL_DIR"
bench_rows=()
for ty in $TYPES; do
  m=$MODEL_DIR/llama2-7b-$ty.gguf
  stage "make-model llama2-7b $ty"
  if [ ! -f "$m" ]; then
    t0=$(date +%s)
    "$BUILD_DIR/llm" make-model --shape llama2-7b --type "$ty" -t "$NPROC" -q -o "$m" || { summary+=("make-model $ty: FAILED"); continue; }
    echo "made $m in $(($(date +%s) - t0)) s ($(du -h "$m" | cut -f1))"
  fi
  stage "bench llama2-7b $ty"
  prof=""
  [ "${PROFILE:-0}" = 1 ] && prof="--profile"
  "$BUILD_DIR/llm" bench -m "$m" -p 512 -n 128 -r "$REPS" --json $prof ${BENCH_ARGS:-} | tee "$OUT/bench_$ty.json" &&
    bench_rows+=("$ty")
  for ab in ${AB:-}; do
    stage "bench llama2-7b $ty (generation) with $ab"
    env "$ab" "$BUILD_DIR/llm" bench -m "$m" -p 0 -n 128 -r "$REPS" --json | tee -a "$OUT/bench_ab.json"
    summary+=("A/B $ty $ab: tg128 $(tail -1 "$OUT/bench_ab.json" | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["results"][0]["tok_s"],1))') tok/s")
  done
done

# Last, so that a slow sanitizer cannot cost the benchmark figures.
if [ "$TESTS" = 1 ] && [ "$SANITIZE" = 1 ]; then
  CS=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  for t in test_cuda_kernels test_cuda_attention test_cuda_skinny; do
    for tool in memcheck racecheck; do
      stage "compute-sanitizer $tool $t"
      t0=$(date +%s)
      (cd "$BUILD_DIR/tests" && timeout "${SANITIZE_TIMEOUT:-150}" "$CS" --tool $tool --error-exitcode 9 ./$t) >"$OUT/sanitizer_${tool}_$t.log" 2>&1
      rc=$?
      tail -5 "$OUT/sanitizer_${tool}_$t.log"
      summary+=("compute-sanitizer $tool $t: rc=$rc ($(($(date +%s) - t0)) s) $(grep -E 'ERROR SUMMARY' "$OUT/sanitizer_${tool}_$t.log" | tail -1)")
    done
  done
fi

stage "summary"
for s in "${summary[@]}"; do echo "$s"; done
if [ ${#bench_rows[@]} -gt 0 ]; then
  python3 - "$OUT" "${bench_rows[@]}" <<'PY'
import json, sys
out, types = sys.argv[1], sys.argv[2:]
ref = {"q4_0": (10587, 217), "q4_k_m": (9381, 202), "q8_0": (10847, 188), "f16": (17290, 136)}
print("| type | pp512 tok/s | % ceil | tg128 tok/s | % ceil | llama.cpp pp512 / tg128 |")
print("|---|---|---|---|---|---|")
dev = None
for t in types:
    j = json.load(open(f"{out}/bench_{t}.json"))
    dev = (j["device"], j["copy_gbs"], j["gemm_tflops"])
    r = {x["test"]: x for x in j["results"]}
    pp, tg = r.get("pp512", {}), r.get("tg128", {})
    lp, lt = ref.get(t, ("-", "-"))
    print(f"| {j['type']} | {pp.get('tok_s', 0):.0f} | {pp.get('pct_of_ceiling', 0):.1f}% | "
          f"{tg.get('tok_s', 0):.1f} | {tg.get('pct_of_ceiling', 0):.1f}% | {lp} / {lt} |")
if dev:
    print(f"device: {dev[0]}, copy {dev[1]:.0f} GB/s, f16 GEMM {dev[2]:.0f} TFLOP/s")
PY
fi
echo "total $(($(date +%s) - t_start)) s"
