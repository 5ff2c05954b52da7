"""DAG of ``tests/deployment/test_save_faults.py``: a save whose worker is killed mid-download.

``lotimage_save_faults``: one imagine with cutting (four pictures), waited for in the worker, then
``SaveImagesOperator`` with one retry into ``$LOTIMAGE_SAVE_FAULTS_DIR``. Both use the connection
``lotimage_save_faults``, set by the test in the deployment's environment; parsing needs neither.
"""

from __future__ import annotations

import os
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

from airflow.sdk import DAG

from airflow_provider_lotimage.operators.imagine import ImagineOperator
from airflow_provider_lotimage.operators.save_images import SaveImagesOperator

CONN_ID = "lotimage_save_faults"
DESTINATION = Path(
    os.environ.get("LOTIMAGE_SAVE_FAULTS_DIR") or Path(tempfile.gettempdir()) / "lotimage-save-faults"
)

with DAG(
    dag_id="lotimage_save_faults",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["lotimage", "save-faults"],
):
    imagine = ImagineOperator(
        task_id="imagine",
        prompt="A lighthouse made of glass at dawn",
        cutting=True,
        wait_for_completion=True,
        deferrable=False,
        poll_interval=0.5,
        timeout=300,
        lotimage_conn_id=CONN_ID,
    )
    SaveImagesOperator(
        task_id="save",
        result=imagine.output,
        destination=DESTINATION.as_uri(),
        lotimage_conn_id=CONN_ID,
        retries=1,
        retry_delay=timedelta(seconds=1),
    )
