"""The imagine example, waiting in the triggerer: no worker slot is held while the picture renders.

ImagineOperator submits, records the taskId in the task state store (so a retry after a crash
reconnects instead of paying again), then defers to ``TaskProgressTrigger``. Pictures go where
``example_lotimage_imagine`` puts them: ``$LOTIMAGE_OUTPUT_DIR``, or ``$LOTIMAGE_DESTINATION`` (for
instance ``s3://aws_default@my-bucket/lotimage``) when set. ``report`` reads the result as a
``LotImageResult``, so mypy checks the keys it uses.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from airflow.sdk import DAG, Param, task

from airflow_provider_lotimage.client.results import LotImageResult
from airflow_provider_lotimage.operators.imagine import ImagineOperator
from airflow_provider_lotimage.operators.save_images import SaveImagesOperator

OUTPUT_DIR = Path(os.environ.get("LOTIMAGE_OUTPUT_DIR", "output")).resolve()
POLL_INTERVAL = float(os.environ.get("LOTIMAGE_POLL_INTERVAL", "10"))
DESTINATION = os.environ.get("LOTIMAGE_DESTINATION") or OUTPUT_DIR.as_uri()

with DAG(
    dag_id="example_lotimage_imagine_deferrable",
    description="Prompt in, stored pictures out, waiting in the triggerer",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["example", "lotimage", "deferrable"],
    params={"prompt": Param("A lighthouse made of glass at dawn", type="string", minLength=1)},
) as dag:
    # [START howto_operator_lotimage_imagine_deferrable]
    imagine = ImagineOperator(
        task_id="imagine",
        prompt="{{ params.prompt }}",
        cutting=True,
        wait_for_completion=True,
        deferrable=True,
        poll_interval=POLL_INTERVAL,
        timeout=30 * 60,
    )

    save = SaveImagesOperator(task_id="save", result=imagine.output, destination=DESTINATION)
    # [END howto_operator_lotimage_imagine_deferrable]

    @task
    def report(result: LotImageResult, paths: list[str]) -> str:
        """Say which LotImage task the stored pictures came from, and what can be pressed next."""
        buttons = ", ".join(result["buttons"])
        return f"LotImage task {result['lotimage_task_id']}: {len(paths)} pictures stored; buttons {buttons}"

    # The XComArgs are the result dict and the stored paths once the task runs.
    report(imagine.output, save.output)  # type: ignore[arg-type]
