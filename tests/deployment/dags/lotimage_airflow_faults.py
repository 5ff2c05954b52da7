"""DAGs of ``tests/deployment/test_airflow_faults.py``: Airflow's own race and components failing.

Each DAG has a connection of its own (its own emulator, its own counters), set by the test in the
deployment's environment; parsing needs none of them.

* ``lotimage_deferral_race``: deferrable sensors after LotImage tasks that are already finished
  (the run's ``finished`` taskIds), then a deferrable ``U1`` upscale of each result, polled every
  second. No retries, so a task Airflow fails stays failed and is seen. Both resume on a worker
  (``end_from_trigger=False``): the race is on that path, which a task whose picture is ready no
  longer takes by default, but every failing one still does.
* ``lotimage_deferral_race_end_in_triggerer``: the same upscales, ending in the triggerer
  (``end_from_trigger=True``): their reads are not held, the race being on the worker path only.
* ``lotimage_scheduler_crash``: six deferrable imagines and two that wait in their worker.
* ``lotimage_api_server_crash``: four imagines that wait in their worker.

The crash DAGs retry (a task killed with its worker, or whose calls to the api-server failed, is
retried), which must reconnect to the task already paid for, never pay again.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Param, task

from airflow_provider_lotimage.operators.button import ButtonOperator
from airflow_provider_lotimage.operators.imagine import ImagineOperator
from airflow_provider_lotimage.sensors.task_progress import TaskProgressSensor

START = datetime(2026, 1, 1)
POLL_INTERVAL = 1.0
#: Enough for every mapped task of a run at once (Airflow's default per DAG is 16).
MAX_ACTIVE_TASKS = 64

SCHEDULER_DEFERRED_PROMPTS = [f"A paper lantern number {i} over a river" for i in range(6)]
SCHEDULER_IN_WORKER_PROMPTS = [f"A brass compass number {i} on a map" for i in range(2)]
API_SERVER_PROMPTS = [f"A glass owl number {i} in the snow" for i in range(4)]

CRASH_RETRIES: dict[str, Any] = {"retries": 3, "retry_delay": timedelta(seconds=2)}

with DAG(
    dag_id="lotimage_deferral_race",
    schedule=None,
    start_date=START,
    catchup=False,
    max_active_tasks=MAX_ACTIVE_TASKS,
    params={"finished": Param([], type="array", items={"type": "string"})},
    tags=["lotimage", "airflow-faults"],
):

    @task
    def finished(params: dict[str, Any] | None = None) -> list[str]:
        return list((params or {})["finished"])

    wait = TaskProgressSensor.partial(
        task_id="wait",
        lotimage_conn_id="lotimage_race",
        deferrable=True,
        poke_interval=POLL_INTERVAL,
        timeout=600,
        retries=0,
        end_from_trigger=False,
    ).expand(lotimage_task_id=finished())

    ButtonOperator.partial(
        task_id="upscale",
        lotimage_conn_id="lotimage_race",
        button="U1",
        wait_for_completion=True,
        deferrable=True,
        poll_interval=POLL_INTERVAL,
        timeout=600,
        retries=0,
        end_from_trigger=False,
    ).expand(lotimage_task_id=wait.output)

with DAG(
    dag_id="lotimage_deferral_race_end_in_triggerer",
    schedule=None,
    start_date=START,
    catchup=False,
    max_active_tasks=MAX_ACTIVE_TASKS,
    params={"finished": Param([], type="array", items={"type": "string"})},
    tags=["lotimage", "airflow-faults"],
):

    @task
    def grids(params: dict[str, Any] | None = None) -> list[str]:
        return list((params or {})["finished"])

    ButtonOperator.partial(
        task_id="upscale",
        lotimage_conn_id="lotimage_race",
        button="U1",
        wait_for_completion=True,
        deferrable=True,
        poll_interval=POLL_INTERVAL,
        timeout=600,
        retries=0,
        end_from_trigger=True,
    ).expand(lotimage_task_id=grids())

with DAG(
    dag_id="lotimage_scheduler_crash",
    schedule=None,
    start_date=START,
    catchup=False,
    max_active_tasks=MAX_ACTIVE_TASKS,
    tags=["lotimage", "airflow-faults"],
):
    ImagineOperator.partial(
        task_id="deferred",
        lotimage_conn_id="lotimage_scheduler",
        wait_for_completion=True,
        deferrable=True,
        poll_interval=POLL_INTERVAL,
        timeout=600,
        **CRASH_RETRIES,
    ).expand(prompt=SCHEDULER_DEFERRED_PROMPTS)

    ImagineOperator.partial(
        task_id="in_worker",
        lotimage_conn_id="lotimage_scheduler",
        wait_for_completion=True,
        deferrable=False,
        poll_interval=POLL_INTERVAL,
        timeout=600,
        **CRASH_RETRIES,
    ).expand(prompt=SCHEDULER_IN_WORKER_PROMPTS)

with DAG(
    dag_id="lotimage_api_server_crash",
    schedule=None,
    start_date=START,
    catchup=False,
    max_active_tasks=MAX_ACTIVE_TASKS,
    tags=["lotimage", "airflow-faults"],
):
    ImagineOperator.partial(
        task_id="in_worker",
        lotimage_conn_id="lotimage_api",
        wait_for_completion=True,
        deferrable=False,
        poll_interval=POLL_INTERVAL,
        timeout=600,
        **CRASH_RETRIES,
    ).expand(prompt=API_SERVER_PROMPTS)
