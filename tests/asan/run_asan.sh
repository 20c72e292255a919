#!/usr/bin/env bash
# Builds tests/asan (the data pipeline with -fsanitize=address) and runs the loader stress program.
# usage: run_asan.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
src=$1 build=$2
cmake -S "$src/tests/asan" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j 2
rm -rf "$build/data"
# Leaks inside the uninstrumented LibTorch/OpenMP runtimes are theirs, not ours.
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1 \
LSAN_OPTIONS=suppressions="$src/tests/asan/lsan.supp":print_suppressions=0 \
  "$build/asan_loader" "$build/data"
