#!/usr/bin/env bash
# Run example_lotimage_imagine end to end against the bundled LotImage emulator, with no key and
# no internet. Pictures land in ./output/. The emulator is stopped however the run ends.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BIN="$ROOT/.venv/bin"
PORT=${LOTIMAGE_DEMO_PORT:-8765}
KEY="demo-$(date +%s)-$RANDOM"

export AIRFLOW_HOME="$ROOT/.airflow_home"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__DAGS_FOLDER="$ROOT/example_dags"
export AIRFLOW__LOGGING__LOGGING_LEVEL=WARNING
export LOTIMAGE_OUTPUT_DIR="$ROOT/output"
export LOTIMAGE_POLL_INTERVAL=1
export AIRFLOW_CONN_LOTIMAGE_DEFAULT="{\"conn_type\": \"lotimage\", \"host\": \"http://127.0.0.1:$PORT\", \"password\": \"$KEY\"}"
mkdir -p "$AIRFLOW_HOME" "$LOTIMAGE_OUTPUT_DIR"

# The key reaches the emulator through its environment, never on a command line.
LOTIMAGE_EMULATOR_KEYS="$KEY" setsid "$BIN/lotimage-emulator" --port "$PORT" --time-scale 0.1 \
    > "$AIRFLOW_HOME/emulator.log" 2>&1 &
EMULATOR_PID=$!
trap 'kill -TERM -- -$EMULATOR_PID 2>/dev/null || true; wait $EMULATOR_PID 2>/dev/null || true' EXIT

for _ in $(seq 1 100); do
    if "$BIN/python" -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$PORT/_emulator/health', timeout=1)" 2>/dev/null; then
        break
    fi
    sleep 0.1
done

echo "Preparing Airflow's database in $AIRFLOW_HOME ..."
"$BIN/airflow" db migrate > "$AIRFLOW_HOME/db-migrate.log" 2>&1

echo "Running example_lotimage_imagine against the emulator on port $PORT ..."
"$BIN/airflow" dags test example_lotimage_imagine > "$AIRFLOW_HOME/dags-test.log" 2>&1 || {
    tail -n 60 "$AIRFLOW_HOME/dags-test.log"
    echo "The DAG run failed; full log: $AIRFLOW_HOME/dags-test.log" >&2
    exit 1
}
grep -q "state=success\|DagRunState.SUCCESS\|success" "$AIRFLOW_HOME/dags-test.log" || true

shopt -s nullglob
pictures=("$LOTIMAGE_OUTPUT_DIR"/*.png)
if [ ${#pictures[@]} -eq 0 ]; then
    echo "No picture was written to $LOTIMAGE_OUTPUT_DIR" >&2
    exit 1
fi
echo "Pictures written to $LOTIMAGE_OUTPUT_DIR:"
printf '  %s\n' "${pictures[@]}"
