#!/usr/bin/env bash
# One command from a fresh Debian 12 clone to a running llm:
#   installs the Debian packages that are missing, builds (the CUDA backend too when
#   nvcc is found), generates a first text with a model that needs no download, then
#   serves it: OpenAI API and web chat at http://127.0.0.1:8080 (Ctrl-C stops it).
# Options: --no-run (install and build only), --no-serve (stop after the first text),
#          --build-dir DIR (default: build).
set -euo pipefail
cd "$(dirname "$0")/.."

run_demo=1
serve=1
build_dir=build
while [ $# -gt 0 ]; do
  case "$1" in
    --no-run) run_demo=0 ;;
    --no-serve) serve=0 ;;
    --build-dir) build_dir=$2; shift ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

# --- Debian packages -----------------------------------------------------------
pkgs=(build-essential cmake ninja-build pkg-config
      doctest-dev nlohmann-json3-dev libcpp-httplib-dev
      python3 python3-numpy python3-regex python3-jinja2 clang tmux)
# The server's acceptance tests (tests/server) run in Node and drive Chromium. Asked for
# by command, not package: a nodejs from elsewhere (NodeSource) already brings npm.
command -v node >/dev/null 2>&1 || pkgs+=(nodejs)
command -v npm >/dev/null 2>&1 || pkgs+=(npm)
command -v chromium >/dev/null 2>&1 || pkgs+=(chromium)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# --- build ---------------------------------------------------------------------
if [ ! -f "$build_dir/build.ninja" ]; then
  cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release
fi
ninja -C "$build_dir" -j"$(nproc)"
echo "setup: built $build_dir/llm"

# --- first run -----------------------------------------------------------------
if [ "$run_demo" = 1 ]; then
  model=../shared/models/stories260K.gguf
  if [ ! -f "$model" ]; then
    # No bundled model beside the clone: a small synthetic one (random weights).
    model=$build_dir/tiny.gguf
    [ -f "$model" ] || "$build_dir/llm" make-model --shape tiny --type f16 -o "$model"
  fi
  "$build_dir/llm" run -m "$model" -p "Once upon a time" -n 64
  if [ "$serve" = 1 ]; then
    # stories260K has no chat template of its own: chatml is the documented fallback.
    exec "$build_dir/llm" serve -m "$model" --chat-template chatml
  fi
fi
