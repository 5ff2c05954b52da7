"""A batch whose prompts fail, on a real deployment (scheduler, triggerer, LocalExecutor workers).

Six prompts: the service rejects one at submission, fails one while rendering and stalls a third.
Every other prompt's grid and four upscales are stored in the same run, which fails and reports the
three with their reasons; clearing the run's failed tasks (as the UI's "Clear" with "Only failed")
pays only for the failed prompts and downloads nothing already stored. Deferred waits end in the
triggerer as they do by default.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lotimage_emulator import Emulator
from lotimage_emulator.pytest_plugin import TEST_API_KEY

from airflow_harness import AirflowDeployment
from airflow_provider_lotimage.storage.layout import report_name
from tests.batch.faults import BANNED, FILTERED, fail_while_rendering, reject_at_submission, stall
from tests.deployment.counters import paid_calls

pytestmark = [pytest.mark.deployment, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
BATCH_DAG = "example_lotimage_batch"
#: An imagine in 2.7 s, an upscale in 0.6 s.
TIME_SCALE = 0.06
PROMPTS = [
    "A red kite over a windy beach",
    "An owl reading in a library",
    "A lighthouse in a storm, oil painting",
    "A castle made of glass at dawn",
    "A fox reading a newspaper",
    "A tram in the rain at night",
]
REJECTED, FAILED, STALLED = 1, 2, 3
HEALTHY = (0, 4, 5)


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    emu = Emulator(keys=(TEST_API_KEY,), time_scale=TIME_SCALE, grid_size=128, rate_limit=3.0)
    emu.start()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture(scope="module")
def output_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("batch-faults-output")


@pytest.fixture(scope="module")
def deployment(
    emulator: Emulator, output_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AirflowDeployment]:
    dags = tmp_path_factory.mktemp("batch-faults-dags")
    (dags / "example_lotimage_batch.py").symlink_to(REPO / "example_dags" / "example_lotimage_batch.py")
    env = {
        "AIRFLOW_CONN_LOTIMAGE_DEFAULT": json.dumps(
            {"conn_type": "lotimage", "host": emulator.url, "password": TEST_API_KEY}
        ),
        "LOTIMAGE_OUTPUT_DIR": str(output_dir),
        "LOTIMAGE_POLL_INTERVAL": "2",
        "LOTIMAGE_STALL_TIMEOUT": "6",
        "LOTIMAGE_POOL": "lotimage",
    }
    with AirflowDeployment(dags, env=env, parallelism=8) as af:
        af.cli("pools", "set", "lotimage", "16", "LotImage calls", "--include-deferred")
        yield af


def states(af: AirflowDeployment, run_id: str, task_id: str) -> list[str | None]:
    return [
        ti.state
        for ti in sorted(af.task_instances(BATCH_DAG, run_id), key=lambda ti: ti.map_index)
        if ti.task_id == task_id
    ]


def pictures(folder: Path) -> dict[str, dict[str, Any]]:
    """The sidecars beside the pictures, by LotImage taskId and index (the batch reports left out)."""
    metas = [
        json.loads(path.read_text(encoding="utf-8"))
        for path in folder.glob("*.json")
        if not path.name.startswith("batch-report.")
    ]
    return {f"{meta['lotimage_task_id']}_{meta['index']}": meta for meta in metas}


def test_failed_prompts_cost_only_themselves_and_clearing_them_pays_only_for_them(
    af: AirflowDeployment, emulator: Emulator, output_dir: Path
) -> None:
    reject_at_submission(emulator, "owl")
    fail_while_rendering(emulator, "lighthouse")
    stall(emulator, "castle")
    batch = output_dir / "batch"

    first = af.run_dag(BATCH_DAG, conf={"prompts": PROMPTS, "skip_stored": False}, timeout=300)
    run_id = first.run_id
    assert first.state == "failed", first.task_states
    assert states(af, run_id, "batch.imagine") == [
        "failed" if index in (REJECTED, FAILED, STALLED) else "success" for index in range(6)
    ]
    assert states(af, run_id, "batch.U1") == [
        "upstream_failed" if index in (REJECTED, FAILED, STALLED) else "success" for index in range(6)
    ]
    assert states(af, run_id, "batch_report") == ["failed"]
    assert paid_calls(emulator) == {
        "imagine_received": 6,
        "imagine_created": 5,  # the rejected prompt created nothing
        "button_received": 12,
        "button_created": 12,
    }
    stored = pictures(batch)
    assert len(stored) == 15 and len(list(batch.glob("*.png"))) == 15
    assert {meta["prompt"] for meta in stored.values()} == {PROMPTS[index] for index in HEALTHY}
    report = json.loads((batch / report_name(run_id)).read_text(encoding="utf-8"))
    assert (report["succeeded"], report["failed"], report["paid_tasks"]) == (3, 3, 17)
    reasons = {
        index: report["entries"][index]["failures"][0]["reason"] for index in (REJECTED, FAILED, STALLED)
    }
    assert BANNED in reasons[REJECTED]
    assert FILTERED in reasons[FAILED]
    assert "stalled" in reasons[STALLED]
    assert TEST_API_KEY not in json.dumps(report)
    first_pictures = {meta["file"]: (batch / meta["file"]).stat().st_mtime_ns for meta in stored.values()}

    # Clear the run's failed tasks: only the three failed prompts run again, and now succeed.
    emulator.clear_faults()
    af.cli("tasks", "clear", BATCH_DAG, "--task-regex", "batch", "--only-failed", "--yes")
    again = af.wait_for_run(BATCH_DAG, run_id, timeout=300)
    assert again.state == "success", again.task_states
    assert paid_calls(emulator) == {
        "imagine_received": 9,
        "imagine_created": 8,
        "button_received": 24,
        "button_created": 24,
    }
    imagined = Counter(task["prompt"] for task in emulator.tasks() if task["kind"] == "imagine")
    assert imagined == Counter(
        {prompt: 2 if index in (FAILED, STALLED) else 1 for index, prompt in enumerate(PROMPTS)}
    ), "a new grid only for the prompts that failed at the service"
    pressed = Counter((t["parentId"], t["button"]) for t in emulator.tasks() if t["kind"] == "upscale")
    assert len(pressed) == 24 and set(pressed.values()) == {1}, "no button pressed twice"
    assert emulator.stats()["events"]["image_requests"] == 30, "nothing downloaded twice"
    stored = pictures(batch)
    assert len(stored) == 30
    assert {name: (batch / name).stat().st_mtime_ns for name in first_pictures} == first_pictures
    rerun = json.loads((batch / report_name(run_id)).read_text(encoding="utf-8"))
    assert (rerun["succeeded"], rerun["failed"], rerun["within_tolerance"]) == (6, 0, True)
    assert [entry["save_try"] for entry in rerun["entries"]] == [
        2 if index in (REJECTED, FAILED, STALLED) else 1 for index in range(6)
    ]
