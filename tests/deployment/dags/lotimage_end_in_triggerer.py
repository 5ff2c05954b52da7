"""A grid, its upscale and a sensor, all ending in the triggerer (test_end_in_triggerer.py).

The imagine and the upscale defer from a worker and end in the triggerer when their picture is
ready; the sensor (``start_from_trigger``) is deferred by the scheduler and never runs on a worker.
``check`` reads their XComs as any downstream task would, and fails the run if one is missing.
The run's paid-task budget is exactly the two paid tasks it makes.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from airflow.sdk import DAG, task

from airflow_provider_lotimage.operators.button import ButtonOperator
from airflow_provider_lotimage.operators.imagine import ImagineOperator
from airflow_provider_lotimage.sensors.task_progress import TaskProgressSensor

POLL_INTERVAL = float(os.environ.get("LOTIMAGE_POLL_INTERVAL", "10"))
UPSCALE_ID = "{{ ti.xcom_pull(task_ids='upscale', key='lotimage_task_id', map_indexes=-1) }}"

with DAG(
    dag_id="lotimage_end_in_triggerer",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"max_paid_tasks_per_run": 2},
    tags=["lotimage", "triggerer"],
):
    imagine = ImagineOperator(
        task_id="imagine",
        prompt="a lighthouse made of glass",
        wait_for_completion=True,
        deferrable=True,
        poll_interval=POLL_INTERVAL,
    )
    upscale = ButtonOperator(
        task_id="upscale",
        lotimage_task_id=imagine.output,
        button="U1",
        wait_for_completion=True,
        deferrable=True,
        poll_interval=POLL_INTERVAL,
    )
    wait = TaskProgressSensor(
        task_id="wait",
        lotimage_task_id=UPSCALE_ID,
        deferrable=True,
        start_from_trigger=True,
        poke_interval=POLL_INTERVAL,
        timeout=300,
    )

    @task
    def check(ti: Any = None) -> dict[str, Any]:
        xcoms = {
            name: {
                key: ti.xcom_pull(task_ids=name, key=key)
                for key in ("return_value", "lotimage_task_id", "lotimage_image_url")
            }
            for name in ("imagine", "upscale", "wait")
        }
        for name, values in xcoms.items():
            result = values["return_value"]
            assert isinstance(result, dict) and result["image_url"].startswith("http"), (name, values)
            assert values["lotimage_image_url"] == result["image_url"], (name, values)
        for name in ("imagine", "upscale"):
            assert xcoms[name]["lotimage_task_id"] == xcoms[name]["return_value"]["lotimage_task_id"]
        assert xcoms["wait"]["return_value"] == xcoms["upscale"]["return_value"]
        return xcoms

    upscale >> wait >> check()
