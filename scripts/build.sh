#!/usr/bin/env bash
# Configures and builds evl into ./build (Ninja, 2 jobs by default: the machines have 2 cores and
# the LibTorch-heavy objects need ~1.5 GB each to compile).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=${CMAKE_BUILD_TYPE:-RelWithDebInfo} "$@" >/dev/null
cmake --build "$BUILD_DIR" -j "${EVL_JOBS:-2}"
