"""``lotimage_batch``: a list of prompts in, every picture that could be made stored, and a report.

Why a mapped task group per prompt (the alternatives were tried against the same faults):

* **Flat mapping** (``ImagineOperator.expand`` over the prompts, ``ButtonOperator.expand`` over all
  grids x buttons, one save per kind) ties every prompt to every other: a single failed grid makes
  the whole button task ``upstream_failed``, so no other prompt is upscaled or stored. Trigger rules
  alone do not mend it: expanded over the grids that exist, the buttons of a grid rendered after
  clearing its failed prompt are never pressed.
* **A group per prompt** gives each prompt its own chain: its grid, its buttons, its save. A
  failure stays inside its group instance; Airflow maps the group once over the prompts, so
  clearing the failed task instances of the run (the UI's "Clear" with "Only failed", or
  ``airflow tasks clear --only-failed``) reruns exactly the failed steps of the failed prompts: a
  finished paid task is never cleared, so never paid for again, and the save skips pictures already
  stored.
* The save of a prompt and the batch's report run ``all_done`` (after failures too) and fail when
  what they report failed: the run fails when a prompt failed (alerts fire) after everything that
  could be stored was stored, unless the batch's tolerance accepts it.

Buttons inside the group are one task each (``U1`` .. ``U4`` by default): Airflow does not map a
task again inside a mapped group.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from airflow.sdk import task_group

from airflow_provider_lotimage.batch.operators import BatchReportOperator, PromptSaveOperator
from airflow_provider_lotimage.batch.report import Tolerance
from airflow_provider_lotimage.client.contract import UPSCALE_BUTTONS
from airflow_provider_lotimage.client.validation import validate_button
from airflow_provider_lotimage.exceptions import LotImageInputError
from airflow_provider_lotimage.operators.button import ButtonOperator
from airflow_provider_lotimage.operators.imagine import ImagineOperator

#: What a task id may hold; a button whose label is not made of these gets ``button_<n>``.
_TASK_ID_SAFE = re.compile(r"^[A-Za-z0-9_-]+$")
#: How a prompt's tasks are named in the UI's map-index column (which holds 250 characters).
SHOWN = "{{ task.prompt | truncate(60) }}"
#: The group's step that makes the grid.
IMAGINE_STEP = "imagine"


def lotimage_batch(
    *,
    prompts: Any,
    destination: str,
    group_id: str = "batch",
    buttons: Sequence[str] = UPSCALE_BUTTONS,
    max_failed_prompts: int | None = 0,
    max_failed_share: float | None = None,
    lotimage_conn_id: str = "lotimage_default",
    split_grid: bool = False,
    save_kwargs: dict[str, Any] | None = None,
    **submit_kwargs: Any,
) -> BatchReportOperator:
    """Render and store a batch of prompts, one prompt's failure costing only that prompt.

    For each prompt (a mapped task group ``group_id``): ``imagine`` waits for the grid, one task per
    button presses it on the grid and waits, and ``save`` stores whatever of them finished. Then
    ``<group_id>_report`` writes the batch report and decides the run's state.

    :param prompts: the prompts: a list, or an upstream task's output (validate them there, before
        any paid call).
    :param destination: the folder for pictures, sidecars and the report (templated, as
        :class:`~airflow_provider_lotimage.operators.save_images.SaveImagesOperator`'s).
    :param group_id: the mapped task group's id.
    :param buttons: the buttons pressed on each grid (default ``U1`` .. ``U4``); ``()`` for grids only.
    :param max_failed_prompts: failed prompts the run still succeeds with (default 0; ``None``: any).
    :param max_failed_share: share of failed prompts the run still succeeds with (``None``: not limited).
    :param lotimage_conn_id: the LotImage connection of every step.
    :param split_grid: also store each grid's four quadrants, cut locally.
    :param save_kwargs: extra arguments of each prompt's save (``max_bytes``, ``timeout``, ``asset``...).
    :param submit_kwargs: arguments of every paid step (``deferrable``, ``poll_interval``, ``timeout``,
        ``stall_timeout``, ``pool``, ``retries``...); each waits for its picture.
    :return: the report task, to put downstream tasks after the whole batch.
    """
    tolerance = Tolerance(max_failed_prompts, max_failed_share)
    if submit_kwargs.get("wait_for_completion") is False:
        raise LotImageInputError("lotimage_batch: every step waits for its picture; drop wait_for_completion")
    submit_kwargs = {**submit_kwargs, "wait_for_completion": True, "lotimage_conn_id": lotimage_conn_id}
    labels = [validate_button(label) for label in buttons]
    if len(set(labels)) != len(labels):
        raise LotImageInputError(f"lotimage_batch: buttons must differ, got {labels}")
    save_options = {"lotimage_conn_id": lotimage_conn_id, "split_grid": split_grid, **(save_kwargs or {})}

    def chain(prompt: Any) -> PromptSaveOperator:
        return _prompt_chain(prompt, labels, destination, submit_kwargs, save_options)

    chains = task_group(group_id=group_id)(chain).expand(prompt=prompts)
    report = BatchReportOperator(
        task_id=f"{group_id}_report",
        prompts=prompts,
        destination=destination,
        save_task_id=f"{group_id}.save",
        tolerance=tolerance,
    )
    chains >> report
    return report


def _prompt_chain(
    prompt: Any,
    labels: list[str],
    destination: str,
    submit_kwargs: dict[str, Any],
    save_options: dict[str, Any],
) -> PromptSaveOperator:
    """Build one prompt's tasks inside the group: its grid, a task per button, and its save."""
    grid = ImagineOperator(task_id=IMAGINE_STEP, prompt=prompt, map_index_template=SHOWN, **submit_kwargs)
    steps = {IMAGINE_STEP: grid.task_id}
    presses = []
    for number, label in enumerate(labels, 1):
        press = ButtonOperator(
            task_id=label if _TASK_ID_SAFE.match(label) else f"button_{number}",
            lotimage_task_id=grid.output,  # type: ignore[arg-type]  # resolved when it runs
            button=label,
            **submit_kwargs,
        )
        steps[label] = press.task_id
        presses.append(press)
    save = PromptSaveOperator(
        task_id="save",
        prompt=prompt,
        steps=steps,
        destination=destination,
        map_index_template=SHOWN,
        **save_options,
    )
    [grid, *presses] >> save
    return save
