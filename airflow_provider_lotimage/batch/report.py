"""What a batch report holds, how it is added up, and when failed prompts fail the run.

Nothing here imports Airflow: the report is plain JSON (an XCom, a file beside the pictures, the
gallery's list of failed prompts), built from the lines each prompt's save pushed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

from airflow_provider_lotimage.exceptions import LotImageInputError

#: The step of a prompt that failed when its save produced no line at all.
SAVE_STEP = "save"


class PromptFailure(TypedDict):
    """One failed step of a prompt: which, the error's class and the service's reason."""

    step: str
    error: str
    reason: str


class PromptReport(TypedDict):
    """One prompt's line: its state, why it failed, what was paid and what was stored where."""

    index: int
    prompt: str
    state: Literal["succeeded", "failed"]
    failures: list[PromptFailure]
    #: The LotImage taskId of each step that was paid (``imagine``, ``U1``, ...).
    lotimage_task_ids: dict[str, str]
    paid_tasks: int
    stored: list[str]
    new_pictures: int
    already_stored: int
    destination: str
    #: The try of the prompt's save that wrote this line: above 1 when the prompt was cleared and rerun.
    save_try: int


class BatchReport(TypedDict):
    """A whole batch: counts, the tolerance it was judged by, and every prompt's line."""

    dag_id: str
    run_id: str
    prompts: int
    succeeded: int
    failed: int
    max_failed_prompts: int | None
    max_failed_share: float | None
    within_tolerance: bool
    paid_tasks: int
    pictures_stored: int
    new_pictures: int
    report_file: str | None
    entries: list[PromptReport]


@dataclass(frozen=True)
class Tolerance:
    """How many failed prompts a batch accepts before its run fails (both limits apply if given).

    :param max_failed_prompts: at most this many failed prompts (``0``, the default: none);
        ``None``: no limit by count.
    :param max_failed_share: at most this share of the prompts (``0.1``: one in ten);
        ``None``: no limit by share.
    """

    max_failed_prompts: int | None = 0
    max_failed_share: float | None = None

    def __post_init__(self) -> None:
        count, share = self.max_failed_prompts, self.max_failed_share
        if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
            raise LotImageInputError(f"max_failed_prompts must be a whole number >= 0 or None, got {count!r}")
        if share is not None and (
            isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1
        ):
            raise LotImageInputError(f"max_failed_share must be a number from 0 to 1 or None, got {share!r}")

    def allows(self, failed: int, total: int) -> bool:
        """Return whether ``failed`` of ``total`` prompts is within both limits."""
        if self.max_failed_prompts is not None and failed > self.max_failed_prompts:
            return False
        if self.max_failed_share is not None and total:
            return failed <= math.floor(self.max_failed_share * total + 1e-9)
        return True


def prompt_report(
    *,
    index: int,
    prompt: str,
    failures: list[PromptFailure],
    task_ids: Mapping[str, str],
    stored: Sequence[str],
    new_paths: Sequence[str],
    destination: str,
    save_try: int = 1,
) -> PromptReport:
    """Build one prompt's line; a prompt with any failed step has failed."""
    new = sum(1 for path in stored if path in set(new_paths))
    return {
        "index": index,
        "prompt": prompt,
        "state": "failed" if failures else "succeeded",
        "failures": list(failures),
        "lotimage_task_ids": dict(task_ids),
        "paid_tasks": len(task_ids),
        "stored": list(stored),
        "new_pictures": new,
        "already_stored": len(stored) - new,
        "destination": destination,
        "save_try": save_try,
    }


def missing_report(index: int, prompt: str) -> PromptReport:
    """Return the line of a prompt whose save left none (it did not run to its end): failed."""
    failure: PromptFailure = {
        "step": SAVE_STEP,
        "error": "NoReport",
        "reason": "the prompt's save task left no report (it did not run to its end: see its log)",
    }
    return prompt_report(
        index=index, prompt=prompt, failures=[failure], task_ids={}, stored=[], new_paths=[], destination=""
    )


def batch_report(
    *,
    dag_id: str,
    run_id: str,
    prompts: Sequence[str],
    lines: Iterable[Any],
    tolerance: Tolerance,
    report_file: str | None = None,
) -> BatchReport:
    """Add up the prompts' lines (one per prompt, in prompt order; a missing one counts as failed)."""
    by_index = {line["index"]: line for line in lines if isinstance(line, Mapping) and "index" in line}
    entries = [
        PromptReport(**by_index[index]) if index in by_index else missing_report(index, prompt)  # type: ignore[typeddict-item]
        for index, prompt in enumerate(prompts)
    ]
    failed = sum(1 for entry in entries if entry["state"] == "failed")
    return {
        "dag_id": dag_id,
        "run_id": run_id,
        "prompts": len(entries),
        "succeeded": len(entries) - failed,
        "failed": failed,
        "max_failed_prompts": tolerance.max_failed_prompts,
        "max_failed_share": tolerance.max_failed_share,
        "within_tolerance": tolerance.allows(failed, len(entries)),
        "paid_tasks": sum(entry["paid_tasks"] for entry in entries),
        "pictures_stored": sum(len(entry["stored"]) for entry in entries),
        "new_pictures": sum(entry["new_pictures"] for entry in entries),
        "report_file": report_file,
        "entries": entries,
    }


def summary(report: BatchReport) -> list[str]:
    """Return the report as log lines: the totals, then each failed prompt with its reasons."""
    lines = [
        f"Batch: {report['succeeded']} of {report['prompts']} prompt(s) succeeded, "
        f"{report['failed']} failed; "
        f"{report['paid_tasks']} paid task(s); {report['pictures_stored']} picture(s) stored "
        f"({report['new_pictures']} new)"
    ]
    for entry in report["entries"]:
        if entry["state"] == "failed":
            reasons = "; ".join(f"{f['step']}: {f['reason']}" for f in entry["failures"])
            lines.append(
                f"  prompt {entry['index']} failed ({reasons}); "
                f"{len(entry['stored'])} picture(s) of it stored"
            )
    return lines
