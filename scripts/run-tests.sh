#!/usr/bin/env bash
# Run tests the way `make test` does, in two pytest runs (which test is which: tests/conftest.py):
#
# 1. every test not marked serial, in four pytest-xdist workers (on 2 cores most of them wait on
#    sockets and timers; four workers measured fastest, ahead of three and six);
# 2. then the tests marked serial (real Airflow deployments, processes timed against a key's real
#    rate), one at a time, in a run of their own; the paced ones among them (bound by a key's rate,
#    not the CPU) are left to scripts/run-paced-beside.sh, which `make test` runs beside the stages.
#
# A run that selects nothing is skipped (pytest's exit status 5). Both always run; exits non-zero
# if either failed.
#
# Usage: bash scripts/run-tests.sh PYTHON [pytest arguments and paths]   (default paths: tests/)
set -euo pipefail

PYTHON="${1:?usage: bash scripts/run-tests.sh PYTHON [pytest arguments and paths]}"
shift
PYTEST=("$PYTHON" -m pytest -p no:cacheprovider)
WORKERS=(-n 4 --dist worksteal)

failed=0
for run in parallel serial; do
    started=$SECONDS
    status=0
    if [ "$run" = parallel ]; then
        "${PYTEST[@]}" "${WORKERS[@]}" -m "not serial" "$@" || status=$?
    else
        # The slowest serial tests are listed: they are what `make test`'s time is made of.
        "${PYTEST[@]}" -m "serial and not paced" --durations=20 "$@" || status=$?
    fi
    # 5: pytest selected no test here.
    if [ "$status" -ne 0 ] && [ "$status" -ne 5 ]; then
        failed=1
    fi
    echo "run-tests.sh: $run tests took $((SECONDS - started)) s (exit $status)" >&2
done
exit "$failed"
