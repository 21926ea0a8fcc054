#!/usr/bin/env bash
# One run on a 2-GPU machine for tensor parallelism (issue 8): build, the TP tests (CPU
# ranks, then CUDA ranks through NCCL), `llm run --tp 2` against `--tp 1` on synthetic
# F16 / Q4_0 models, then `llm bench` of a synthetic Llama-2-7B F16 with --tp 1 and
# --tp 2 and the decode (tg128) ratio. Logs go to $OUT (default ./out).
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

stage build
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 >"$OUT/cmake.log" 2>&1 ||
  { tail -20 "$OUT/cmake.log"; exit 1; }
ninja -C "$BUILD_DIR" -j"$(nproc)" llm test_tp test_cuda_tp >"$OUT/build.log" 2>&1 ||
  { grep -E "error|FAILED" -A5 "$OUT/build.log" | head -40; exit 1; }

stage test_tp "(CPU ranks)"
(cd "$BUILD_DIR/tests" && ./test_tp) 2>&1 | tail -3
stage test_cuda_tp "(CUDA ranks, NCCL)"
(cd "$BUILD_DIR/tests" && ./test_cuda_tp -s 2>&1 | grep -E "NCCL|skipped|worst logit|ERROR|test cases|assertions|Status" | head -40)
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

m=$MODEL_DIR/llama2-7b-f16.gguf
stage "make-model llama2-7b f16"
[ -f "$m" ] || "$BUILD_DIR/llm" make-model --shape llama2-7b --type f16 -t "$(nproc)" -o "$m" 2>&1 | tail -2
declare -A tg pp
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
echo "total $(($(date +%s) - t0)) s"
