"""Teardown leaves no process of a deployment behind, even when the code using it fails.

A module of its own so that the shared deployment of ``test_harness`` is already gone: two
deployments at once would halve the CPU each gets on a two-core machine.
"""

from __future__ import annotations

import os
import time

import psutil
import pytest

from airflow_harness import AirflowDeployment, pid_alive, session_processes

from .conftest import HARNESS_DAGS

pytestmark = [pytest.mark.deployment, pytest.mark.timeout(300)]

DAG_ID = "harness_deferrable"


def test_teardown_kills_everything_even_on_failure() -> None:
    """A failing body inside ``with`` still ends every process, including task runners, which
    leave the service's process group (``setpgid``) but not its session."""
    af = AirflowDeployment(HARNESS_DAGS)
    pids: list[int] = []
    sids: dict[str, int] = {}
    pgids: set[int] = set()
    with pytest.raises(RuntimeError, match="test body failed"), af:
        af.wait_for_dag(DAG_ID)
        af.unpause(DAG_ID)
        run_id = af.trigger(DAG_ID, conf={"before_seconds": 120})
        af.wait_for_task_state(DAG_ID, run_id, "before", "running", timeout=90)
        sids = af.session_ids()
        deadline = time.monotonic() + 30
        while len(pgids) <= len(sids):  # the task runner has a process group of its own
            assert time.monotonic() < deadline, "no task runner process group appeared"
            pids = af.all_pids()
            pgids = {os.getpgid(p) for p in pids if pid_alive(p)}
            time.sleep(0.2)
        raise RuntimeError("test body failed")

    assert pids
    assert [p for p in pids if pid_alive(p)] == []
    for sid in sids.values():
        assert session_processes(sid) == []
    for proc in psutil.process_iter():
        try:
            assert os.getpgid(proc.pid) not in pgids
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    assert not af.home.exists()
