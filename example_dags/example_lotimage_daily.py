"""A picture a day, stored in a dated folder and announced as an Asset.

* The prompt carries the run's logical date (``{{ ds }}``), so every day asks for a new picture.
* ``catchup=False``: a paused or new deployment renders today only, not every missed day (each
  day is a paid task).
* The pictures land in ``$LOTIMAGE_OUTPUT_DIR/daily/<ds>/`` (default ``./output/daily/<ds>``).
  The folder is templated, so the Asset cannot be derived from it per day; the outlet is one
  stable Asset, :data:`DAILY_PICTURES` (name ``lotimage_daily_pictures``, URI the ``daily``
  folder). Consumers schedule on it by name, ``Asset.ref(name="lotimage_daily_pictures")``, so its
  URI is written down only here (see ``example_lotimage_asset_consumer``). The event's ``extra``
  lists the pictures that run stored (``new_paths``, ``new_count``).
* The wait is deferrable: the render holds no worker slot.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from airflow.sdk import DAG, Asset

from airflow_provider_lotimage.operators.imagine import ImagineOperator
from airflow_provider_lotimage.operators.save_images import SaveImagesOperator

OUTPUT_DIR = Path(os.environ.get("LOTIMAGE_OUTPUT_DIR", "output")).resolve()
DAILY_DIR = OUTPUT_DIR / "daily"
POLL_INTERVAL = float(os.environ.get("LOTIMAGE_POLL_INTERVAL", "10"))

#: The stable name consumers schedule on.
DAILY_ASSET_NAME = "lotimage_daily_pictures"
DAILY_PICTURES = Asset(name=DAILY_ASSET_NAME, uri=DAILY_DIR.as_uri())

with DAG(
    dag_id="example_lotimage_daily",
    description="One dated picture a day, announced as an Asset",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["example", "lotimage", "asset"],
) as dag:
    imagine = ImagineOperator(
        task_id="imagine",
        prompt="A watercolour postcard of the sea on {{ ds }}",
        cutting=True,
        wait_for_completion=True,
        deferrable=True,
        poll_interval=POLL_INTERVAL,
        timeout=30 * 60,
    )

    # [START howto_operator_lotimage_save_images_asset]
    SaveImagesOperator(
        task_id="save",
        result=imagine.output,
        destination=DAILY_DIR.as_uri() + "/{{ ds }}",
        asset=DAILY_PICTURES,
    )
    # [END howto_operator_lotimage_save_images_asset]
