#!/usr/bin/env bash
# Runs the workspace tests through colcon and fails loudly (`make test` calls this).
#
#   tools/test.sh [extra colcon test args...]
#
# Plain `colcon test` exits 0 when tests fail; here any failing, erroring or
# crashing test makes the exit status non-zero, and the failing tests are listed
# with their assertion output (from the JUnit XML, `colcon test-result --verbose`).
# A package without tests (pytest exit code 5, "no tests collected") is fine, as colcon
# treats it, but a run in which no test ran at all fails.
#   make test TEST_ARGS='--pytest-args -k msgs'   # a subset
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=tools/env.sh
source tools/env.sh

rc=0
colcon test --return-code-on-test-failure \
  --event-handlers console_direct+ summary+ status- "$@" || rc=$?

# Results of this run only: colcon rewrites each package's result files.
result_rc=0
colcon test-result --test-result-base build >/dev/null 2>&1 || result_rc=$?
if [ "$rc" -ne 0 ] || [ "$result_rc" -ne 0 ]; then
  echo
  echo "================ FAILED TESTS (colcon test-result --verbose) ================"
  colcon test-result --test-result-base build --verbose || true
  echo "============================================================================="
  echo "make test: FAILED (colcon test rc=$rc, test-result rc=$result_rc)" >&2
  exit 1
fi
summary="$(colcon test-result --test-result-base build)"
echo "$summary"
if [[ "$summary" =~ Summary:\ 0\ tests ]]; then
  # colcon fell back to unittest or found no test/: that must not pass silently.
  echo "make test: FAILED: no tests ran (is pytest in setup.py's extras_require['test']?)" >&2
  exit 1
fi
echo "make test: all tests passed"
