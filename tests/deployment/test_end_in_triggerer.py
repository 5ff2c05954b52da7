"""Tasks ending in the triggerer on a real deployment (api-server, scheduler, DAG processor,
triggerer), against the emulator: a deferrable imagine and its upscale end there once their
picture is ready, and a sensor started from the triggerer never runs on a worker.

Proof that no task went back to a worker: the supervisors' ``Workload finished`` lines (one per
worker execution, :meth:`airflow_harness.metadata.MetadataDB.run_workloads`) and the task logs,
which never show ``execute_complete`` being resumed. The emulator's counters show each paid task
was asked for once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from lotimage_emulator import Emulator, run_emulator
from lotimage_emulator.pytest_plugin import TEST_API_KEY

from airflow_harness import AirflowDeployment
from airflow_provider_lotimage.links import LotImagePictureLink
from tests.deployment.conftest import HARNESS_DAGS
from tests.deployment.counters import paid_calls

pytestmark = [pytest.mark.deployment, pytest.mark.timeout(300)]

DAG_ID = "lotimage_end_in_triggerer"


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    # An imagine takes about 5 s, an upscale about 1 s.
    with run_emulator(keys=(TEST_API_KEY,), time_scale=5 / 45, grid_size=256) as running:
        yield running


@pytest.fixture(scope="module")
def deployment(emulator: Emulator) -> Iterator[AirflowDeployment]:
    env = {
        "AIRFLOW_CONN_LOTIMAGE_DEFAULT": json.dumps(
            {"conn_type": "lotimage", "host": emulator.url, "password": TEST_API_KEY}
        ),
        "LOTIMAGE_POLL_INTERVAL": "1",
    }
    with AirflowDeployment(HARNESS_DAGS, env=env) as af:
        yield af


def xcoms(af: AirflowDeployment, run_id: str, task_id: str) -> dict[str, Any]:
    rows = af.query(
        "SELECT key, value FROM xcom WHERE dag_id = ? AND run_id = ? AND task_id = ?",
        (DAG_ID, run_id, task_id),
    )
    return {row["key"]: json.loads(row["value"]) for row in rows}


def test_imagine_upscale_and_sensor_end_in_the_triggerer(af: AirflowDeployment, emulator: Emulator) -> None:
    before = paid_calls(emulator)
    result = af.run_dag(DAG_ID, timeout=180)
    assert result.ok, result
    assert result.task_states == {
        "imagine": "success",
        "upscale": "success",
        "wait": "success",
        "check": "success",
    }

    # Each deferring task ran on a worker once (to submit and defer), the sensor never, check once.
    workloads = af.run_workloads(DAG_ID, result.run_id)
    assert {key: len(loads) for key, loads in workloads.items()} == {"imagine": 1, "upscale": 1, "check": 1}
    for task_id in ("imagine", "upscale", "wait"):
        log = af.task_log_tail(DAG_ID, result.run_id, task_id, lines=400)
        assert "finished: http" in log, log  # the trigger logged the finish
        assert "Resuming" not in log, log
    events = [(e.task_id, e.event) for e in af.task_state_events(DAG_ID, result.run_id)]
    assert ("wait", "running") not in events, events

    # The XComs a worker would have left, read by check and stored as they are.
    imagine, upscale, wait = (xcoms(af, result.run_id, t) for t in ("imagine", "upscale", "wait"))
    for values in (imagine, upscale):
        assert values["lotimage_task_id"] == values["return_value"]["lotimage_task_id"]
        assert values["lotimage_image_url"] == values["return_value"]["image_url"]
    assert upscale["return_value"]["originating_task_id"] == imagine["lotimage_task_id"]
    assert wait["return_value"] == upscale["return_value"] and "lotimage_task_id" not in wait
    # The "LotImage picture" extra link, which a worker stores when a task ends, stored anew too.
    link_key = LotImagePictureLink().xcom_key
    for values in (imagine, upscale, wait):
        assert values[link_key], values
    assert xcoms(af, result.run_id, "check")["return_value"]["wait"]["return_value"] == wait["return_value"]

    # One paid call per paid task, none repeated.
    after = paid_calls(emulator)
    assert {key: after[key] - before[key] for key in after} == {
        "imagine_received": 1,
        "imagine_created": 1,
        "button_received": 1,
        "button_created": 1,
    }
