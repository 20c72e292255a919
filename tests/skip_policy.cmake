# Whether a test that cannot run (a tool, service or permission missing) may report "Skipped".
# On CI and from the README's test command everything the tests need is installed, so a skip is a
# failure there: googletest's "[  SKIPPED ]" (a GTEST_SKIP, or every test of a suite whose
# SetUpTestSuite failed) and a script's exit status 77 fail the test. Someone running the suite on
# a machine without those tools opts in with EVL_ALLOW_SKIPS=1 in the environment when configuring
# (scripts/build.sh configures on every run, so `EVL_ALLOW_SKIPS=1 scripts/test.sh` works).
#   EVL_GTEST_SKIP_POLICY   properties for gtest_discover_tests(... PROPERTIES ...)
#   EVL_SCRIPT_SKIP_POLICY  properties for a script's add_test
if("$ENV{EVL_ALLOW_SKIPS}" STREQUAL "1")
  set(EVL_GTEST_SKIP_POLICY SKIP_REGULAR_EXPRESSION "  SKIPPED ")
  set(EVL_SCRIPT_SKIP_POLICY SKIP_RETURN_CODE 77)
  message(STATUS "EVL_ALLOW_SKIPS=1: tests that cannot run here report Skipped")
else()
  # gtest_discover_tests sets its own skip expression first; this one replaces it.
  set(EVL_GTEST_SKIP_POLICY SKIP_REGULAR_EXPRESSION "EVL_ALLOW_SKIPS_IS_NOT_SET" FAIL_REGULAR_EXPRESSION "  SKIPPED ")
  set(EVL_SCRIPT_SKIP_POLICY)
endif()
