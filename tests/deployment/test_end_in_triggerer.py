"""Tasks ending in the triggerer on a real deployment (api-server, scheduler, DAG processor,
triggerer), against the emulator: a deferrable imagine and its upscale end there once their
picture is ready, and a sensor started from the triggerer never runs on a worker.

Proof that no task went back to a worker: the supervisors' ``Workload finished`` lines (one per
worker execution, :meth:`airflow_harness.metadata.MetadataDB.run_workloads`) and the task logs,
which never show ``execute_complete`` being resumed. The emulator's counters show each paid task
was asked for once.

With the OpenLineage provider's listener registered (its file transport), Airflow refuses a task
with ``end_from_trigger=True``, so the operators' default ends on a worker instead, where the
listener sees the task end; the last test runs a deployment so configured and reads the events:
the imagine reports the LotImage task it made, the save every picture and sidecar it stored.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lotimage_emulator import Emulator, run_emulator
from lotimage_emulator.pytest_plugin import TEST_API_KEY

from airflow_harness import AirflowDeployment
from airflow_provider_lotimage.links import LotImagePictureLink
from tests.deployment.conftest import HARNESS_DAGS, write_log_tails_if_failed
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


# -- OpenLineage ------------------------------------------------------------------------------------

LINEAGE_DAG_ID = "lotimage_lineage"


@pytest.fixture(scope="module")
def lineage_deployment(
    emulator: Emulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[AirflowDeployment, Path]]:
    """A deployment whose every process has OpenLineage on, writing its events to a file."""
    folder = tmp_path_factory.mktemp("lineage")
    env = {
        "AIRFLOW_CONN_LOTIMAGE_DEFAULT": json.dumps(
            {"conn_type": "lotimage", "host": emulator.url, "password": TEST_API_KEY}
        ),
        "LOTIMAGE_POLL_INTERVAL": "1",
        "LOTIMAGE_LINEAGE_DIR": str(folder / "pictures"),
        "AIRFLOW__OPENLINEAGE__DISABLED": "False",
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "lotimage-deployment",
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(folder / "events.jsonl"), "append": True}
        ),
    }
    with AirflowDeployment(HARNESS_DAGS, env=env) as af:
        yield af, folder


@pytest.fixture
def lineage_af(
    lineage_deployment: tuple[AirflowDeployment, Path], request: pytest.FixtureRequest
) -> Iterator[tuple[AirflowDeployment, Path]]:
    """The OpenLineage deployment; prints the service log tails if the test failed."""
    yield lineage_deployment
    write_log_tails_if_failed(request, lineage_deployment[0], 80)


def complete_events(folder: Path, task_ids: set[str], timeout: float = 30.0) -> tuple[dict[str, Any], str]:
    """The COMPLETE event of each task, waiting for them: each is emitted as its task ends."""
    deadline = time.monotonic() + timeout
    while True:
        path = folder / "events.jsonl"
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        found = {
            event["job"]["name"].removeprefix(f"{LINEAGE_DAG_ID}."): event
            for event in (json.loads(line) for line in text.splitlines() if line.strip())
            if event["eventType"] == "COMPLETE" and event["job"]["name"].startswith(f"{LINEAGE_DAG_ID}.")
        }
        if task_ids <= found.keys() or time.monotonic() > deadline:
            return found, text
        time.sleep(0.5)


def test_with_openlineage_the_events_name_every_stored_picture(
    lineage_af: tuple[AirflowDeployment, Path], emulator: Emulator
) -> None:
    af, folder = lineage_af
    result = af.run_dag(LINEAGE_DAG_ID, timeout=120)
    assert result.ok, result
    # The listener is registered: the imagine ended on a worker (submitted and deferred, then resumed).
    assert {key: len(loads) for key, loads in af.run_workloads(LINEAGE_DAG_ID, result.run_id).items()} == {
        "imagine": 2,
        "save": 1,
    }

    found, text = complete_events(folder, {"imagine", "save"})
    assert {"imagine", "save"} <= found.keys(), sorted(found)
    api = f"lotimage://{emulator.url.split('://')[1].rstrip('/')}"
    (created,) = found["imagine"]["outputs"]
    assert created["namespace"] == api and created["name"].startswith("task/")
    stored = {("file", str(path)) for path in (folder / "pictures").iterdir()}
    assert len(stored) == 8  # four pictures, four sidecars
    outputs = {(d["namespace"], d["name"]) for d in found["save"]["outputs"] if d["namespace"] == "file"}
    assert outputs == stored
    assert {(d["namespace"], d["name"]) for d in found["save"]["inputs"]} == {(api, created["name"])}
    assert TEST_API_KEY not in text
    assert "lineage-marker-7f3a" not in text  # no prompt unless [lotimage] lineage_include_prompt
