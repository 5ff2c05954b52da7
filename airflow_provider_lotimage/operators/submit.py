"""LotImageSubmitOperator: what ImagineOperator and ButtonOperator share.

Submit once, remember it, then return, wait or defer. Crash safety comes from Airflow's
``ResumableJobMixin``: the new taskId is written to the task state store before any waiting, so a
retry after a worker crash reconnects to the task already paid for. The stored record also carries
a fingerprint of the request, so a task whose prompt or button changed since is submitted afresh
rather than confused with the old one. Below Airflow 3.3 the record is an Airflow Variable, deleted
when the task succeeds (:mod:`airflow_provider_lotimage.utils.task_state`).

Deferrable and waiting, a task by default ends in the triggerer when its picture is ready
(``end_from_trigger``): the trigger stores the XComs and, below Airflow 3.3, deletes those
Variables first; how, and what that skips, in
:class:`~airflow_provider_lotimage.triggers.task_progress.TaskProgressTrigger`.

**Paid-task budget**: when the DAG run has the param ``max_paid_tasks_per_run`` (a whole number;
``None`` for no budget), every paid call of the run's LotImage operators first takes a place in it,
counted across tasks, map indexes, workers and tries: a retry that reconnects to its paid task takes
none, one that submits afresh takes one more. Once the run's places are taken, the task fails
before any call with ``PaidTaskBudgetError`` and without Airflow retries (the run's budget stays
spent). How it is counted, and the exact bound, is in :mod:`airflow_provider_lotimage.utils.budget`;
the operator asks :class:`~.submission.PaidSubmission` before each paid call.

**Daily quota**: a paid call refused because the key's daily quota is spent fails at once, without
Airflow retries, saying when the quota resets (00:00 UTC); nothing was paid. A task whose paid task
cannot be *read* for the same reason fails the same way, keeping its taskId: cleared after the
reset, it reconnects to the paid task without paying again.

**Failures as data**: a task that fails first pushes why (XCom ``lotimage_failure``: the error's
class and the service's reason), so a batch reports each failed prompt with its reason
(:mod:`airflow_provider_lotimage.batch`).
"""

from __future__ import annotations

import hashlib
import json
import time
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseOperator

from airflow_provider_lotimage import config
from airflow_provider_lotimage.client.options import WaitOptions
from airflow_provider_lotimage.client.progress import DEFAULT_STALL_TIMEOUT
from airflow_provider_lotimage.client.results import LotImageResult
from airflow_provider_lotimage.client.validation import validate_cutting, validate_first_poll_delay
from airflow_provider_lotimage.exceptions import TaskFailedError, TaskNotFoundError
from airflow_provider_lotimage.hooks.lotimage import LotImageHook
from airflow_provider_lotimage.keys import (
    IMAGE_URL_XCOM_KEY,
    PAID_TASKS_KEY,
    SUBMITTED_TASK_KEY,
    TASK_ID_XCOM_KEY,
)
from airflow_provider_lotimage.links import LotImagePictureLink, record_result
from airflow_provider_lotimage.operators.submission import (
    Outcomes,
    PaidSubmission,
    abandoned_on_failure,
    paid_task_unreadable,
    run_budget,
)
from airflow_provider_lotimage.triggers.task_progress import TaskProgressTrigger
from airflow_provider_lotimage.utils.deferral import (
    TaskEnding,
    ends_in_triggerer,
    hold_seconds,
    result_from_event,
)
from airflow_provider_lotimage.utils.failures import fail_fast, recorded_failure
from airflow_provider_lotimage.utils.lineage import Created
from airflow_provider_lotimage.utils.secrets import validate_webhook
from airflow_provider_lotimage.utils.task_state import ResumableJobMixin, release
from airflow_provider_lotimage.utils.templating import NOT_YET, parse_time_value
from airflow_provider_lotimage.webhooks.completion import WebhookCompletion

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Context

    from airflow_provider_lotimage.utils.budget import PaidTaskBudget

__all__ = ["LotImageSubmitOperator"]


class LotImageSubmitOperator(ResumableJobMixin, BaseOperator):
    """Base of the operators that create a paid LotImage task (see the module doc: budget, quota).

    :param lotimage_conn_id: the LotImage connection.
    :param cutting: also deliver the four pictures of the grid separately (``image_urls``).
    :param webhook: URL the service POSTs the finished task to (polling stays the fallback). Unset,
        a deferrable wait gets webhook completion if the connection has a ``webhook_base_url``.
    :param wait_for_completion: wait for the picture; the return value is then the result dict
        (as TaskProgressSensor's) instead of the taskId.
    :param deferrable: wait in the triggerer, holding no worker slot.
    :param poll_interval: seconds between progress reads while waiting.
    :param timeout: seconds the wait may take (``execution_timeout`` stays Airflow's hard limit).
    :param stall_timeout: seconds without progress after which the task counts as stalled.
    :param first_poll_delay: deferrable only: seconds after the deferral before the trigger's
        first progress read, so before the task can resume. ``None`` (default): the worker's
        ``[workers] min_heartbeat_interval`` + 5 s (why: ``utils.deferral.default_first_poll_delay``).
    :param end_from_trigger: deferrable only: when the picture is ready, end the task in the
        triggerer (XComs ``return_value``, ``lotimage_task_id`` and ``lotimage_image_url`` as
        usual) instead of resuming it on a worker. ``False``: resume in ``execute_complete`` as
        before, for what only a worker runs on success: ``on_success_callback`` (a task that has
        one, or ``outlets``, ends on a worker anyway), ``post_execute``, task listeners. Failures
        always resume on a worker (failure and retry callbacks run as usual). ``None`` (default):
        ``True`` unless Airflow has task listeners (OpenLineage's), then ``False``: Airflow
        refuses a DAG whose task has ``end_from_trigger=True`` once listeners are registered.
    :param adaptive_polling: read progress when the task has likely moved or finished (predicted
        from its kind and progress rate) instead of every ``poll_interval``; see
        :meth:`~airflow_provider_lotimage.client.progress.ProgressWatch.next_poll_in`.
    """

    external_id_key = SUBMITTED_TASK_KEY
    operator_extra_links = (LotImagePictureLink(),)
    ui_color = "#f4e1ff"

    def __init__(
        self,
        *,
        lotimage_conn_id: str = LotImageHook.default_conn_name,
        cutting: bool = False,
        webhook: str | None = None,
        wait_for_completion: bool = False,
        deferrable: bool = config.default_deferrable(),
        poll_interval: float = 10.0,
        timeout: float | None = 3600.0,
        stall_timeout: float | None = DEFAULT_STALL_TIMEOUT,
        first_poll_delay: float | None = None,
        end_from_trigger: bool | None = None,
        adaptive_polling: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.lotimage_conn_id = lotimage_conn_id
        self.cutting = validate_cutting(cutting)
        self.webhook = webhook
        self.submit_webhook: str | None = webhook
        if (known := parse_time_value(webhook)) is not NOT_YET:
            validate_webhook(known)  # fail at parse time when the value is already known
        self.wait_for_completion = wait_for_completion
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.stall_timeout = stall_timeout
        self.first_poll_delay = validate_first_poll_delay(first_poll_delay)
        self.end_from_trigger = end_from_trigger
        self.adaptive_polling = adaptive_polling
        #: The run's paid-task budget for this try (``None``: the run has none), set as it starts.
        self._budget: PaidTaskBudget | None = None
        self._outcomes = Outcomes()
        #: The LotImage task this try made or reconnected to, for OpenLineage.
        self._created: Created | None = None

    @cached_property
    def hook(self) -> LotImageHook:
        """Return the hook of ``lotimage_conn_id``, built on first use."""
        return LotImageHook(self.lotimage_conn_id)

    # -- what subclasses provide -----------------------------------------------------------------

    def validate(self) -> None:
        """Check the rendered parameters; raise LotImageInputError before any call.

        The connection is read and its limiter looked up first: the hook registers the key with
        Airflow's masker, so the check for secrets in the rendered text knows the key too, and a
        rate-limit mistake fails before the run's budget is touched.
        """
        _ = self.hook.limiter
        self.webhook = validate_webhook(self.webhook)

    def submit(self) -> str:
        """Create the paid task and return its taskId."""
        raise NotImplementedError

    def request_fields(self) -> dict[str, Any]:
        """Return what identifies the request, for the crash-safety fingerprint."""
        return {"cutting": self.cutting}

    def task_kind(self) -> str | None:
        """Return the kind of task submitted (``client.schedule.KIND_*``), adaptive polling's prior."""
        return None

    # -- execution -------------------------------------------------------------------------------

    def execute(self, context: Context) -> str | LotImageResult:
        """Check the input, then submit (or reconnect to) the paid task and return or wait."""
        with recorded_failure(context), fail_fast(resubmits=True):
            self._budget = run_budget(context, LotImageSubmitOperator)
            if self._budget is not None:
                # Airflow deleted this task instance's XComs as the try started: claim again at once.
                self._budget.republish()
            self.validate()
            result = self.execute_resumable(context)
        self._release(context)
        self._created = Created.of(self.hook.settings.base_url, result, self.request_fields())
        return result

    def execute_complete(self, context: Context, event: dict[str, Any]) -> LotImageResult:
        """Resume after the trigger fired: validate its event, then return the result dict."""
        with recorded_failure(context), fail_fast(resubmits=True):
            self._budget = run_budget(context, LotImageSubmitOperator)
            task_id = event.get("lotimage_task_id") if isinstance(event, dict) else None
            with abandoned_on_failure(context, self.external_id_key), paid_task_unreadable(task_id):
                result = result_from_event(event)
            result = record_result(context, result)
        self._release(context)
        self._created = Created.of(self.hook.settings.base_url, result, {})
        return result

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage | None:
        """OpenLineage: the LotImage task created and its parent (utils/lineage)."""
        return self._created.lineage() if self._created is not None else None

    def _release(self, context: Context) -> None:
        for key in self._record_keys():
            release(context, key)

    def _record_keys(self) -> list[str]:
        """Return the keys of this task's records that go when it succeeds (see :func:`release`)."""
        return [self.external_id_key] + ([PAID_TASKS_KEY] if self._budget is not None else [])

    # -- ResumableJobMixin -----------------------------------------------------------------------

    def _fingerprint(self) -> str:
        fields = json.dumps({"class": type(self).__name__, **self.request_fields()}, sort_keys=True)
        return hashlib.sha256(fields.encode()).hexdigest()[:16]

    def submit_job(self, context: Context) -> dict[str, Any]:
        """Take a place in the run's budget, make the paid call, and return the record to store."""
        base_url, wanted = self.hook.settings.webhook_base_url, self.wait_for_completion and self.deferrable
        hook = WebhookCompletion(base_url, wanted=wanted, timeout=self.timeout)
        self.submit_webhook = self.webhook or hook.open(context)
        task_id = PaidSubmission(self._budget).submit(self.submit)
        hook.bind(task_id)
        self._outcomes.submitted.add(task_id)
        self.log.info("Submitted LotImage task %s", task_id)
        context["ti"].xcom_push(key=TASK_ID_XCOM_KEY, value=task_id)
        return {"lotimage_task_id": task_id, "request": self._fingerprint(), "webhook_key": hook.key}

    def get_job_status(self, external_id: Any, context: Context) -> str:
        """``running``/``finished`` reconnect; anything else submits afresh.

        A read error other than "failed"/"not found" propagates: when we cannot tell, paying again
        is the wrong default.
        """
        if not isinstance(external_id, dict) or external_id.get("request") != self._fingerprint():
            return "superseded"
        if external_id.get("abandoned"):
            return "abandoned"
        task_id = str(external_id.get("lotimage_task_id"))
        try:
            with paid_task_unreadable(task_id):
                progress = self.hook.get_task_progress(task_id)
        except TaskFailedError:
            return "failed"
        except TaskNotFoundError:
            return "not_found"
        if not progress.is_finished:
            return "running"
        self._outcomes.finished[task_id] = progress  # read once: each read counts against a daily quota
        return "finished"

    def is_job_active(self, status: str) -> bool:
        """Reconnect to a running task."""
        return status == "running"

    def is_job_succeeded(self, status: str) -> bool:
        """Return a finished task without paying again."""
        return status == "finished"

    def poll_until_complete(self, external_id: Any, context: Context) -> Any:
        """Return the taskId, or wait for the picture here or in the triggerer."""
        task_id = str(external_id["lotimage_task_id"])
        context["ti"].xcom_push(key=TASK_ID_XCOM_KEY, value=task_id)
        # The extra link is computed whenever the task finishes or defers: give it a value early.
        context["ti"].xcom_push(key=IMAGE_URL_XCOM_KEY, value="")
        if self.wait_for_completion and self.deferrable:
            trigger = _trigger(self, task_id, external_id.get("webhook_key"))
            self.defer(trigger=trigger, method_name="execute_complete")
        result = self._wait(task_id, context) if self.wait_for_completion else task_id
        self._outcomes.results[task_id] = result
        return result

    def get_job_result(self, external_id: Any, context: Context) -> Any:
        """Return the taskId, or the finished task's result dict (read at most once, recorded once)."""
        task_id = str(external_id["lotimage_task_id"])
        if task_id in self._outcomes.results:
            return self._outcomes.results[task_id]
        context["ti"].xcom_push(key=TASK_ID_XCOM_KEY, value=task_id)
        if not self.wait_for_completion:
            return task_id
        progress = self._outcomes.finished.get(task_id)
        if progress is None:
            with paid_task_unreadable(task_id):
                progress = self.hook.get_task_progress(task_id)
        return record_result(context, progress.to_result())

    # -- waiting -----------------------------------------------------------------------------------

    def _wait(self, task_id: str, context: Context) -> LotImageResult:
        """Wait here, blocking the worker, and record the finished task's result."""
        with abandoned_on_failure(context, self.external_id_key), paid_task_unreadable(task_id):
            progress = self.hook.wait_for_task(
                task_id,
                poll_interval=self.poll_interval,
                timeout=self.timeout,
                stall_timeout=self.stall_timeout,
                on_progress=lambda pct: self.log.info("LotImage task %s: %d%%", task_id, pct),
                kind=self.task_kind(),
                adaptive=self.adaptive_polling,
                from_submission=task_id in self._outcomes.submitted,
            )
        return record_result(context, progress.to_result())


def _trigger(operator: LotImageSubmitOperator, task_id: str, webhook_key: Any) -> TaskProgressTrigger:
    """Build the trigger that waits for ``task_id`` (told by webhook) and, if allowed, ends the task."""
    end_here = ends_in_triggerer(operator)
    options = WaitOptions.starting_at(
        time.time(),
        timeout=operator.timeout,
        first_poll_delay=hold_seconds(operator.first_poll_delay),
        poll_interval=operator.poll_interval,
        stall_timeout=operator.stall_timeout,
        kind=operator.task_kind(),
        adaptive_polling=operator.adaptive_polling,
        webhook_key=webhook_key if isinstance(webhook_key, str) else None,
        from_submission=task_id in operator._outcomes.submitted,
    )
    ending = TaskEnding(
        end_from_trigger=end_here,
        release_keys=tuple(operator._record_keys()) if end_here else (),
        push_return_value=operator.do_xcom_push,
        push_task_id=True,
    )
    return TaskProgressTrigger.waiting_for(task_id, operator.lotimage_conn_id, options, ending)
