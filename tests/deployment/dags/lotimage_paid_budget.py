"""``example_lotimage_batch``'s batch with a paid-task budget (``tests/deployment/test_quota_and_load.py``).

Each prompt costs five paid tasks (a grid and its four upscales); an author who reckoned one per
prompt sets ``max_paid_tasks_per_run`` to the number of prompts, and the run stops there. The
prompts and the budget come with the run's conf; the imagines run in parallel (deferrable, in the
pool ``$LOTIMAGE_POOL``), so the last places of the budget are decided by task instances at once.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from airflow.sdk import DAG, Param, task

from airflow_provider_lotimage.operators.button import ButtonOperator
from airflow_provider_lotimage.operators.imagine import ImagineOperator

POLL_INTERVAL = float(os.environ.get("LOTIMAGE_POLL_INTERVAL", "10"))
POOL = os.environ.get("LOTIMAGE_POOL", "lotimage")

with DAG(
    dag_id="lotimage_paid_budget",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_tasks=32,
    params={
        "prompts": Param([], type="array", items={"type": "string", "minLength": 1}),
        "max_paid_tasks_per_run": Param(None, type=["null", "integer"], minimum=0),
    },
    tags=["lotimage", "budget"],
):

    @task
    def prompts(params: dict[str, Any] | None = None) -> list[str]:
        return list((params or {})["prompts"])

    imagine = ImagineOperator.partial(
        task_id="imagine",
        wait_for_completion=True,
        deferrable=True,
        poll_interval=POLL_INTERVAL,
        timeout=600,
        pool=POOL,
    ).expand(prompt=prompts())

    ButtonOperator.partial(
        task_id="upscale",
        wait_for_completion=True,
        deferrable=True,
        poll_interval=POLL_INTERVAL,
        timeout=600,
        pool=POOL,
    ).expand(lotimage_task_id=imagine.output, button=["U1", "U2", "U3", "U4"])
