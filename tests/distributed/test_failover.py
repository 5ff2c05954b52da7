"""Machines dying under a run on the distributed deployment, and nothing paid twice.

* A triggerer SIGKILLed while triggers wait on it: once its heartbeat is older than ``[triggerer]
  triggerer_health_check_threshold`` (10 s here), the other triggerer takes its triggers over
  (Airflow's triggerer HA), and each goes on polling the task already paid for.
* A Celery worker SIGKILLed, with its children, while an ``ImagineOperator`` waits in it: the
  scheduler notices the missing heartbeats (``[scheduler] task_instance_heartbeat_timeout``, 20 s
  here), the retry runs on the other worker and reconnects to the stored taskId.

Each scenario starts the killed service again afterwards, for the scenarios that follow.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from lotimage_emulator import Emulator

from airflow_harness import AirflowDeployment

from .helpers import (
    DEFERRED_DAG,
    IN_WORKER_DAG,
    Counters,
    deferred_and_assigned,
    make_prompts,
    paid_prompts,
    run_triggers,
    start_run,
    triggerer_hosts,
    wait_until,
)

pytestmark = [pytest.mark.distributed, pytest.mark.timeout(600)]

TRIGGER_PROMPTS = 4


def test_killed_triggerer_hands_its_triggers_over(af: AirflowDeployment, emulator: Emulator) -> None:
    # Renders of 30 s: the triggers still wait when the dead triggerer's heartbeat expires.
    emulator.set_config(imagine_seconds=30.0)
    prompts = make_prompts("triggerer failover", TRIGGER_PROMPTS)
    t0 = time.monotonic()
    run_id = start_run(af, DEFERRED_DAG, {"prompts": prompts})
    triggers = wait_until(
        lambda: deferred_and_assigned(af, DEFERRED_DAG, run_id, TRIGGER_PROMPTS),
        120,
        "every imagine deferred",
    )

    hosts = triggerer_hosts(af)
    on_job = list(triggers.values())
    victim_job = max(set(on_job), key=on_job.count)
    victim = hosts[victim_job]
    theirs = {trigger for trigger, job in triggers.items() if job == victim_job}
    killed_at = time.monotonic()
    af.kill_service(victim)
    try:
        survivors = {job for job, host in hosts.items() if host != victim}

        def taken_over() -> bool:
            now = run_triggers(af, DEFERRED_DAG, run_id)
            return bool(now) and all(now[t] in survivors for t in theirs if t in now)

        wait_until(taken_over, 90, f"the triggers of {victim} taken over")
        takeover = time.monotonic() - killed_at
        result = af.wait_for_run(DEFERRED_DAG, run_id, timeout=240)
    finally:
        af.start_service(victim)
    counters = Counters.of(emulator)
    print(
        f"\ntriggerer {victim} killed holding {len(theirs)} of {TRIGGER_PROMPTS} triggers: taken over after "
        f"{takeover:.1f}s; run {time.monotonic() - t0:.1f}s; {counters}"
    )
    assert result.ok, result.task_states
    assert counters.imagines == TRIGGER_PROMPTS, counters
    assert paid_prompts(emulator) == sorted(prompts), "a prompt was paid twice or not at all"
    assert all(ti.try_number == 1 for ti in af.task_instances(DEFERRED_DAG, run_id)), "a task was retried"


def _running_on(af: AirflowDeployment, run_id: str) -> str | None:
    """The machine the ``imagine`` task is running on, once it runs."""
    for ti in af.task_instances(IN_WORKER_DAG, run_id):
        if ti.task_id == "imagine" and ti.state == "running" and ti.hostname:
            return ti.hostname
    return None


def test_killed_worker_retry_reconnects_to_the_paid_task(af: AirflowDeployment, emulator: Emulator) -> None:
    # A 45 s render: still running when the retry starts on the other worker (~30 s after the kill).
    emulator.set_config(imagine_seconds=45.0)
    t0 = time.monotonic()
    run_id = start_run(af, IN_WORKER_DAG, {"prompt": "A glass lighthouse, worker failover"})

    def waiting_after_paid_call() -> bool:
        stats = emulator.stats()
        return stats["submissions"]["imagine"] == 1 and stats["requests"]["progress"] >= 1

    wait_until(waiting_after_paid_call, 120, "imagine paid and its progress read")
    victim = wait_until(lambda: _running_on(af, run_id), 30, "the imagine task's machine")
    assert victim in af.topology.service_names("celery-worker"), victim
    killed_at, killed_wall = time.monotonic(), datetime.now(UTC)
    af.kill_service(victim)
    try:
        result = af.wait_for_run(IN_WORKER_DAG, run_id, timeout=240)
    finally:
        af.start_service(victim)
    counters = Counters.of(emulator)
    (final,) = af.task_instances(IN_WORKER_DAG, run_id)
    (first,) = af.task_instance_history(IN_WORKER_DAG, run_id)
    retry_after = (final.start_date - killed_wall).total_seconds() if final.start_date else float("nan")
    print(
        f"\nworker {victim} killed mid-wait: try {final.try_number} on {final.hostname} started "
        f"{retry_after:.1f}s and finished {time.monotonic() - killed_at:.1f}s after the kill; "
        f"run {time.monotonic() - t0:.1f}s; {counters}"
    )
    assert result.ok, result.task_states
    assert (first.try_number, first.hostname) == (1, victim)
    assert final.try_number == 2 and final.hostname not in (None, victim), final
    assert counters.imagines == 1 and counters.imagine_requests == 1, "the retry paid again"
