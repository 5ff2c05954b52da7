#!/usr/bin/env bash
# Run the paced tests (tests/conftest.py: PACED) beside a command run at the lowest CPU priority.
#
# A paced test is bound by a key's real rate, not by the CPU: the thousand-trigger test spends
# about 400 s waiting for its 1,000 progress reads at 3 calls/s and uses about 5 s of CPU. Run
# alone it leaves the two cores idle; run beside busy neighbours of the same priority, its event
# loop can be held up and its calls bunch into a burst (two 429s, once). So the command beside it
# (`make test`: the reduced stages) runs at nice 19: it takes only what the paced test leaves, and
# the paced test keeps its timing.
#
# Both always run to their end; exits non-zero if either failed.
#
# Usage: bash scripts/run-paced-beside.sh PYTHON COMMAND [ARGS...]
set -euo pipefail

PYTHON="${1:?usage: bash scripts/run-paced-beside.sh PYTHON COMMAND [ARGS...]}"
shift
[ "$#" -ge 1 ] || { echo "usage: bash scripts/run-paced-beside.sh PYTHON COMMAND [ARGS...]" >&2; exit 2; }

started=$SECONDS
"$PYTHON" -m pytest -p no:cacheprovider -m paced --durations=5 tests &
paced=$!
status=0
nice -n 19 "$@" || status=$?
paced_status=0
wait "$paced" || paced_status=$?
echo "run-paced-beside.sh: paced tests (exit $paced_status) and '$*' (exit $status) took $((SECONDS - started)) s" >&2
# 5: pytest selected no test.
if [ "$paced_status" -ne 0 ] && [ "$paced_status" -ne 5 ]; then
    status=1
fi
exit "$status"
