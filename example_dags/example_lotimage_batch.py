"""A batch of prompts: one grid per prompt, its four upscales, every picture stored.

Why it is built this way:

* **Prompts** come from ``prompts/batch_prompts.txt`` beside this file (one a line; blank lines
  and ``#`` comments skipped), or from the run's ``prompts`` param (a list of strings). They are
  read and validated in one task *before* any paid call, so a bad prompt costs nothing.
* **Nothing is paid twice**: a prompt whose grid and four upscales are already stored in the
  batch folder is left out (param ``skip_stored``, default true), so running the batch again, for
  example after some prompts failed, renders only what is missing. The match is on the prompt
  text the service reported back; a prompt it rewrote is rendered again.
* **One prompt's failure costs only that prompt**: ``lotimage_batch`` maps a task group over the
  prompts, each with its grid (``batch.imagine``), its four upscales (``batch.U1`` .. ``batch.U4``)
  and its save (``batch.save``, run after failures too). A prompt the service rejects, fails or
  stalls ends its own group instance; every other prompt is upscaled and stored in the same run.
  ``batch_report`` then writes the batch report (log, XCom, ``batch-report.<run>.json`` beside the
  pictures, the gallery) and fails the run if more prompts failed than ``$LOTIMAGE_MAX_FAILED_PROMPTS``
  (default 0) allows. To rerun only the failed prompts, clear the run's failed tasks ("Only
  failed"): each paid task keeps its taskId, so a retry reconnects instead of paying again.
* **Deferrable** waits: hundreds of renders hold no worker slot.
* **Pool**: every LotImage task runs in the pool ``$LOTIMAGE_POOL`` (default ``lotimage``). Create
  it once, counting deferred tasks, with about twice as many slots as the key renders at once (3):
  the key then always has a task queued while Airflow hands a finished task's slot to the next,
  and no task waits in LotImage's queue long enough to look stalled::

      airflow pools set lotimage 6 "LotImage calls" --include-deferred

  Without ``--include-deferred`` the pool caps only the submissions running in workers. The rate
  of calls is bounded separately by the hook's limiter.
* **Storage**: each prompt's save stores its grid and upscales as soon as they exist (CDN links
  expire after about a day; an expired one is renewed once), into ``$LOTIMAGE_OUTPUT_DIR/batch``
  (default ``./output/batch``). Saving is idempotent: pictures already stored are neither
  downloaded nor rewritten, so a rerun fetches only what is missing.

Poll interval: ``$LOTIMAGE_POLL_INTERVAL`` seconds (default 10); seconds without progress before a
task counts as stalled: ``$LOTIMAGE_STALL_TIMEOUT``.
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

from airflow_provider_lotimage.batch import lotimage_batch
from airflow_provider_lotimage.client.progress import DEFAULT_STALL_TIMEOUT

OUTPUT_DIR = Path(os.environ.get("LOTIMAGE_OUTPUT_DIR", "output")).resolve()
BATCH_DIR = OUTPUT_DIR / "batch"
POLL_INTERVAL = float(os.environ.get("LOTIMAGE_POLL_INTERVAL", "10"))
POOL = os.environ.get("LOTIMAGE_POOL", "lotimage")
STALL_TIMEOUT = float(os.environ.get("LOTIMAGE_STALL_TIMEOUT", DEFAULT_STALL_TIMEOUT))
#: Failed prompts the run still succeeds with (their pictures are missing; the report lists them).
MAX_FAILED_PROMPTS = int(os.environ.get("LOTIMAGE_MAX_FAILED_PROMPTS", "0"))
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

    # [START howto_lotimage_batch]
    # One mapped task group per prompt (its grid, its four upscales, its save), then the report:
    # a prompt the service rejects, fails or stalls costs only itself (airflow_provider_lotimage.batch).
    lotimage_batch(
        prompts=load_prompts(),
        destination=BATCH_DIR.as_uri(),
        buttons=UPSCALE_BUTTONS,
        max_failed_prompts=MAX_FAILED_PROMPTS,
        deferrable=True,
        poll_interval=POLL_INTERVAL,
        timeout=30 * 60,
        stall_timeout=STALL_TIMEOUT,
        pool=POOL,
    )
    # [END howto_lotimage_batch]
