"""A small DAG run with ``dag.test()`` in a process of its own, for tests/dags/test_statsd_metrics.py.

Its own process, as an Airflow process meets its configuration: Airflow's ``Stats`` reads
``[metrics]`` (StatsD on, set by the test in the environment) when the process starts using it.

Usage: python -m tests.dags.metrics_dag DESTINATION
"""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Any

#: The prompt of the DAG's imagine: the test checks that no metric carries it.
PROMPT = "a lighthouse of green glass, metrics test"


def build_dag(destination: str) -> Any:
    from airflow.sdk import DAG

    from airflow_provider_lotimage.operators.button import ButtonOperator
    from airflow_provider_lotimage.operators.imagine import ImagineOperator
    from airflow_provider_lotimage.operators.save_images import SaveImagesOperator

    with DAG("lotimage_metrics", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        imagine = ImagineOperator(
            task_id="imagine",
            prompt=PROMPT,
            wait_for_completion=True,
            deferrable=True,
            poll_interval=0.3,
            first_poll_delay=0,
        )
        upscale = ButtonOperator(
            task_id="upscale",
            lotimage_task_id=imagine.output,
            button="U1",
            wait_for_completion=True,
            poll_interval=0.3,
        )
        SaveImagesOperator(
            task_id="save_grid", result=imagine.output, destination=destination, split_grid=True
        )
        SaveImagesOperator(task_id="save_upscale", result=upscale.output, destination=destination)
    return dag


def main(destination: str) -> int:
    from tests.compat import shims
    from tests.dag_helpers import run_dag

    shims.install()  # as tests/conftest.py does: the helpers run on Airflow 3.1 and 3.2 too

    run = run_dag(build_dag(destination))
    print(f"lotimage_metrics run: {run.state}")
    return 0 if run.state == "success" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
