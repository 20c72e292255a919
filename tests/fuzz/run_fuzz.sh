#!/usr/bin/env bash
# Builds the libFuzzer targets with clang and runs each for a short time over a seed corpus.
# usage: run_fuzz.sh SOURCE_DIR BUILD_DIR SECONDS SEED_FILE...
set -euo pipefail
src=$1 build=$2 seconds=$3
shift 3
cmake -S "$src/tests/fuzz" -B "$build" -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j 2
corpus="$build/corpus_pth"
mkdir -p "$corpus"
for f in "$@"; do [ -f "$f" ] && cp "$f" "$corpus/"; done
# Leaks count as failures: a hostile pickle must not be able to exhaust memory across calls.
"$build/fuzz_pth_reader" -max_total_time="$seconds" -max_len=262144 -rss_limit_mb=4096 \
  -print_final_stats=1 -artifact_prefix="$build/" "$corpus"
