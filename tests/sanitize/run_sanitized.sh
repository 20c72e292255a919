#!/usr/bin/env bash
# Builds tests/sanitize with one sanitizer and runs its stress programs; any report fails.
# usage: run_sanitized.sh SOURCE_DIR BUILD_DIR address|thread
set -euo pipefail
src=$1 build=$2 sanitizer=$3
cmake -S "$src/tests/sanitize" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEVL_SANITIZER="$sanitizer" >/dev/null
cmake --build "$build" -j 2
rm -rf "$build/data" "$build/ckpt"
# One intra-op thread: LibTorch's OpenMP pool is not instrumented, and evl's threads are the point.
export OMP_NUM_THREADS=1
if [ "$sanitizer" = address ]; then
  # Leaks inside the uninstrumented LibTorch/OpenMP runtimes are theirs, not ours.
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1 \
  LSAN_OPTIONS=suppressions="$src/tests/sanitize/lsan.supp":print_suppressions=0 \
    "$build/loader_stress" "$build/data"
  exit 0
fi
export TSAN_OPTIONS="halt_on_error=1 exitcode=66"
"$build/loader_stress" "$build/data"
"$build/checkpointer_stress" "$build/ckpt"
# Shared memory between the two local ranks: the TCP transport has lock-order reports of its own.
mpirun --allow-run-as-root --oversubscribe -np 2 --mca btl self,vader -x TSAN_OPTIONS -x OMP_NUM_THREADS "$build/comm_stress"
