#!/usr/bin/env bash
# Builds tests/sanitize with one sanitizer and runs its stress programs; any report fails.
# usage: run_sanitized.sh SOURCE_DIR BUILD_DIR address|thread [--mpi]
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
"$build/queue_stress"
# The MPI communicator itself on 2 ranks, by hand only (`run_sanitized.sh SRC BUILD thread --mpi`):
# under MPI_THREAD_MULTIPLE whichever thread calls MPI progresses every request, ordered by
# OpenMPI's own atomics, which ThreadSanitizer cannot see in an uninstrumented OpenMPI; it then
# reports, in about one run of five, races on OpenMPI's request memory (a blocking send's request
# on the queue thread's stack touched by the arrival board's Isend) and on receive buffers filled
# by another thread. Suppressions do not hold for these interceptor-rooted reports. Shared memory
# between the ranks: the TCP transport has lock-order reports of its own.
if [ "${4:-}" = "--mpi" ]; then
  mpirun --allow-run-as-root --oversubscribe -np 2 --mca btl self,vader -x TSAN_OPTIONS -x OMP_NUM_THREADS "$build/comm_stress"
fi
