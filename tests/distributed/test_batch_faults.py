"""A batch whose prompts fail, on the distributed deployment (Celery workers on two machines, two
triggerers, PostgreSQL): a prompt rejected at submission and one failed while rendering cost only
themselves; the healthy prompt's grid and four upscales are stored by whichever machines ran them.

The stalled prompt of the same scenario is proven on ``dag.test()`` and the LocalExecutor
deployment (``tests/deployment/test_batch_faults.py``): this deployment keeps the default stall
timeout of 15 minutes, which its other scenarios need.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from lotimage_emulator import Emulator

from airflow_harness import AirflowDeployment
from airflow_provider_lotimage.storage.layout import report_name
from tests.batch.faults import BANNED, FILTERED, fail_while_rendering, reject_at_submission

from .helpers import API_KEY, BATCH_DAG

pytestmark = [pytest.mark.distributed, pytest.mark.timeout(600)]

PROMPTS = [
    "A distributed heron wading at sunrise",
    "A distributed rejected owl in a library",
    "A distributed filtered lighthouse in a storm",
]
HEALTHY, REJECTED, FAILED = 0, 1, 2


def test_a_failed_prompt_costs_only_itself_across_machines(
    af: AirflowDeployment, emulator: Emulator, output_dir: Path
) -> None:
    reject_at_submission(emulator, "rejected owl")
    fail_while_rendering(emulator, "filtered lighthouse")
    result = af.run_dag(BATCH_DAG, conf={"prompts": PROMPTS, "skip_stored": False}, timeout=300)
    assert result.state == "failed", result.task_states

    tasks = emulator.tasks()
    assert Counter(task["kind"] for task in tasks) == {"imagine": 2, "upscale": 4}
    (grid,) = [task for task in tasks if task["kind"] == "imagine" and task["prompt"] == PROMPTS[HEALTHY]]
    upscales = [task for task in tasks if task["kind"] == "upscale"]
    assert sorted(task["button"] for task in upscales) == ["U1", "U2", "U3", "U4"]
    assert {task["parentId"] for task in upscales} == {grid["taskId"]}

    batch = output_dir / "batch"
    report = json.loads((batch / report_name(result.run_id)).read_text(encoding="utf-8"))
    assert (report["succeeded"], report["failed"], report["paid_tasks"]) == (1, 2, 6)
    healthy = report["entries"][HEALTHY]
    assert healthy["state"] == "succeeded" and len(healthy["stored"]) == 5
    stored_ids = set()
    for path in healthy["stored"]:
        picture = Path(path.removeprefix("file://"))
        assert picture.is_file() and picture.parent == batch
        sidecar = json.loads(picture.with_suffix(".json").read_text(encoding="utf-8"))
        stored_ids.add(sidecar["lotimage_task_id"])
    assert stored_ids == {task["taskId"] for task in tasks if task["kind"] == "upscale"} | {grid["taskId"]}
    reasons = {index: report["entries"][index]["failures"][0] for index in (REJECTED, FAILED)}
    assert reasons[REJECTED]["error"] == "InvalidRequestError"
    assert BANNED in reasons[REJECTED]["reason"]
    assert reasons[FAILED]["error"] == "TaskFailedError"
    assert FILTERED in reasons[FAILED]["reason"]
    assert API_KEY not in json.dumps(report)
