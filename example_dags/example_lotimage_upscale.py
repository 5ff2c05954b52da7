"""One prompt's grid, then upscales of it, every picture stored: the operators one by one.

``ImagineOperator`` waits for the grid in the triggerer and returns its result dict;
``ButtonOperator`` is mapped over the buttons to press on that one grid (the whole result dict is
passed, so each button is checked against those the grid offers before anything is paid); one
``SaveImagesOperator`` stores the grid and the upscales. For a batch of prompts, where one failed
prompt must not cost the others, use ``lotimage_batch`` (``example_lotimage_batch``).

Pictures go to ``$LOTIMAGE_OUTPUT_DIR/upscale``; poll interval ``$LOTIMAGE_POLL_INTERVAL`` seconds.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from airflow.sdk import DAG, Param

from airflow_provider_lotimage.operators.button import ButtonOperator
from airflow_provider_lotimage.operators.imagine import ImagineOperator
from airflow_provider_lotimage.operators.save_images import SaveImagesOperator

OUTPUT_DIR = Path(os.environ.get("LOTIMAGE_OUTPUT_DIR", "output")).resolve()
POLL_INTERVAL = float(os.environ.get("LOTIMAGE_POLL_INTERVAL", "10"))

with DAG(
    dag_id="example_lotimage_upscale",
    description="A grid, two upscales of it, all stored",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["example", "lotimage"],
    params={"prompt": Param("A heron made of folded paper", type="string", minLength=1)},
) as dag:
    # [START howto_operator_lotimage_imagine_waiting]
    grid = ImagineOperator(
        task_id="imagine",
        prompt="{{ params.prompt }}",
        wait_for_completion=True,
        deferrable=True,
        poll_interval=POLL_INTERVAL,
    )
    # [END howto_operator_lotimage_imagine_waiting]

    # [START howto_operator_lotimage_button]
    upscale = ButtonOperator.partial(
        task_id="upscale",
        lotimage_task_id=grid.output,
        wait_for_completion=True,
        deferrable=True,
        poll_interval=POLL_INTERVAL,
    ).expand(button=["U1", "U4"])
    # [END howto_operator_lotimage_button]

    # [START howto_operator_lotimage_save_images]
    SaveImagesOperator(
        task_id="save", result=[grid.output, upscale.output], destination=(OUTPUT_DIR / "upscale").as_uri()
    )
    # [END howto_operator_lotimage_save_images]
