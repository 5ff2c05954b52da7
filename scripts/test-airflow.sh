#!/usr/bin/env bash
# Run the provider's tests on an older Airflow minor: 3.1 or 3.2 (`make test` covers 3.3).
#
# Creates or refreshes .venv-VERSION from constraints/airflow-VERSION.txt (anew, and only when the
# constraints or a pyproject.toml changed since, as the Makefile's stamp does), installs the
# emulator and the provider as wheels built from this checkout, and runs the unit, emulator and DAG tests
# (dag.test(), deferrable included) with an AIRFLOW_HOME of their own. Not run here: the real
# deployments (tests/deployment), the benchmarks and the thousand-trigger test (tests/triggers),
# which need Airflow 3.3's deployment harness, and the gallery's s3:// test (like tests/storage, it
# needs the Amazon provider and moto, pinned for 3.3 only).
#
# Usage: bash scripts/test-airflow.sh 3.1|3.2 [pytest arguments, e.g. -x or -k reconnect]
set -euo pipefail

VERSION="${1:-}"
case "$VERSION" in
    3.1 | 3.2) shift ;;
    *)
        echo "usage: bash scripts/test-airflow.sh 3.1|3.2 [pytest arguments]" >&2
        exit 2
        ;;
esac

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
VENV=".venv-$VERSION"
CONSTRAINTS="constraints/airflow-$VERSION.txt"
STAMP="$VENV/.installed"
PIP=("$VENV/bin/pip" install --quiet --disable-pip-version-check)

stale() {
    [ ! -f "$STAMP" ] && return 0
    for input in "$CONSTRAINTS" pyproject.toml emulator/pyproject.toml; do
        if [ -f "$input" ] && [ "$input" -nt "$STAMP" ]; then
            return 0
        fi
    done
    return 1
}

if stale; then
    echo "test-airflow.sh: preparing $VENV from $CONSTRAINTS" >&2
    prepared=$SECONDS
    # --clear: a refreshed venv holds exactly the pins, nothing left from earlier ones.
    "$PYTHON" -m venv --clear "$VENV"
    # The constraints pin every package the provider, its test extra and the emulator need, so
    # the checkout itself goes in without dependencies (pyproject may still ask for a newer
    # Airflow than the one under test).
    "${PIP[@]}" -r "$CONSTRAINTS"
    touch "$STAMP"
    echo "test-airflow.sh: $VENV prepared in $((SECONDS - prepared)) s" >&2
fi

# The provider and the emulator go in as the wheels built from this checkout, as a user installs
# them from the package index (not editable): tests/compat/test_installed_package.py then runs
# Airflow's CLI and the deferrable example from outside the checkout, on the installed wheel.
WHEELS="$(mktemp -d "${TMPDIR:-/tmp}/lotimage-wheels-$VERSION.XXXXXX")"
AIRFLOW_HOME="$(mktemp -d "${TMPDIR:-/tmp}/lotimage-airflow-$VERSION.XXXXXX")"
trap 'rm -rf "$AIRFLOW_HOME" "$WHEELS"' EXIT
for project in ./emulator .; do
    "$VENV/bin/python" -m build --no-isolation --wheel --outdir "$WHEELS" "$project" >"$WHEELS/build.log" 2>&1 ||
        { cat "$WHEELS/build.log"; exit 1; }
done
rm -rf build emulator/build ./*.egg-info emulator/src/*.egg-info
# --no-deps: the constraints pinned every dependency above; `pip check` then proves that the
# wheels' declared requirements (the Airflow floor, the dependency floors) accept those pins.
"${PIP[@]}" --no-deps --force-reinstall "$WHEELS"/*.whl
"$VENV/bin/pip" check --disable-pip-version-check
export LOTIMAGE_EXPECT_WHEEL=1

bash scripts/system-packages.sh # tinyproxy, for tests/network

export AIRFLOW_HOME LOTIMAGE_TEST_AIRFLOW_HOME="$AIRFLOW_HOME"

echo "test-airflow.sh: $("$VENV/bin/python" -c 'import airflow; print("Airflow", airflow.__version__)'), AIRFLOW_HOME=$AIRFLOW_HOME" >&2
started=$SECONDS
status=0
"$VENV/bin/python" -m pytest -q -p no:cacheprovider \
    tests/client tests/utils tests/test_provider_info.py tests/test_stable_names.py tests/storage/test_images.py \
    tests/emulator tests/hooks tests/operators tests/sensors tests/dags tests/reliability tests/network \
    tests/ratelimit tests/compat tests/gallery --ignore=tests/gallery/test_s3.py "$@" || status=$?
echo "test-airflow.sh: Airflow $VERSION tests took $((SECONDS - started)) s (exit $status)" >&2
exit "$status"
