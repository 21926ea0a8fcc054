#!/usr/bin/env bash
# One run on a 2-GPU machine for tensor parallelism (issue 8): build, the TP tests (CPU
# ranks, then CUDA ranks through NCCL), `llm run --tp 2` against `--tp 1` on synthetic
# F16 / Q4_0 models, then `llm bench` of a synthetic Llama-2-7B F16 with --tp 1 and
# --tp 2 and the decode (tg128) ratio. Logs go to $OUT (default ./out).
# LLM_TP_70B=1 adds a Llama-2-70B-shaped F16 model (129 GiB of weights, more than one
# GPU holds) written with make-model --share-layers (a ~2.8 GB file whose 80 layers point
# at one layer's data; the GPUs still hold and read all 80): --tp 1 must refuse it with
# the memory it needs, and --tp 2's decode speed is printed against the two cards'
# aggregate bandwidth ceiling (target >= 70 %). LLM_TP_70B_ONLY=1 skips the 7B part.
# NCCL: libnccl.so.2 is looked up by llm itself (cuda/nccl.cpp); this script also asks
# Python for NVIDIA's pip wheel (what PyTorch uses) and sets LLM_NCCL_LIB when unset.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/gpu-tp.log") 2>&1
BUILD_DIR=${BUILD_DIR:-build-gpu}
MODEL_DIR=${MODEL_DIR:-/dev/shm/llm-models}
export NCCL_NVLS_ENABLE=0  # never NVLink multicast on these machines
t0=$(date +%s)
stage() { echo; echo "=== $* ($(($(date +%s) - t0)) s) ==="; }

stage devices
nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader
nvidia-smi topo -m 2>/dev/null | head -6
if [ -z "${LLM_NCCL_LIB:-}" ]; then
  d=$(python3 -c 'import nvidia.nccl, os; print(os.path.join(list(nvidia.nccl.__path__)[0], "lib"))' 2>/dev/null)
  [ -n "$d" ] && [ -e "$d/libnccl.so.2" ] && export LLM_NCCL_LIB=$d
  if [ -z "${LLM_NCCL_LIB:-}" ] && ! ldconfig -p 2>/dev/null | grep -q libnccl.so.2; then
    f=$(find /usr /opt /usr/local -name 'libnccl.so.2' 2>/dev/null | head -1)
    [ -n "$f" ] && export LLM_NCCL_LIB=$f
  fi
fi
echo "LLM_NCCL_LIB=${LLM_NCCL_LIB:-unset (the dynamic linker path)}"
# NCCL's device API headers of that same library (cuda/tp_sum: the versions must match).
if [ -z "${LLM_NCCL_INCLUDE:-}" ] && [ -n "${LLM_NCCL_LIB:-}" ]; then
  inc=$(cd "$(dirname "$LLM_NCCL_LIB/x")/.." 2>/dev/null && pwd)/include
  [ -f "$inc/nccl_device.h" ] && export LLM_NCCL_INCLUDE=$inc
fi
echo "LLM_NCCL_INCLUDE=${LLM_NCCL_INCLUDE:-unset (nccl_device.h from the system, if any)}"

stage build
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a \
  ${LLM_NCCL_INCLUDE:+-DLLM_NCCL_DEVICE_INCLUDE=$LLM_NCCL_INCLUDE} >"$OUT/cmake.log" 2>&1 ||
  { tail -20 "$OUT/cmake.log"; exit 1; }
ninja -C "$BUILD_DIR" -j"$(nproc)" llm test_tp test_cuda_tp >"$OUT/build.log" 2>&1 ||
  { grep -E "error|FAILED" -A5 "$OUT/build.log" | head -40; exit 1; }

stage test_tp "(CPU ranks)"
(cd "$BUILD_DIR/tests" && ./test_tp) 2>&1 | tail -3
stage test_cuda_tp "(CUDA ranks, NCCL)"
(cd "$BUILD_DIR/tests" && ./test_cuda_tp -s 2>&1 | grep -E "NCCL|skipped|worst|not available|ERROR|test cases|assertions|Status" | head -40)
echo "test_cuda_tp exit code: ${PIPESTATUS[0]}"

mkdir -p "$MODEL_DIR"
stage "llm run --tp 2 vs --tp 1 (tiny f16 / q4_0, greedy 64)"
for t in f16 q4_0; do
  m=$MODEL_DIR/tiny-$t.gguf
  [ -f "$m" ] || "$BUILD_DIR/llm" make-model --shape tiny --type $t -q -o "$m"
  "$BUILD_DIR/llm" run -m "$m" --device cuda --temp 0 -n 64 -p "hello" --tp 1 >"$OUT/run-$t-tp1.txt" 2>"$OUT/run-$t-tp1.err"
  "$BUILD_DIR/llm" run -m "$m" --device cuda --temp 0 -n 64 -p "hello" --tp 2 >"$OUT/run-$t-tp2.txt" 2>"$OUT/run-$t-tp2.err"
  if cmp -s "$OUT/run-$t-tp1.txt" "$OUT/run-$t-tp2.txt"; then echo "$t: --tp 2 output equals --tp 1"; else
    echo "$t: --tp 2 output DIFFERS from --tp 1"; tail -3 "$OUT/run-$t-tp2.err"; fi
done

if [ "${LLM_TP_70B_ONLY:-0}" != 1 ]; then
m=$MODEL_DIR/llama2-7b-f16.gguf
stage "make-model llama2-7b f16"
[ -f "$m" ] || "$BUILD_DIR/llm" make-model --shape llama2-7b --type f16 -t "$(nproc)" -o "$m" 2>&1 | tail -2
declare -A tg pp
stage "bench llama2-7b f16 --tp 2 with all-reduces (LLM_TP_FUSED=0)"
LLM_TP_FUSED=0 "$BUILD_DIR/llm" bench -m "$m" -p 512 -n 128 -r 3 --tp 2 2>&1 | grep -E "\| tg128 |\| pp512 "
for tp in 1 2; do
  stage "bench llama2-7b f16 --tp $tp (-p 512 -n 128 -r 3)"
  "$BUILD_DIR/llm" bench -m "$m" -p 512 -n 128 -r 3 --tp $tp 2>&1 | grep -v "^\[" | tee "$OUT/bench-tp$tp.txt"
  tg[$tp]=$(grep -E "\| tg128 " "$OUT/bench-tp$tp.txt" | awk -F'|' '{gsub(/ /, "", $4); print $4}')
  pp[$tp]=$(grep -E "\| pp512 " "$OUT/bench-tp$tp.txt" | awk -F'|' '{gsub(/ /, "", $4); print $4}')
done

stage summary
printf "| %-6s | %12s | %12s |\n" "tp" "pp512 tok/s" "tg128 tok/s"
for tp in 1 2; do printf "| %-6s | %12s | %12s |\n" "$tp" "${pp[$tp]:-?}" "${tg[$tp]:-?}"; done
if [ -n "${tg[1]:-}" ] && [ -n "${tg[2]:-}" ]; then
  awk -v a="${tg[1]}" -v b="${tg[2]}" -v p="${pp[1]:-0}" -v q="${pp[2]:-0}" 'BEGIN {
    printf "decode tp2/tp1 = %.2fx (target >= 1.6x)", b / a; if (p > 0) printf ", prefill %.2fx", q / p; print "" }'
fi
fi

if [ "${LLM_TP_70B:-0}" = 1 ] || [ "${LLM_TP_70B_ONLY:-0}" = 1 ]; then
  m70=$MODEL_DIR/llama2-70b-f16-shared.gguf
  stage "make-model llama2-70b f16 --share-layers"
  [ -f "$m70" ] || "$BUILD_DIR/llm" make-model --shape llama2-70b --type f16 --share-layers -q \
    -t "$(nproc)" -o "$m70" || exit 1
  ls -l "$m70"
  "$BUILD_DIR/llm" info -m "$m70" | grep -E "^(file|layers|heads|kv heads|feed-forward|weights|shared data):"
  stage "llama2-70b f16 --tp 1: must refuse (does not fit one GPU)"
  timeout 300 "$BUILD_DIR/llm" bench -m "$m70" --tp 1 -p 0 -n 1 -r 1 >"$OUT/bench70-tp1.txt" 2>&1
  rc=$?
  grep -E "error|needs" "$OUT/bench70-tp1.txt" | head -3
  if [ $rc = 1 ] && grep -q "error: model needs .* GiB free" "$OUT/bench70-tp1.txt"; then
    echo "--tp 1: refused with the memory it needs (exit code 1), as it should"
  else
    echo "--tp 1: UNEXPECTED exit code $rc"; tail -5 "$OUT/bench70-tp1.txt"
  fi
  stage "bench llama2-70b f16 --tp 2 (-p 512 -n 128 -r 3)"
  # Device memory every 5 s: each GPU should hold its half of all 80 layers (~65 GiB).
  (while sleep 5; do nvidia-smi --query-gpu=index,memory.used --format=csv,noheader,nounits; done) \
    >"$OUT/bench70-mem.txt" 2>/dev/null &
  smi=$!
  timeout 420 "$BUILD_DIR/llm" bench -m "$m70" -p 512 -n 128 -r 3 --tp 2 2>&1 | tee "$OUT/bench70-tp2.txt"
  kill "$smi" 2>/dev/null
  awk -F', ' '{ if ($2 + 0 > m[$1] + 0) m[$1] = $2 } END {
    for (g in m) printf "GPU %s: at most %.1f GiB used during the bench\n", g, m[g] / 1024 }' "$OUT/bench70-mem.txt"
  # | type | test | tok/s | MB/tok | GFLOP/tok | bound | ceiling tok/s | % ceil |
  row=$(grep -E "\| tg128 " "$OUT/bench70-tp2.txt")
  bw=$(grep -oE "copy bandwidth [0-9]+ GB/s" "$OUT/bench70-tp2.txt" | grep -oE "[0-9]+")
  if [ -n "$row" ]; then
    echo "$row" | awk -F'|' -v bw="$bw" '{ gsub(/ /, ""); printf "70B F16 --tp 2 decode: %s tok/s; aggregate ceiling %s tok/s (2 GPUs, %s GB/s copy bandwidth together, %s MB per token); %s of it (target >= 70%%)\n", $4, $8, bw, $5, $9 }'
  else
    echo "70B F16 --tp 2: no tg128 result"; tail -5 "$OUT/bench70-tp2.txt"
  fi
fi
echo "total $(($(date +%s) - t0)) s"
