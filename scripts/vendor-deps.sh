#!/usr/bin/env bash
# Copies the header-only dependencies that Debian installs (doctest, nlohmann-json,
# cpp-httplib) into .deps/include, a git-ignored folder that travels to the GPU test
# machine (which has no package registry). Run here before a GPU run.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .deps/include
cp -r /usr/include/doctest .deps/include/
cp -r /usr/include/nlohmann .deps/include/
cp /usr/include/httplib.h .deps/include/
echo "vendored headers into .deps/include"
