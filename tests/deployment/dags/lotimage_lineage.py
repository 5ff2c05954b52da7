"""DAG of the OpenLineage check in ``tests/deployment/test_end_in_triggerer.py``.

``lotimage_lineage``: one deferrable imagine with cutting (four pictures), then
``SaveImagesOperator`` into ``$LOTIMAGE_LINEAGE_DIR``. With the OpenLineage provider's listener
registered, the imagine (``end_from_trigger`` left at its default) resumes on a worker, where the
listener sees it end; the save's event names the four pictures and their sidecars.
"""

from __future__ import annotations

import os
import tempfile
from datetime import datetime
from pathlib import Path

from airflow.sdk import DAG

from airflow_provider_lotimage.operators.imagine import ImagineOperator
from airflow_provider_lotimage.operators.save_images import SaveImagesOperator

POLL_INTERVAL = float(os.environ.get("LOTIMAGE_POLL_INTERVAL", "10"))
DESTINATION = Path(os.environ.get("LOTIMAGE_LINEAGE_DIR") or Path(tempfile.gettempdir()) / "lotimage-lineage")

with DAG(
    dag_id="lotimage_lineage",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["lotimage", "lineage"],
):
    imagine = ImagineOperator(
        task_id="imagine",
        prompt="a lighthouse of frosted glass, lineage-marker-7f3a",
        cutting=True,
        wait_for_completion=True,
        deferrable=True,
        poll_interval=POLL_INTERVAL,
    )
    SaveImagesOperator(task_id="save", result=imagine.output, destination=DESTINATION.as_uri())
