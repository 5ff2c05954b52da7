"""The DAG whose OpenLineage events the lineage tests read, and the process that runs it.

``python -m tests.lineage.lineage_dag`` runs it with ``dag.test()`` in a process of its own: the
OpenLineage provider decides at plugin load whether its listener is on, and caches its transport
settings, so the events are proven in a fresh Airflow process that starts with its
``[openlineage]`` settings in the environment, as a worker does, not in a test process that may
already have loaded Airflow's plugins without them.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

#: What the DAG asks of LotImage; the tests look for it (it must not appear unless opted in).
PROMPT = "a lighthouse of frosted glass, lineage-marker-7f3a"
DAG_ID = "lotimage_lineage"


def build_dag(output_dir: str) -> Any:
    """Imagine (deferrable), upscale its first picture, then store both: the grid split in four."""
    from airflow.sdk import DAG

    from airflow_provider_lotimage.operators.button import ButtonOperator
    from airflow_provider_lotimage.operators.imagine import ImagineOperator
    from airflow_provider_lotimage.operators.save_images import SaveImagesOperator

    waiting: dict[str, Any] = {
        "wait_for_completion": True,
        "deferrable": True,
        "poll_interval": 0.3,
        "first_poll_delay": 0,
    }
    with DAG(DAG_ID, schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        imagine = ImagineOperator(task_id="imagine", prompt=PROMPT, **waiting)
        upscale = ButtonOperator(task_id="upscale", lotimage_task_id=imagine.output, button="U1", **waiting)
        SaveImagesOperator(
            task_id="save",
            result=[imagine.output, upscale.output],
            destination=f"file://{output_dir}",
            split_grid=True,
        )
    return dag


def main() -> None:
    from tests.compat import shims
    from tests.dag_helpers import run_dag

    shims.install()
    run = run_dag(build_dag(os.environ["LOTIMAGE_OUTPUT_DIR"]))
    print(f"DAG run state: {run.state}")


if __name__ == "__main__":
    main()
