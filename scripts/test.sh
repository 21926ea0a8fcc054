#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds, runs every test with CTest.
# GPU tests skip with a message where no GPU is present; tests that need ../shared skip
# where it is absent. Extra arguments go to ctest (e.g. -R tokenizer, -L cpu).
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${LLM_BUILD_DIR:-build}
scripts/setup.sh --no-run --build-dir "$build_dir"
ctest --test-dir "$build_dir" --output-on-failure -j"$(nproc)" "$@"
