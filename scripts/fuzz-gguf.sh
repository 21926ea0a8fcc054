#!/usr/bin/env bash
# Builds the libFuzzer GGUF harness (tests/fuzz_gguf.cpp) with clang, ASan and UBSan,
# writes the seed corpus, and fuzzes for a while. Crashing inputs land in
# build-fuzz/fuzz-artifacts/; reproduce one with build-fuzz/tests/fuzz_gguf FILE.
# Usage: scripts/fuzz-gguf.sh [seconds=300] [parallel jobs=1]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-300}
jobs=${2:-1}
build=build-fuzz

CC=clang CXX=clang++ cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DLLM_FUZZ=ON -DLLM_SANITIZE=ON -DLLM_CUDA=OFF -DLLM_TESTS=ON >/dev/null
ninja -C "$build" -j2 fuzz_gguf fuzz_gguf_seeds

seeds=$build/fuzz-seeds
corpus=$build/fuzz-corpus  # grows across runs
artifacts=$build/fuzz-artifacts
rm -rf "$seeds"
mkdir -p "$seeds" "$corpus" "$artifacts"
"$build/tests/fuzz_gguf_seeds" "$seeds"

# UBSan findings abort (instead of printing and going on) so that libFuzzer keeps them.
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=0
extra=()
if [ "$jobs" -gt 1 ]; then extra=(-jobs="$jobs" -workers="$jobs"); fi
"$build/tests/fuzz_gguf" "$corpus" "$seeds" -dict=tests/fuzz_gguf.dict \
  -max_total_time="$secs" -max_len=16384 -use_value_profile=1 -timeout=10 -rss_limit_mb=2048 \
  -malloc_limit_mb=1024 -artifact_prefix="$artifacts/" -print_final_stats=1 "${extra[@]}"
