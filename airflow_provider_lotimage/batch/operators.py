"""The two operators a batch adds around the paid tasks: each prompt's save, and the batch's report.

Both run with the trigger rule ``all_done``: after a failure upstream they still run, so a
prompt's pictures are stored although one of its buttons failed, and the report is written
although some prompts failed. Both fail (without retries: nothing a retry of theirs could fix)
when what they report failed, so the run's state stays honest; the report decides the run's state
by the batch's :class:`~.report.Tolerance`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowFailException, BaseOperator

from airflow_provider_lotimage.batch.report import (
    BatchReport,
    PromptFailure,
    PromptReport,
    Tolerance,
    batch_report,
    prompt_report,
    summary,
)
from airflow_provider_lotimage.keys import (
    BATCH_REPORT_XCOM_KEY,
    FAILURE_XCOM_KEY,
    PROMPT_REPORT_XCOM_KEY,
    TASK_ID_XCOM_KEY,
)
from airflow_provider_lotimage.operators.save_images import (
    Saved,
    SaveImagesOperator,
    parse_results,
    resolve_destination,
)
from airflow_provider_lotimage.storage.layout import report_name
from airflow_provider_lotimage.storage.store import PictureStore
from airflow_provider_lotimage.utils.failures import fail_fast, failure_record

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.sdk import Context

ALL_DONE = "all_done"


class PromptSaveOperator(SaveImagesOperator):
    """Store what one prompt's steps produced, and push the prompt's line of the batch report.

    Runs once every step of the prompt has ended (trigger rule ``all_done``). It reads each step's
    result and, for a step that failed, the reason the step pushed as it failed (XCom
    ``lotimage_failure``); stores the pictures of the steps that finished; pushes the prompt's
    :class:`~.report.PromptReport` (XCom ``lotimage_prompt_report``); and fails, after storing,
    when a step failed, so clearing the run's failed tasks reruns exactly the failed prompts.

    Other parameters are :class:`~airflow_provider_lotimage.operators.save_images.SaveImagesOperator`'s,
    whose ``result`` this operator gathers itself.

    :param prompt: the prompt (templated): the batch group's argument.
    :param steps: each step's name (``imagine``, ``U1``, ...) and its task's id, in order.
    """

    template_fields: Sequence[str] = ("prompt", "destination")

    def __init__(self, *, prompt: Any, steps: Mapping[str, str], **kwargs: Any) -> None:
        kwargs.setdefault("trigger_rule", ALL_DONE)
        super().__init__(result=None, **kwargs)
        self.prompt = prompt
        self.steps = dict(steps)

    def execute(self, context: Context) -> list[str]:
        """Store the finished steps' pictures, push the prompt's line, fail if a step failed."""
        ti = context["ti"]
        index = max(ti.map_index or 0, 0)
        results: list[dict[str, Any]] = []
        failures: list[PromptFailure] = []
        task_ids: dict[str, str] = {}
        for step, task_id in self.steps.items():
            paid = ti.xcom_pull(task_ids=task_id, key=TASK_ID_XCOM_KEY, map_indexes=ti.map_index)
            if isinstance(paid, str) and paid:
                task_ids[step] = paid
            result = ti.xcom_pull(task_ids=task_id, map_indexes=ti.map_index)
            if isinstance(result, Mapping):
                results.append(dict(result))
                continue
            failures.append(self._failure(ti, step, task_id, first_failed=failures[:1]))
        stored = Saved(str(self.destination))
        try:
            with fail_fast(resubmits=False):
                stored = self.store_results(context, parse_results(results)) if results else stored
        except Exception as err:
            record = failure_record(err)
            failures.append({"step": "save", "error": str(record["error"]), "reason": str(record["reason"])})
            raise
        finally:
            line = self._line(index, failures, task_ids, stored, save_try=ti.try_number)
            ti.xcom_push(key=PROMPT_REPORT_XCOM_KEY, value=line)
        if failures:
            reasons = "; ".join(f"{f['step']}: {f['reason']}" for f in failures)
            raise AirflowFailException(
                f"Prompt {index} failed ({reasons}). {len(stored.paths)} picture(s) of it "
                "are stored; clearing the run's failed tasks reruns only the failed steps."
            )
        return stored.paths

    def _failure(
        self, ti: Any, step: str, task_id: str, *, first_failed: list[PromptFailure]
    ) -> PromptFailure:
        """Say why ``step`` left no result: its recorded failure, or that it could not run."""
        record = ti.xcom_pull(task_ids=task_id, key=FAILURE_XCOM_KEY, map_indexes=ti.map_index)
        if isinstance(record, Mapping):
            return {"step": step, "error": str(record.get("error")), "reason": str(record.get("reason"))}
        if first_failed:
            reason = f"not run: step {first_failed[0]['step']} of this prompt failed"
            return {"step": step, "error": "UpstreamFailed", "reason": reason}
        return {"step": step, "error": "NoResult", "reason": "ended without a result (see its log)"}

    def _line(
        self,
        map_index: int,
        failures: list[PromptFailure],
        task_ids: dict[str, str],
        stored: Saved,
        *,
        save_try: int,
    ) -> PromptReport:
        line = prompt_report(
            index=map_index,
            prompt=str(self.prompt),
            failures=failures,
            task_ids=task_ids,
            stored=stored.paths,
            new_paths=stored.new_paths,
            destination=stored.destination,
            save_try=save_try,
        )
        self.log.info(
            "Prompt %d %s: %d paid task(s), %d picture(s) stored (%d new)",
            line["index"],
            line["state"],
            line["paid_tasks"],
            len(line["stored"]),
            line["new_pictures"],
        )
        return line


class BatchReportOperator(BaseOperator):
    """Gather every prompt's line into the batch report; fail the run beyond the tolerance.

    The report goes to the log, to XCom (the return value, and ``lotimage_batch_report`` where the
    gallery finds it) and to a JSON file beside the pictures (``batch-report.<run>.json``).

    :param prompts: the batch's prompts (templated; an upstream task's output).
    :param destination: the pictures' folder, where the report file goes (templated).
    :param save_task_id: the id of the prompts' save task (``<group>.save``).
    :param tolerance: how many failed prompts still let the run succeed (see :class:`~.report.Tolerance`).
    """

    template_fields: Sequence[str] = ("prompts", "destination")
    ui_color = "#e8f4ea"

    def __init__(
        self,
        *,
        prompts: Any,
        destination: Any,
        save_task_id: str,
        tolerance: Tolerance | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("trigger_rule", ALL_DONE)
        super().__init__(**kwargs)
        self.prompts = prompts
        self.destination = destination
        self.save_task_id = save_task_id
        self.tolerance = tolerance or Tolerance()

    def execute(self, context: Context) -> BatchReport:
        """Build, write and push the report; raise ``AirflowFailException`` beyond the tolerance."""
        ti = context["ti"]
        prompts = [str(prompt) for prompt in (self.prompts or [])]
        lines = ti.xcom_pull(
            task_ids=self.save_task_id, key=PROMPT_REPORT_XCOM_KEY, map_indexes=list(range(len(prompts)))
        )
        report = batch_report(
            dag_id=ti.dag_id,
            run_id=ti.run_id,
            prompts=prompts,
            lines=lines or [],
            tolerance=self.tolerance,
        )
        with fail_fast(resubmits=False):
            store = PictureStore(resolve_destination(self.destination))
        name = report_name(ti.run_id)
        report["report_file"] = f"{store.shown.rstrip('/')}/{name}"
        # The log and the XCom first: a destination that cannot be written loses only the file.
        for line in summary(report):
            self.log.info("%s", line)
        ti.xcom_push(key=BATCH_REPORT_XCOM_KEY, value=report)
        store.write_report(name, json.dumps(report, indent=2, sort_keys=True).encode())
        if not report["within_tolerance"]:
            raise AirflowFailException(
                f"{report['failed']} of {report['prompts']} prompt(s) failed, more than the batch allows "
                f"(max_failed_prompts={self.tolerance.max_failed_prompts}, "
                f"max_failed_share={self.tolerance.max_failed_share}); every other prompt's pictures are "
                f"stored. Report: {report['report_file']}"
            )
        return report


__all__ = ["BatchReportOperator", "PromptSaveOperator"]
