"""The deferrable example DAG on a real deployment (api-server, scheduler, DAG processor,
triggerer), against the emulator: it succeeds, its metrics reach a StatsD listener from the worker
and the triggerer, and it survives a triggerer crash with one paid call."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from lotimage_emulator import Emulator, run_emulator
from lotimage_emulator.pytest_plugin import TEST_API_KEY
from PIL import Image

from airflow_harness import AirflowDeployment
from tests.metrics_helpers import StatsdLine, StatsdListener, counts, statsd_env

pytestmark = [pytest.mark.deployment, pytest.mark.timeout(600)]

EXAMPLE_DAGS = Path(__file__).resolve().parents[2] / "example_dags"
DAG_ID = "example_lotimage_imagine_deferrable"
STATSD_PREFIX = "deployment"
OURS = f"{STATSD_PREFIX}.lotimage."


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    # An imagine takes about 15 s: long enough to kill the triggerer while the task is deferred.
    with run_emulator(keys=(TEST_API_KEY,), time_scale=15 / 45, grid_size=256) as running:
        yield running


@pytest.fixture(scope="module")
def output_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("deployment-output")


@pytest.fixture(scope="module")
def statsd() -> Iterator[StatsdListener]:
    listener = StatsdListener()
    yield listener
    listener.close()


@pytest.fixture(scope="module")
def deployment(emulator: Emulator, output_dir: Path, statsd: StatsdListener) -> Iterator[AirflowDeployment]:
    env = {
        **statsd_env(statsd.port, STATSD_PREFIX),
        "AIRFLOW_CONN_LOTIMAGE_DEFAULT": json.dumps(
            {"conn_type": "lotimage", "host": emulator.url, "password": TEST_API_KEY}
        ),
        "LOTIMAGE_OUTPUT_DIR": str(output_dir),
        "LOTIMAGE_POLL_INTERVAL": "1",
    }
    with AirflowDeployment(EXAMPLE_DAGS, env=env) as af:
        yield af


def _imagines(emulator: Emulator) -> int:
    return emulator.stats()["submissions"]["imagine"]


def test_deferrable_example_succeeds(
    af: AirflowDeployment, emulator: Emulator, output_dir: Path, statsd: StatsdListener
) -> None:
    before = _imagines(emulator)
    requests_before = emulator.stats()["requests"]
    lines_before = len(statsd.lines)
    result = af.run_dag(DAG_ID, timeout=240)
    assert result.ok, result
    assert result.task_states == {"imagine": "success", "save": "success", "report": "success"}
    events = [e.event for e in af.task_state_events(DAG_ID, result.run_id) if e.task_id == "imagine"]
    assert "deferred" in events, events
    assert _imagines(emulator) - before == 1
    pictures = sorted(output_dir.glob("*.png"))
    assert len(pictures) >= 4
    for picture in pictures:
        with Image.open(picture) as image:
            image.verify()
    statsd.settle(OURS)
    _check_metrics(af, emulator, requests_before, statsd.lines[lines_before:], pictures)


def _check_metrics(
    af: AirflowDeployment,
    emulator: Emulator,
    requests_before: dict[str, int],
    lines: list[StatsdLine],
    pictures: list[Path],
) -> None:
    """The run's metrics match the emulator's counters: the submit from a worker, the reads from
    the triggerer (the deferred imagine reads nothing on a worker), the pictures from a worker."""
    requests = {name: n - requests_before[name] for name, n in emulator.stats()["requests"].items()}
    ours = [line for line in lines if line.name.startswith(OURS)]
    calls = counts(ours, OURS + "api.calls", "endpoint", "outcome")
    assert calls == {("imagine", "ok"): requests["imagine"], ("task/progress", "ok"): requests["progress"]}
    assert requests["imagine"] == 1 and requests["progress"] >= 1
    assert counts(ours, OURS + "paid_tasks", "kind") == {("imagine",): 1}
    assert [line.tags for line in ours if line.name == OURS + "task.duration"] == [{"kind": "imagine"}]
    assert counts(ours, OURS + "pictures.stored", "storage") == {("file",): len(pictures)}
    # Where each came from: the UDP sockets the triggerer's processes hold.
    triggerer = {
        conn.laddr.port for proc in af.service_processes("triggerer") for conn in proc.net_connections("udp")
    }
    by_name: dict[str, set[int]] = {}
    for line in ours:
        by_name.setdefault(line.name + line.tags.get("endpoint", ""), set()).add(line.port)
    assert by_name[OURS + "api.callstask/progress"] <= triggerer
    assert by_name[OURS + "task.duration"] <= triggerer
    assert not by_name[OURS + "api.callsimagine"] & triggerer  # sent from a worker
    assert not by_name[OURS + "pictures.stored"] & triggerer
    assert not [line.raw for line in lines if TEST_API_KEY in line.raw or "lighthouse" in line.raw.lower()]


def test_triggerer_restart_while_deferred_pays_once(af: AirflowDeployment, emulator: Emulator) -> None:
    before = _imagines(emulator)
    af.wait_for_dag(DAG_ID)
    af.unpause(DAG_ID)
    run_id = af.trigger(DAG_ID)
    af.wait_for_task_state(DAG_ID, run_id, "imagine", "deferred", timeout=120)
    deadline = time.monotonic() + 60
    while not [t for t in af.triggers() if t["triggerer_id"] is not None]:
        assert time.monotonic() < deadline, "the trigger was never picked up by the triggerer"
        time.sleep(0.25)

    af.kill_service("triggerer")
    assert af.task_states(DAG_ID, run_id)["imagine"] == "deferred"
    time.sleep(2)
    af.start_service("triggerer")

    result = af.wait_for_run(DAG_ID, run_id, timeout=240)
    assert result.ok, result
    assert result.task_states == {"imagine": "success", "save": "success", "report": "success"}
    assert _imagines(emulator) - before == 1, "the restart must not submit the prompt again"
    assert emulator.stats()["rate_limited"] == 0
