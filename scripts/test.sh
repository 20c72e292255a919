#!/usr/bin/env bash
# README command 2 (and what CI runs): install dependencies if missing, build, run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --test
scripts/build.sh
ctest --test-dir build --output-on-failure -j 2 "$@"
