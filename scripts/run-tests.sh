#!/usr/bin/env bash
# Run tests the way `make test` does, in three pytest runs (which test is which: tests/conftest.py):
#
# 1. every test that runs in the test process itself, in four pytest-xdist workers (on 2 cores
#    most of them wait on sockets and timers; four workers measured fastest, ahead of three and six);
# 2. then the tests marked serial (real Airflow deployments, processes timed against the key's
#    real rate), one at a time, in a run of their own;
# 3. beside run 2, the tests marked sleep_bound (minutes of waiting at the key's real rate, almost
#    no CPU); their output is shown after run 2's.
#
# A run that selects nothing is skipped (pytest's exit status 5). Exits non-zero if any run failed.
#
# Usage: bash scripts/run-tests.sh PYTHON [pytest arguments and paths]   (default paths: tests/)
set -euo pipefail

PYTHON="${1:?usage: bash scripts/run-tests.sh PYTHON [pytest arguments and paths]}"
shift
PYTEST=("$PYTHON" -m pytest -p no:cacheprovider)
WORKERS=(-n 4 --dist worksteal)

# pytest's status, with 5 (no test selected) counted as success.
passed() {
    [ "$1" -eq 0 ] || [ "$1" -eq 5 ]
}

failed=0
started=$SECONDS
status=0
"${PYTEST[@]}" "${WORKERS[@]}" -m "not serial and not sleep_bound" "$@" || status=$?
passed "$status" || failed=1
echo "run-tests.sh: in-process tests took $((SECONDS - started)) s" >&2

beside_log="$(mktemp "${TMPDIR:-/tmp}/lotimage-sleep-bound.XXXXXX")"
# Two test processes at once: when the caller gives the AIRFLOW_HOME (scripts/test-airflow.sh), the
# run beside gets a folder of its own in it (otherwise each pytest run makes its own anyway).
beside_env=()
if [ -n "${LOTIMAGE_TEST_AIRFLOW_HOME:-}" ]; then
    beside_env=(env LOTIMAGE_TEST_AIRFLOW_HOME="$LOTIMAGE_TEST_AIRFLOW_HOME/sleep-bound")
fi
"${beside_env[@]}" "${PYTEST[@]}" -m sleep_bound "$@" >"$beside_log" 2>&1 &
beside=$!
trap 'kill "$beside" 2>/dev/null || true; rm -f "$beside_log"' EXIT
started=$SECONDS
status=0
"${PYTEST[@]}" -m serial "$@" || status=$?
passed "$status" || failed=1
echo "run-tests.sh: serial tests took $((SECONDS - started)) s" >&2
status=0
wait "$beside" || status=$?
passed "$status" || failed=1
echo "run-tests.sh: sleep-bound tests, run beside the serial ones:" >&2
cat "$beside_log"
exit "$failed"
