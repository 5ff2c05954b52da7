"""A batch of prompts: one grid per prompt, its four upscales, every picture stored.

Why it is built this way:

* **Prompts** come from ``prompts/batch_prompts.txt`` beside this file (one a line; blank lines
  and ``#`` comments skipped), or from the run's ``prompts`` param (a list of strings). They are
  read and validated in one task *before* any paid call, so a bad prompt costs nothing.
* **Nothing is paid twice**: a prompt whose grid and four upscales are already stored in the
  batch folder is left out (param ``skip_stored``, default true), so running the batch again, for
  example after some prompts failed, renders only what is missing. The match is on the prompt
  text the service reported back; a prompt it rewrote is rendered again.
* **Dynamic task mapping**: one ``imagine`` per prompt, then ``upscale`` mapped over the cross
  product grids x ``U1``..``U4``. Each mapped task retries on its own, and its taskId is kept in
  the task state store, so a retry reconnects to the task already paid for instead of paying again.
* **Deferrable** waits: hundreds of renders hold no worker slot.
* **Pool**: every LotImage task runs in the pool ``$LOTIMAGE_POOL`` (default ``lotimage``). Create
  it once, counting deferred tasks, with about twice as many slots as the key renders at once (3):
  the key then always has a task queued while Airflow hands a finished task's slot to the next,
  and no task waits in LotImage's queue long enough to look stalled::

      airflow pools set lotimage 6 "LotImage calls" --include-deferred

  Without ``--include-deferred`` the pool caps only the submissions running in workers. The rate
  of calls is bounded separately by the hook's limiter.
* **Storage**: one task stores every grid once all grids exist, another every upscale (CDN links
  expire after about a day), into ``$LOTIMAGE_OUTPUT_DIR/batch`` (default ``./output/batch``).
  Saving is idempotent: pictures already stored are neither downloaded nor rewritten, so a retry
  of a save fetches only what is missing.

Poll interval: ``$LOTIMAGE_POLL_INTERVAL`` seconds (default 10).
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Param, task

from airflow_provider_lotimage.operators.button import ButtonOperator
from airflow_provider_lotimage.operators.imagine import ImagineOperator
from airflow_provider_lotimage.operators.save_images import SaveImagesOperator

OUTPUT_DIR = Path(os.environ.get("LOTIMAGE_OUTPUT_DIR", "output")).resolve()
BATCH_DIR = OUTPUT_DIR / "batch"
POLL_INTERVAL = float(os.environ.get("LOTIMAGE_POLL_INTERVAL", "10"))
POOL = os.environ.get("LOTIMAGE_POOL", "lotimage")
PROMPTS_FILE = Path(__file__).resolve().parent / "prompts" / "batch_prompts.txt"
UPSCALE_BUTTONS = ["U1", "U2", "U3", "U4"]
#: A guard against paying for a runaway list (each prompt costs 1 imagine + 4 upscales).
MAX_PROMPTS = 100

log = logging.getLogger(__name__)


def read_prompts(path: Path) -> list[str]:
    """The prompts of ``path``: one a line, blank lines and ``#`` comments skipped."""
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def stored_prompts(folder: Path) -> set[str]:
    """Prompts with a stored grid and four stored upscales of it, from the sidecars in ``folder``.

    An upscale is recognised by its ``originating_task_id`` naming a stored task, not by the field
    being set: a grid's own originating id may be a Discord message id.
    """
    metas = []
    for sidecar in folder.glob("*.json") if folder.is_dir() else []:
        try:
            meta = json.loads(sidecar.read_text(encoding="utf-8"))
        except ValueError:
            continue
        if isinstance(meta, dict) and meta.get("lotimage_task_id"):
            metas.append(meta)
    children = Counter(str(meta.get("originating_task_id")) for meta in metas)
    return {
        meta["prompt"].strip()
        for meta in metas
        if isinstance(meta.get("prompt"), str) and children[meta["lotimage_task_id"]] >= len(UPSCALE_BUTTONS)
    }


with DAG(
    dag_id="example_lotimage_batch",
    description="Many prompts in, grids and their four upscales stored",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["example", "lotimage", "batch"],
    params={
        "prompts": Param(
            None,
            type=["null", "array"],
            items={"type": "string", "minLength": 1},
            description=f"Prompts to render; empty: the lines of {PROMPTS_FILE.name}",
        ),
        "skip_stored": Param(
            True, type="boolean", description="Leave out prompts whose pictures are already stored"
        ),
    },
) as dag:

    @task
    def load_prompts(params: dict[str, Any] | None = None) -> list[str]:
        """The run's prompts, all validated before the first paid call."""
        from airflow_provider_lotimage.utils.secrets import validate_prompt

        params = params or {}
        prompts = params.get("prompts") or read_prompts(PROMPTS_FILE)
        if not prompts:
            raise ValueError(f"No prompts: the param 'prompts' is empty and so is {PROMPTS_FILE}")
        if len(prompts) > MAX_PROMPTS:
            raise ValueError(f"{len(prompts)} prompts; this DAG accepts at most {MAX_PROMPTS} a run")
        prompts = [validate_prompt(prompt, name=f"prompts[{n}]") for n, prompt in enumerate(prompts)]
        if params.get("skip_stored", True):
            done = stored_prompts(BATCH_DIR)
            skipped = [prompt for prompt in prompts if prompt in done]
            if skipped:
                log.info("%d prompt(s) already stored in %s: not rendered again", len(skipped), BATCH_DIR)
            prompts = [prompt for prompt in prompts if prompt not in done]
        return prompts

    # [START howto_operator_lotimage_imagine_mapped]
    imagine = ImagineOperator.partial(
        task_id="imagine",
        wait_for_completion=True,
        deferrable=True,
        poll_interval=POLL_INTERVAL,
        timeout=30 * 60,
        pool=POOL,
        map_index_template="{{ task.prompt | truncate(60) }}",  # the UI column holds 250 characters
    ).expand(prompt=load_prompts())
    # [END howto_operator_lotimage_imagine_mapped]

    # [START howto_operator_lotimage_button]
    # The whole result dict is passed, so each button is checked against those the grid offers.
    upscale = ButtonOperator.partial(
        task_id="upscale",
        wait_for_completion=True,
        deferrable=True,
        poll_interval=POLL_INTERVAL,
        timeout=30 * 60,
        pool=POOL,
        map_index_template="{{ task.button }} of {{ task.lotimage_task_id['lotimage_task_id'] }}",
    ).expand(lotimage_task_id=imagine.output, button=UPSCALE_BUTTONS)
    # [END howto_operator_lotimage_button]

    # [START howto_operator_lotimage_save_images]
    # One save task per kind, over the whole list: a mapped save would wait for the same upstream
    # tasks anyway, and one task downloading 24 pictures costs a worker far less than 24 tasks.
    save_grids = SaveImagesOperator(
        task_id="save_grids", result=imagine.output, destination=BATCH_DIR.as_uri()
    )
    save_upscales = SaveImagesOperator(
        task_id="save_upscales", result=upscale.output, destination=BATCH_DIR.as_uri()
    )
    # [END howto_operator_lotimage_save_images]
