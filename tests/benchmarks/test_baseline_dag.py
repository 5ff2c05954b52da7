"""The benchmark's baseline DAG (HttpOperator + HttpSensor only) really renders and stores a batch.

A baseline that silently did less work than the provider's DAG would make the comparison a lie,
so it runs here against the emulator with ``dag.test()``: every grid and upscale is submitted
once and stored.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from PIL import Image

from benchmarks.pipelines import BASELINE_DAG_FILE, duplicates, make_prompts
from tests.dag_helpers import register_dag

if TYPE_CHECKING:
    from lotimage_emulator import Emulator


@pytest.fixture
def baseline_dag(
    airflow_db: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    lotimage_emulator: Emulator,
    lotimage_api_key: str,
):
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("LOTIMAGE_OUTPUT_DIR", str(tmp_path / "output"))
    monkeypatch.setenv("LOTIMAGE_POLL_INTERVAL", "0.2")
    monkeypatch.setenv("AIRFLOW__CORE__MIN_SERIALIZED_DAG_UPDATE_INTERVAL", "0")
    monkeypatch.setenv(
        "AIRFLOW_CONN_LOTIMAGE_HTTP",
        json.dumps(
            {
                "conn_type": "http",
                "host": lotimage_emulator.url,
                "extra": {"Authorization": f"Bearer {lotimage_api_key}"},
            }
        ),
    )
    bag = DagBag(dag_folder=str(BASELINE_DAG_FILE))
    assert not bag.import_errors, bag.import_errors
    dag = bag.dags["baseline_http_batch"]
    register_dag(dag)
    return dag


def test_baseline_renders_and_stores_every_picture(
    baseline_dag, lotimage_emulator: Emulator, tmp_path: Path
) -> None:
    prompts = make_prompts(2)
    run = baseline_dag.test(run_conf={"prompts": prompts})
    assert run.state == "success"

    tasks = lotimage_emulator.tasks()
    assert sorted(t["prompt"] for t in tasks if t["kind"] == "imagine") == sorted(prompts)
    assert sorted(t["button"] for t in tasks if t["kind"] == "upscale") == [
        "U1",
        "U1",
        "U2",
        "U2",
        "U3",
        "U3",
        "U4",
        "U4",
    ]
    assert duplicates(tasks) == {"imagine": 0, "button": 0}
    stored = sorted((tmp_path / "output" / "baseline").glob("*.png"))
    assert {p.stem for p in stored} == {t["taskId"] for t in tasks}
    for picture in stored:
        with Image.open(picture) as image:
            image.verify()
