"""The key's rate budget across machines: scope ``redis`` on the distributed deployment.

Two Celery workers and two triggerers are four machines calling LotImage with one key (3 calls/s,
3 tasks running). Scope ``host`` gives each machine the whole budget, so together they can
exceed it; scope ``redis`` shares one budget through the Redis connection ``redis_default``.
The emulator enforces the key's limits and counts every 429 and every paid task.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from lotimage_emulator import Emulator

from airflow_harness import AirflowDeployment

from .helpers import (
    BATCH_DAG,
    RATE,
    UPSCALES,
    Counters,
    lotimage_hosts,
    make_prompts,
    paid_prompts,
    set_lotimage_connection,
    start_run,
    wait_until,
)

pytestmark = [pytest.mark.distributed, pytest.mark.timeout(900)]

#: Prompts of the batch scenario; each costs one imagine and four upscales.
BATCH_PROMPTS = 6
#: Prompts of the Redis-outage scenario: enough calls in flight while Redis is away.
OUTAGE_PROMPTS = 4
#: Seconds the budget's Redis stays down.
OUTAGE_SECONDS = 10.0
RUN_TIMEOUT = 420.0


def _stored_task_ids(output_dir: Path) -> set[str]:
    """LotImage taskIds with a picture stored by the batch (their sidecars name them)."""
    ids = set()
    for sidecar in (output_dir / "batch").glob("*.json"):
        meta: Any = json.loads(sidecar.read_text(encoding="utf-8"))
        ids.add(str(meta.get("lotimage_task_id")))
    return ids


def _run_batch(
    af: AirflowDeployment, emulator: Emulator, output_dir: Path, tag: str
) -> tuple[Counters, float]:
    """Run the batch example over fresh prompts; check it succeeded, paid once each and stored it all."""
    prompts = make_prompts(tag, BATCH_PROMPTS)
    t0 = time.monotonic()
    result = af.run_dag(BATCH_DAG, conf={"prompts": prompts, "skip_stored": False}, timeout=RUN_TIMEOUT)
    elapsed = time.monotonic() - t0
    counters = Counters.of(emulator)
    assert result.ok, result.task_states
    assert counters.imagines == BATCH_PROMPTS and counters.buttons == BATCH_PROMPTS * UPSCALES, counters
    assert paid_prompts(emulator) == sorted(prompts), "a prompt was paid twice or not at all"
    paid_ids = {task["taskId"] for task in emulator.tasks()}
    assert paid_ids <= _stored_task_ids(output_dir), "a paid picture was not stored"
    return counters, elapsed


def test_batch_with_redis_budget_gets_no_429(
    af: AirflowDeployment, emulator: Emulator, output_dir: Path, record_property: Any
) -> None:
    counters, elapsed = _run_batch(af, emulator, output_dir, "redis scope")
    print(f"\nbatch, scope redis: {elapsed:.1f}s, 429 answers {counters.rate_limited}, {counters}")
    record_property("redis_scope_429", counters.rate_limited)
    record_property("redis_scope_seconds", round(elapsed, 1))
    assert counters.rate_limited == 0, "one budget across the machines must keep within the key's rate"


def test_batch_with_host_budgets_is_measured(
    af: AirflowDeployment, emulator: Emulator, output_dir: Path, record_property: Any
) -> None:
    """The same batch with one budget per machine: its 429 count is recorded, not asserted."""
    set_lotimage_connection(af, emulator.url, scope="host")
    counters, elapsed = _run_batch(af, emulator, output_dir, "host scope")
    print(
        f"\nbatch, scope host ({lotimage_hosts(af)} machines): {elapsed:.1f}s, "
        f"429 answers {counters.rate_limited}, {counters}"
    )
    record_property("host_scope_429", counters.rate_limited)
    record_property("host_scope_seconds", round(elapsed, 1))


def _fallback_warnings(af: AirflowDeployment, run_id: str) -> list[dict[str, Any]]:
    """WARNING records of the run's task and trigger logs that name the budget's Redis connection."""
    return [
        record
        for record in af.task_log_records(BATCH_DAG, run_id)
        if record.get("level") == "warning" and "redis_default" in str(record.get("event"))
    ]


def test_budget_redis_outage_falls_back_without_a_429_storm(
    af: AirflowDeployment, emulator: Emulator, record_property: Any
) -> None:
    """Redis stopped mid-run, then started again: the run goes on with host budgets meanwhile.

    The 429 bound is every machine spending its whole budget for as long as Redis was down. It
    credits nothing for the few seconds the fallback may outlast the outage (a caller asks Redis
    again only every few seconds), which the measured counts leave far behind anyway.
    """
    redis = af.budget_redis
    assert redis is not None
    prompts = make_prompts("redis outage", OUTAGE_PROMPTS)
    t0 = time.monotonic()
    run_id = start_run(af, BATCH_DAG, {"prompts": prompts, "skip_stored": False})
    wait_until(lambda: Counters.of(emulator).imagines >= 2, 180, "two imagines paid")

    stopped = time.monotonic()
    redis.stop()
    assert not redis.ping()
    time.sleep(OUTAGE_SECONDS)
    redis.start()
    down = time.monotonic() - stopped

    result = af.wait_for_run(BATCH_DAG, run_id, timeout=RUN_TIMEOUT)
    elapsed = time.monotonic() - t0
    counters = Counters.of(emulator)
    hosts = lotimage_hosts(af)
    bound = hosts * down * RATE
    print(
        f"\nbudget Redis down {down:.1f}s mid-run: run {elapsed:.1f}s, 429 answers {counters.rate_limited} "
        f"(bound {hosts} machines x {down:.1f} s x {RATE:.0f}/s = {bound:.0f}), {counters}"
    )
    record_property("redis_outage_429", counters.rate_limited)
    record_property("redis_outage_seconds", round(down, 1))

    assert result.ok, result.task_states
    assert counters.imagines == OUTAGE_PROMPTS and counters.buttons == OUTAGE_PROMPTS * UPSCALES, counters
    assert paid_prompts(emulator) == sorted(prompts), "a prompt was paid twice or not at all"
    warnings = _fallback_warnings(af, run_id)
    assert warnings, "no task or trigger log says it fell back from the Redis budget"
    files = sorted({record["_file"] for record in warnings})
    print(f"fallback warning in {len(files)} log file(s) ({', '.join(files)}): {warnings[0]['event']}")
    assert counters.rate_limited <= bound, "a 429 storm while the budget's Redis was away"
