#!/usr/bin/env bash
# README command 2 (and what CI runs): install dependencies if missing, build, run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --test
scripts/build.sh
# A run in which no test ran (no GoogleTest at configure time, a wrong build directory) fails.
# A test that cannot run fails too, unless EVL_ALLOW_SKIPS=1 (tests/skip_policy.cmake).
ctest --test-dir build --output-on-failure --no-tests=error -j 2 "$@"
