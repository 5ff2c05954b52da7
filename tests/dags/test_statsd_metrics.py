"""The provider's metrics through Airflow's own StatsD logger to a real UDP listener on loopback.

A small DAG (a deferrable imagine, an upscale waited for in the worker, two saves) runs with
``dag.test()`` in a process configured as a user configures Airflow for StatsD (environment
variables only, InfluxDB-style tags on: see docs/metrics.md). What arrives must match what the
emulator counted and what was stored, and no line may carry the key, the prompt or a taskId.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.dags.metrics_dag import PROMPT
from tests.metrics_helpers import StatsdListener, counts, statsd_env

REPO_ROOT = Path(__file__).resolve().parents[2]
STATSD_PREFIX = "lotimagetest"


@pytest.fixture
def listener() -> Any:
    listener = StatsdListener()
    yield listener
    listener.close()


def test_dag_metrics_reach_statsd_and_match_the_emulator(
    airflow_db: None,
    lotimage_emulator: Any,
    lotimage_api_key: str,
    listener: StatsdListener,
    tmp_path: Path,
) -> None:
    conn = {"conn_type": "lotimage", "host": lotimage_emulator.url, "password": lotimage_api_key}
    env = {
        **os.environ,
        **statsd_env(listener.port, STATSD_PREFIX),
        "AIRFLOW_CONN_LOTIMAGE_DEFAULT": json.dumps(conn),
        "AIRFLOW__CORE__MIN_SERIALIZED_DAG_UPDATE_INTERVAL": "0",
    }
    destination = tmp_path / "pictures"
    done = subprocess.run(
        [sys.executable, "-m", "tests.dags.metrics_dag", str(destination)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    listener.settle(f"{STATSD_PREFIX}.lotimage.")
    ours = listener.ours(f"{STATSD_PREFIX}.lotimage.")
    name = f"{STATSD_PREFIX}.lotimage."
    stats = lotimage_emulator.stats()

    calls = counts(ours, name + "api.calls", "endpoint", "outcome")
    assert calls == {
        ("imagine", "ok"): stats["requests"]["imagine"],
        ("button", "ok"): stats["requests"]["button"],
        ("task/progress", "ok"): stats["requests"]["progress"],
    }
    assert stats["requests"]["imagine"] == stats["requests"]["button"] == 1
    assert counts(ours, name + "paid_tasks", "kind") == {
        ("imagine",): stats["submissions"]["imagine"],
        ("upscale",): stats["submissions"]["button"],
    }
    durations = [line for line in ours if line.name == name + "task.duration"]
    assert sorted(line.tags["kind"] for line in durations) == ["imagine", "upscale"]
    assert all(line.type == "ms" and line.value > 0 for line in durations)
    waits = [line for line in ours if line.name == name + "limiter.wait"]
    assert len(waits) == sum(stats["requests"].values())

    pictures = [path for path in destination.iterdir() if not path.name.endswith(".json")]
    assert len(pictures) == 6  # the grid, its four quadrants, the upscale
    assert counts(ours, name + "pictures.stored", "storage") == {("file",): len(pictures)}
    stored_bytes = sum(path.stat().st_size for path in pictures)
    assert counts(ours, name + "pictures.bytes", "storage") == {("file",): stored_bytes}

    task_ids = {task["taskId"] for task in lotimage_emulator.tasks()}
    assert len(task_ids) == 2
    secrets = {lotimage_api_key, PROMPT, *PROMPT.split(", "), *task_ids}
    leaked = [line.raw for line in listener.lines if any(secret in line.raw for secret in secrets)]
    assert not leaked
