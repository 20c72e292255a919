#!/usr/bin/env bash
# Builds one libFuzzer target with clang and runs it for a short time over a seed corpus.
# usage: run_fuzz.sh SOURCE_DIR BUILD_DIR SECONDS TARGET [SEED_FILE...]
# (a target may also write its own seeds into $EVL_FUZZ_SEED_DIR when it starts)
set -euo pipefail
src=$1 build=$2 seconds=$3 target=$4
shift 4
cmake -S "$src/tests/fuzz" -B "$build" -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j 2 --target "$target"
corpus="$build/corpus_$target"
mkdir -p "$corpus"
for f in "$@"; do [ -f "$f" ] && cp "$f" "$corpus/"; done
# Leaks count as failures: hostile input must not be able to exhaust memory across calls.
EVL_FUZZ_SEED_DIR="$corpus" "$build/$target" -max_total_time="$seconds" -max_len=262144 -rss_limit_mb=4096 \
  -print_final_stats=1 -artifact_prefix="$build/" "$corpus"
