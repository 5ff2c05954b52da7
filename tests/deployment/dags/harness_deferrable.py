"""Tiny DAG for the deployment harness test: work, a deferrable wait (triggerer), work."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from airflow.providers.standard.sensors.date_time import DateTimeSensorAsync
from airflow.sdk import DAG, Param, task

with DAG(
    dag_id="harness_deferrable",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    params={
        "before_seconds": Param(1, type="integer", minimum=0),
        "wait_seconds": Param(10, type="integer", minimum=0),
    },
    tags=["harness"],
):

    @task
    def before(params: dict[str, Any] | None = None) -> str:
        # Measurable worker time before the deferral (long, for tests that need a live task process).
        time.sleep(int((params or {}).get("before_seconds", 1)))
        return "before"

    # Rendered when the task first runs; the trigger keeps the resulting moment across restarts.
    wait = DateTimeSensorAsync(
        task_id="wait",
        target_time=(
            "{{ (macros.datetime.utcnow() + macros.timedelta(seconds=params.wait_seconds)).isoformat() }}"
        ),
    )

    @task
    def after() -> str:
        return "after"

    before() >> wait >> after()
