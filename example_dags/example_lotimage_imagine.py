"""Imagine a picture, wait for it, and store the four pictures of the grid in a folder.

Runs as is against the bundled emulator (``make demo``) or, with a real key in the
``lotimage_default`` connection, against LotImage itself. Pictures go to ``$LOTIMAGE_OUTPUT_DIR``
(default ``./output``), or to ``$LOTIMAGE_DESTINATION`` when set: any ``ObjectStoragePath`` URL, such
as ``s3://aws_default@my-bucket/lotimage`` for S3 through the Airflow connection ``aws_default``
(needs ``apache-airflow-providers-amazon[s3fs]``; the bucket must exist, it is never created).
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from airflow.sdk import DAG, Param

from airflow_provider_lotimage.operators.imagine import ImagineOperator
from airflow_provider_lotimage.operators.save_images import SaveImagesOperator
from airflow_provider_lotimage.sensors.task_progress import TaskProgressSensor

OUTPUT_DIR = Path(os.environ.get("LOTIMAGE_OUTPUT_DIR", "output")).resolve()
POLL_INTERVAL = float(os.environ.get("LOTIMAGE_POLL_INTERVAL", "10"))
#: A local folder by default; an object store (``s3://<conn_id>@<bucket>/<prefix>``) if set.
DESTINATION = os.environ.get("LOTIMAGE_DESTINATION") or OUTPUT_DIR.as_uri()

with DAG(
    dag_id="example_lotimage_imagine",
    description="Prompt in, four stored pictures out",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["example", "lotimage"],
    params={"prompt": Param("An owl with cat ears hanging on a tree", type="string", minLength=1)},
) as dag:
    # [START howto_sensor_lotimage_task_progress]
    imagine = ImagineOperator(task_id="imagine", prompt="{{ params.prompt }}", cutting=True)

    wait = TaskProgressSensor(
        task_id="wait",
        lotimage_task_id=imagine.output,
        poke_interval=POLL_INTERVAL,
        timeout=30 * 60,
        deferrable=False,
    )

    save = SaveImagesOperator(task_id="save", result=wait.output, destination=DESTINATION)

    imagine >> wait >> save
    # [END howto_sensor_lotimage_task_progress]
