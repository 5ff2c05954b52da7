"""What ImagineOperator and ButtonOperator share: submit once, remember it, then return, wait or defer.

Crash safety comes from Airflow's ``ResumableJobMixin``: the new taskId is written to the task
state store before any waiting, so a retry after a worker crash reconnects to the task already
paid for. The stored record also carries a fingerprint of the request, so a task whose prompt or
button changed since is submitted afresh rather than confused with the old one. Below Airflow 3.3
the record is an Airflow Variable, deleted when the task succeeds (:mod:`..task_state`).
"""

from __future__ import annotations

import hashlib
import json
import time
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseOperator, conf

from airflow_provider_lotimage.exceptions import TaskFailedError, TaskNotFoundError, TaskStalledError
from airflow_provider_lotimage.failures import fail_fast
from airflow_provider_lotimage.hooks.lotimage import LotImageHook
from airflow_provider_lotimage.links import IMAGE_URL_XCOM_KEY, LotImagePictureLink, record_result
from airflow_provider_lotimage.task_state import ResumableJobMixin, release, task_state
from airflow_provider_lotimage.templating import is_template
from airflow_provider_lotimage.triggers.task_progress import TaskProgressTrigger, result_from_event
from airflow_provider_lotimage.validation import validate_cutting, validate_webhook
from airflow_provider_lotimage.waiting import DEFAULT_STALL_TIMEOUT

if TYPE_CHECKING:
    from airflow.sdk import Context

#: XCom key of the submitted taskId, pushed as soon as the service returns it.
TASK_ID_XCOM_KEY = "lotimage_task_id"


class LotImageSubmitOperator(ResumableJobMixin, BaseOperator):
    """Base of the operators that create a paid LotImage task.

    :param lotimage_conn_id: the LotImage connection.
    :param cutting: also deliver the four pictures of the grid separately (``image_urls``).
    :param webhook: URL the service POSTs the finished task to (polling stays the fallback).
    :param wait_for_completion: wait for the picture; the return value is then the result dict
        (as TaskProgressSensor's) instead of the taskId.
    :param deferrable: wait in the triggerer, holding no worker slot.
    :param poll_interval: seconds between progress reads while waiting.
    :param timeout: seconds the wait may take (``execution_timeout`` stays Airflow's hard limit).
    :param stall_timeout: seconds without progress after which the task counts as stalled.
    """

    external_id_key = "lotimage_task"
    operator_extra_links = (LotImagePictureLink(),)
    ui_color = "#f4e1ff"

    def __init__(
        self,
        *,
        lotimage_conn_id: str = LotImageHook.default_conn_name,
        cutting: bool = False,
        webhook: str | None = None,
        wait_for_completion: bool = False,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float = 10.0,
        timeout: float | None = 3600.0,
        stall_timeout: float | None = DEFAULT_STALL_TIMEOUT,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.lotimage_conn_id = lotimage_conn_id
        self.cutting = validate_cutting(cutting)
        self.webhook = webhook
        if not is_template(webhook):
            validate_webhook(webhook)  # fail at parse time when the value is already known
        self.wait_for_completion = wait_for_completion
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.stall_timeout = stall_timeout
        self._result: Any = None

    @cached_property
    def hook(self) -> LotImageHook:
        return LotImageHook(self.lotimage_conn_id)

    # -- what subclasses provide -----------------------------------------------------------------

    def validate(self) -> None:
        """Check the rendered parameters; raise LotImageInputError before any call."""
        self.webhook = validate_webhook(self.webhook)

    def submit(self) -> str:
        """Create the paid task and return its taskId."""
        raise NotImplementedError

    def request_fields(self) -> dict[str, Any]:
        """Return what identifies the request, for the crash-safety fingerprint."""
        return {"cutting": self.cutting}

    # -- execution -------------------------------------------------------------------------------

    def execute(self, context: Context) -> Any:
        with fail_fast(resubmits=True):
            self.validate()
            result = self.execute_resumable(context)
        release(context, self.external_id_key)
        return result

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        """Resume after the trigger fired: validate its event, then return the result dict."""
        with fail_fast(resubmits=True):
            try:
                result = result_from_event(event)
            except (TaskStalledError, TaskFailedError):
                self._forget(context)
                raise
            result = record_result(context, result)
        release(context, self.external_id_key)
        return result

    # -- ResumableJobMixin -----------------------------------------------------------------------

    def _fingerprint(self) -> str:
        fields = json.dumps({"class": type(self).__name__, **self.request_fields()}, sort_keys=True)
        return hashlib.sha256(fields.encode()).hexdigest()[:16]

    def submit_job(self, context: Context) -> dict[str, Any]:
        task_id = self.submit()
        self.log.info("Submitted LotImage task %s", task_id)
        context["ti"].xcom_push(key=TASK_ID_XCOM_KEY, value=task_id)
        return {"lotimage_task_id": task_id, "request": self._fingerprint()}

    def get_job_status(self, external_id: Any, context: Context) -> str:
        """``running``/``finished`` reconnect; anything else submits afresh.

        A read error other than "failed"/"not found" propagates: when we cannot tell, paying again
        is the wrong default.
        """
        if not isinstance(external_id, dict) or external_id.get("request") != self._fingerprint():
            return "superseded"
        if external_id.get("abandoned"):
            return "abandoned"
        try:
            progress = self.hook.get_task_progress(str(external_id.get("lotimage_task_id")))
        except TaskFailedError:
            return "failed"
        except TaskNotFoundError:
            return "not_found"
        return "finished" if progress.is_finished else "running"

    def is_job_active(self, status: str) -> bool:
        return status == "running"

    def is_job_succeeded(self, status: str) -> bool:
        return status == "finished"

    def poll_until_complete(self, external_id: Any, context: Context) -> Any:
        task_id = str(external_id["lotimage_task_id"])
        context["ti"].xcom_push(key=TASK_ID_XCOM_KEY, value=task_id)
        # The extra link is computed whenever the task finishes or defers: give it a value early.
        context["ti"].xcom_push(key=IMAGE_URL_XCOM_KEY, value="")
        if not self.wait_for_completion:
            self._result = task_id
            return task_id
        if self.deferrable:
            self.defer(
                trigger=TaskProgressTrigger(
                    lotimage_task_id=task_id,
                    lotimage_conn_id=self.lotimage_conn_id,
                    poll_interval=self.poll_interval,
                    end_time=None if self.timeout is None else time.time() + self.timeout,
                    stall_timeout=self.stall_timeout,
                ),
                method_name="execute_complete",
            )
        try:
            progress = self.hook.wait_for_task(
                task_id,
                poll_interval=self.poll_interval,
                timeout=self.timeout,
                stall_timeout=self.stall_timeout,
                on_progress=lambda pct: self.log.info("LotImage task %s: %d%%", task_id, pct),
            )
        except (TaskStalledError, TaskFailedError):
            self._forget(context)
            raise
        self._result = record_result(context, progress.to_result())
        return self._result

    def get_job_result(self, external_id: Any, context: Context) -> Any:
        if self._result is not None:
            return self._result
        task_id = str(external_id["lotimage_task_id"])
        context["ti"].xcom_push(key=TASK_ID_XCOM_KEY, value=task_id)
        if not self.wait_for_completion:
            return task_id
        return record_result(context, self.hook.get_task_progress(task_id).to_result())

    def _forget(self, context: Context) -> None:
        """Mark the stored task as not worth reconnecting to, so a retry submits afresh."""
        store = task_state(context)
        if store is None:
            return
        stored = store.get(self.external_id_key)
        if isinstance(stored, dict):
            store.set(self.external_id_key, {**stored, "abandoned": True})
