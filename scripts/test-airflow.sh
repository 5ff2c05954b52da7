#!/usr/bin/env bash
# Run the provider's reduced test stage on one Airflow minor and one Python version (`make test`
# runs the whole suite on Airflow 3.3 with Python 3.11, then these stages: see the Makefile).
#
# Creates or refreshes .venv-AIRFLOW-pyPYTHON from constraints/airflow-AIRFLOW-pyPYTHON.txt (anew, and
# only when the constraints or a pyproject.toml changed since, as the Makefile's stamp does), with
# that Python: found under pyenv (`pyenv root`/versions/PYTHON.*) or as pythonPYTHON on PATH. Without
# it the stage is skipped, saying so; with CI=true it fails instead, since CI must run every stage.
# Installs the emulator and the provider as wheels built from this checkout, and runs the unit,
# emulator and DAG tests (dag.test(), deferrable included) and the OpenLineage events (tests/lineage)
# with an AIRFLOW_HOME of their own, through scripts/run-tests.sh (pytest-xdist workers). Not run
# here: the real deployments (tests/deployment, tests/distributed), the benchmarks and the
# thousand-trigger test (tests/triggers), which need the whole suite's deployment harness and time,
# and the gallery's s3:// test (like tests/storage, it needs the Amazon provider and moto, pinned
# in constraints.txt only).
#
# Usage: bash scripts/test-airflow.sh AIRFLOW PYTHON [pytest arguments, e.g. -x or -k reconnect]
#        e.g. bash scripts/test-airflow.sh 3.1 3.12
set -euo pipefail

usage() {
    echo "usage: bash scripts/test-airflow.sh AIRFLOW PYTHON [pytest arguments]; stages:" >&2
    (cd "$(dirname "${BASH_SOURCE[0]}")/../constraints" && ls airflow-*-py*.txt) |
        sed -E 's/^airflow-(.*)-py(.*)\.txt$/    \1 \2/' >&2
    exit 2
}

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
[ "$#" -ge 2 ] || usage
VERSION="$1"
PY_VERSION="$2"
shift 2
STAGE="$VERSION-py$PY_VERSION"
CONSTRAINTS="constraints/airflow-$STAGE.txt"
[ -f "$CONSTRAINTS" ] || usage
VENV=".venv-$STAGE"
STAMP="$VENV/.installed"
PIP=("$VENV/bin/pip" install --quiet --disable-pip-version-check)

# The newest installed patch release of Python PY_VERSION: pyenv's (`pyenv root`, or PYENV_ROOT or
# ~/.pyenv when pyenv is not on PATH), then pythonPY_VERSION on PATH; each is asked for its version
# (a pyenv shim exists even where it cannot run).
find_python() {
    local candidate pyenv_root
    pyenv_root="$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")"
    {
        compgen -G "$pyenv_root/versions/$PY_VERSION.*/bin/python$PY_VERSION" | sort -rV || true
        command -v "python$PY_VERSION" || true
    } | while read -r candidate; do
        if "$candidate" -c "import sys; sys.exit(f'{sys.version_info[0]}.{sys.version_info[1]}' != '$PY_VERSION')" \
            2>/dev/null; then
            echo "$candidate"
            break
        fi
    done
}

PYTHON="$(find_python)"
if [ -z "$PYTHON" ]; then
    message="no Python $PY_VERSION found (pyenv install $PY_VERSION, or put python$PY_VERSION on PATH)"
    if [ "${CI:-}" = "true" ]; then
        echo "test-airflow.sh: Airflow $VERSION on Python $PY_VERSION: $message; CI=true requires this stage" >&2
        exit 1
    fi
    echo "test-airflow.sh: SKIPPED Airflow $VERSION on Python $PY_VERSION: $message" >&2
    exit 0
fi

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
    echo "test-airflow.sh: preparing $VENV from $CONSTRAINTS with $PYTHON" >&2
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
WHEELS="$(mktemp -d "${TMPDIR:-/tmp}/lotimage-wheels-$STAGE.XXXXXX")"
AIRFLOW_HOME="$(mktemp -d "${TMPDIR:-/tmp}/lotimage-airflow-$STAGE.XXXXXX")"
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

# Each pytest-xdist worker makes its own AIRFLOW_HOME under this one (tests/conftest.py).
export AIRFLOW_HOME LOTIMAGE_TEST_AIRFLOW_HOME="$AIRFLOW_HOME"

echo "test-airflow.sh: $("$VENV/bin/python" -c 'import airflow, sys; print(f"Airflow {airflow.__version__} on Python {sys.version.split()[0]}")'), AIRFLOW_HOME=$AIRFLOW_HOME" >&2
started=$SECONDS
status=0
bash scripts/run-tests.sh "$VENV/bin/python" -q \
    tests/client tests/utils tests/test_provider_info.py tests/test_stable_names.py tests/storage/test_images.py \
    tests/emulator tests/hooks tests/operators tests/sensors tests/dags tests/reliability tests/network \
    tests/ratelimit tests/compat tests/gallery tests/lineage --ignore=tests/gallery/test_s3.py "$@" || status=$?
echo "test-airflow.sh: Airflow $VERSION on Python $PY_VERSION: tests took $((SECONDS - started)) s (exit $status)" >&2
exit "$status"
