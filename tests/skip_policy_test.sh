#!/usr/bin/env bash
# The skip policy (tests/skip_policy.cmake) on a scratch CTest project: without EVL_ALLOW_SKIPS a
# test that reports "[  SKIPPED ]" and passes (a GTEST_SKIP), one that reports it and exits 1 (every
# test of a suite whose SetUpTestSuite failed), and a script exiting 77 each fail, and ctest exits
# non-zero; with EVL_ALLOW_SKIPS=1 they are Skipped and ctest exits 0. A project without any test
# fails with the README's --no-tests=error.
#   skip_policy_test.sh POLICY_CMAKE SCRATCH_DIR
set -euo pipefail
policy=$1 dir=$2
rm -rf "$dir" && mkdir -p "$dir/src"
cat > "$dir/src/CMakeLists.txt" <<CMAKE
cmake_minimum_required(VERSION 3.22)
project(skip_policy NONE)
enable_testing()
include($policy)
# What gtest_discover_tests sets first, then the policy's properties after it (as there).
foreach(name gtest_skip suite_setup_failed)
  if(name STREQUAL gtest_skip)
    add_test(NAME \${name} COMMAND sh -c "echo '[  SKIPPED ] Suite.Test (0 ms)'; exit 0")
  else()
    add_test(NAME \${name} COMMAND sh -c "echo '[  SKIPPED ] Slurm.Requeue (0 ms)'; exit 1")
  endif()
  set_tests_properties(\${name} PROPERTIES SKIP_REGULAR_EXPRESSION "\\\\[  SKIPPED \\\\]" \${EVL_GTEST_SKIP_POLICY})
endforeach()
add_test(NAME script_77 COMMAND sh -c "exit 77")
set_tests_properties(script_77 PROPERTIES LABELS x \${EVL_SCRIPT_SKIP_POLICY})
add_test(NAME passes COMMAND sh -c "exit 0")
CMAKE
run() {  # run ALLOW -> ctest's exit status; its output in $dir/out
  rm -rf "$dir/build"
  EVL_ALLOW_SKIPS=$1 cmake -S "$dir/src" -B "$dir/build" >/dev/null
  local rc=0
  ctest --test-dir "$dir/build" --no-tests=error >"$dir/out" 2>&1 || rc=$?
  echo "$rc"
}
fail=0
rc=$(run "")
for t in gtest_skip suite_setup_failed script_77; do
  grep -Eq "$t \.+\*+(Failed|Exit code)" "$dir/out" || { echo "without EVL_ALLOW_SKIPS, $t did not fail:"; cat "$dir/out"; fail=1; }
done
[ "$rc" -ne 0 ] || { echo "without EVL_ALLOW_SKIPS, ctest exited 0"; cat "$dir/out"; fail=1; }
rc=$(run 1)
[ "$rc" -eq 0 ] || { echo "with EVL_ALLOW_SKIPS=1, ctest exited $rc"; cat "$dir/out"; fail=1; }
[ "$(grep -c 'Skipped' "$dir/out")" -ge 3 ] || { echo "with EVL_ALLOW_SKIPS=1, the three were not Skipped:"; cat "$dir/out"; fail=1; }
# No test at all is a failure too.
mkdir -p "$dir/empty" && printf 'cmake_minimum_required(VERSION 3.22)\nproject(e NONE)\nenable_testing()\n' > "$dir/empty/CMakeLists.txt"
cmake -S "$dir/empty" -B "$dir/empty/build" >/dev/null
if ctest --test-dir "$dir/empty/build" --no-tests=error >/dev/null 2>&1; then echo "a run without tests passed"; fail=1; fi
[ "$fail" -eq 0 ] && echo "skip policy: OK"
exit "$fail"
