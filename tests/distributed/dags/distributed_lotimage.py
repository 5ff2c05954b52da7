"""DAGs of the distributed scenarios that the examples do not cover (the batch example is copied beside).

* ``distributed_imagine_deferred``: one deferrable imagine per prompt (the run's ``prompts``), no
  retries: a trigger lost with its triggerer would fail the run instead of being paid again.
* ``distributed_imagine_in_worker``: one imagine that waits in its worker (``deferrable=False``),
  one retry a second later: what a worker crash after the paid call looks like.

Settings come from the environment, as in the examples: ``LOTIMAGE_POLL_INTERVAL`` and
``LOTIMAGE_POOL``.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Param, task

from airflow_provider_lotimage.operators.imagine import ImagineOperator

POLL_INTERVAL = float(os.environ.get("LOTIMAGE_POLL_INTERVAL", "10"))
POOL = os.environ.get("LOTIMAGE_POOL", "lotimage")

with DAG(
    dag_id="distributed_imagine_deferred",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"prompts": Param(["A lighthouse made of glass"], type="array", items={"type": "string"})},
    tags=["distributed"],
):

    @task
    def prompts(params: dict[str, Any] | None = None) -> list[str]:
        return list((params or {})["prompts"])

    ImagineOperator.partial(
        task_id="imagine",
        wait_for_completion=True,
        deferrable=True,
        poll_interval=POLL_INTERVAL,
        timeout=15 * 60,
        pool=POOL,
        retries=0,
    ).expand(prompt=prompts())

with DAG(
    dag_id="distributed_imagine_in_worker",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"prompt": Param("An owl with cat ears", type="string", minLength=1)},
    tags=["distributed"],
):
    ImagineOperator(
        task_id="imagine",
        prompt="{{ params.prompt }}",
        wait_for_completion=True,
        deferrable=False,
        poll_interval=POLL_INTERVAL,
        timeout=15 * 60,
        pool=POOL,
        retries=1,
        retry_delay=timedelta(seconds=1),
    )
