"""Proves the deployment harness: a deferrable run goes through the triggerer and survives a
triggerer crash (teardown: ``test_teardown.py``)."""

from __future__ import annotations

import time

import pytest

from airflow_harness import AirflowDeployment, pid_alive

pytestmark = [pytest.mark.deployment, pytest.mark.timeout(300)]

DAG_ID = "harness_deferrable"


def test_deferrable_run_goes_through_triggerer(airflow_deployment: AirflowDeployment) -> None:
    af = airflow_deployment
    # >= ~6 s: shorter deferrals race the supervisor's late exit (see the harness docstring).
    result = af.run_dag(DAG_ID, conf={"wait_seconds": 10}, timeout=120)

    assert result.ok, result
    assert result.task_states == {"before": "success", "wait": "success", "after": "success"}
    # DB proof of the deferral: the audit log has running -> deferred -> running -> success.
    wait_events = [e.event for e in af.task_state_events(DAG_ID, result.run_id) if e.task_id == "wait"]
    assert wait_events == ["running", "deferred", "running", "success"], wait_events
    # ...and the triggerer ran the trigger: it writes its own log next to the task's.
    trigger_logs = [p for p in af.task_log_files(DAG_ID, result.run_id, "wait") if ".trigger." in p.name]
    assert trigger_logs, af.task_log_files(DAG_ID, result.run_id)

    # Worker-slot data: two worker executions of "wait", the first ending deferred.
    tis = {ti.task_id: ti for ti in af.task_instances(DAG_ID, result.run_id)}
    loads = af.run_workloads(DAG_ID, result.run_id)
    # Supervisors report when they exit, not in task order: compare as a set of outcomes.
    assert sorted(w.final_state for w in loads["wait"]) == ["deferred", "success"], loads
    slots = af.worker_slot_seconds(DAG_ID, result.run_id)
    assert set(slots) == {"before", "wait", "after"}
    assert all(seconds > 0 for seconds in slots.values())
    running = af.running_intervals(DAG_ID, result.run_id)
    assert len(running["wait"]) == 2
    running_wait = sum((end - start).total_seconds() for start, end in running["wait"])
    # task_instance.duration spans the deferral (start_date survives the resume); running time doesn't.
    assert tis["wait"].duration is not None
    assert running_wait < tis["wait"].duration
    assert tis["wait"].try_number == 1


def test_triggerer_crash_while_deferred_still_succeeds(airflow_deployment: AirflowDeployment) -> None:
    af = airflow_deployment
    af.wait_for_dag(DAG_ID)
    af.unpause(DAG_ID)
    run_id = af.trigger(DAG_ID, conf={"wait_seconds": 20})
    af.wait_for_task_state(DAG_ID, run_id, "wait", "deferred", timeout=90)

    # Kill only once the triggerer has really picked the trigger up.
    deadline = time.monotonic() + 30
    while not [t for t in af.triggers() if t["triggerer_id"] is not None]:
        assert time.monotonic() < deadline, "trigger never assigned to a triggerer"
        time.sleep(0.25)
    first_triggerer = af.triggers()[0]["triggerer_id"]

    with af.memory_sampler("triggerer", interval=0.1) as sampler:
        time.sleep(0.5)
    assert sampler.peak > 0
    assert af.rss("triggerer") > 0
    old_pids = af.kill_service("triggerer")
    assert len(old_pids) >= 2  # the triggerer and its trigger-runner subprocess
    assert not [p for p in old_pids if pid_alive(p)]
    assert af.task_states(DAG_ID, run_id)["wait"] == "deferred"

    af.start_service("triggerer")
    result = af.wait_for_run(DAG_ID, run_id, timeout=120)

    assert result.ok, result
    assert result.task_states["wait"] == "success"
    # The new triggerer ran the trigger: its log file is named after the triggerer's job id
    # (the killed one may not have flushed a log of its own).
    trigger_logs = [p.name for p in af.task_log_files(DAG_ID, run_id, "wait") if ".trigger." in p.name]
    new_ids = {int(name.rsplit(".", 2)[-2]) for name in trigger_logs} - {first_triggerer}
    assert new_ids, trigger_logs


def test_service_logs_are_available(airflow_deployment: AirflowDeployment) -> None:
    paths = airflow_deployment.log_paths()
    assert {"api-server", "scheduler", "dag-processor", "triggerer"} <= set(paths)
    assert "Starting the triggerer" in airflow_deployment.log_tail("triggerer", 200)
