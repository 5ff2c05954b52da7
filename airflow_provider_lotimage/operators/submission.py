"""What one try of a submitting operator knows about paying: the run's budget, the paid call, the quota.

* :class:`PaidSubmission`: a place in the run's ``max_paid_tasks_per_run`` budget is taken before
  each paid call (:mod:`airflow_provider_lotimage.utils.budget`) and given back when the call
  certainly created no task; a call refused for the daily quota says what that means for the task.
* :func:`paid_task_unreadable`: a paid task whose progress cannot be read for the same reason says
  that clearing the task after the reset costs nothing.
* :func:`abandoned_on_failure`: a paid task that failed or stalled at LotImage is not reconnected
  to: its record is marked, so a retry submits afresh.
* :class:`Outcomes`: what the try learnt of its LotImage tasks, handed from one step of the resumable
  job to the next instead of read again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_lotimage.client.contract import TaskProgress
from airflow_provider_lotimage.exceptions import (
    AmbiguousSubmitError,
    LotImageError,
    QuotaExhaustedError,
    TaskFailedError,
    TaskStalledError,
)
from airflow_provider_lotimage.keys import BUDGET_PARAM
from airflow_provider_lotimage.utils.budget import PaidTaskBudget, RunLedger, paid_task_ids, parse_budget
from airflow_provider_lotimage.utils.task_state import task_state

if TYPE_CHECKING:
    from airflow.sdk import Context


def run_budget(context: Context, operator_class: type) -> PaidTaskBudget | None:
    """Return the run's paid-task budget (the DAG param ``max_paid_tasks_per_run``), if it has one.

    :param operator_class: the operators whose paid calls count (every LotImage submitter).
    :raises LotImageInputError: the param is not a whole number, before any call.
    """
    params = context.get("params") or {}
    limit = parse_budget(params.get(BUDGET_PARAM))
    if limit is None:
        return None
    return PaidTaskBudget(limit, RunLedger(context, paid_task_ids(context["dag"], operator_class)))


@dataclass(frozen=True)
class PaidSubmission:
    """One paid call under the run's budget (``None``: the run has none).

    A place is taken before the call and given back when the service certainly created no task: a
    refusal (400, 401, 403, 429...) or a call that never left. An ambiguous failure keeps its
    place, since the task may exist and be paid.
    """

    budget: PaidTaskBudget | None

    def submit(self, paid_call: Callable[[], str]) -> str:
        """Take a place, make ``paid_call``, and return the new taskId.

        :raises QuotaExhaustedError: the key's daily quota is spent (nothing paid, advice added).
        :raises LotImageError: the call failed; its place is given back unless it was ambiguous.
        """
        if self.budget is not None:
            self.budget.admit()
        try:
            return paid_call()
        except QuotaExhaustedError as err:
            self._give_back()
            raise with_advice(
                err,
                "This task's paid call was refused, so nothing was paid for it: clear it after the "
                "reset to submit it then",
            ) from err
        except LotImageError as err:
            if not isinstance(err, AmbiguousSubmitError):
                self._give_back()  # answered with a refusal, or never sent: no task was created
            raise

    def _give_back(self) -> None:
        if self.budget is not None:
            self.budget.release()


@contextlib.contextmanager
def paid_task_unreadable(lotimage_task_id: str | None) -> Iterator[None]:
    """Say, when a read of a paid task is refused for the daily quota, that clearing costs nothing.

    The taskId stays recorded (it is not forgotten, unlike a failed task), so the task cleared
    after the reset reconnects to the paid task instead of submitting again.
    """
    try:
        yield
    except QuotaExhaustedError as err:
        which = f"LotImage task {lotimage_task_id}" if lotimage_task_id else "The LotImage task"
        raise with_advice(
            err,
            f"{which} is paid but its progress cannot be read until then: clear this task after "
            "the reset and it reconnects to the paid task without paying again",
        ) from err


def with_advice(err: QuotaExhaustedError, advice: str) -> QuotaExhaustedError:
    """Return the same spent-quota error with what it means for this task appended."""
    return QuotaExhaustedError(f"{err.message}. {advice}", status=err.status, http_status=err.http_status)


@dataclass
class Outcomes:
    """What a try learnt of its LotImage tasks, by taskId, handed from one step of the job to the next.

    The resumable-job contract asks in separate steps for a stored task's status, for the wait,
    and for the result (``get_job_status``, ``poll_until_complete``, ``get_job_result``). A finished
    task does not change, so the answer one step read, and the result one step recorded (XComs,
    the "finished" log line), serve the next step: reading again would spend one of a trial key's
    10 calls a day, recording again would log the task twice.
    """

    finished: dict[str, TaskProgress] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)
    #: Tasks this try submitted (not reconnected to): their waits begin at the submission.
    submitted: set[str] = field(default_factory=set)


@contextlib.contextmanager
def abandoned_on_failure(context: Context, record_key: str) -> Iterator[None]:
    """Mark the stored task as not worth reconnecting to when it failed or stalled, so a retry submits afresh.

    :param record_key: the task-state key of the submitted task's record.
    """
    try:
        yield
    except (TaskStalledError, TaskFailedError):
        store = task_state(context)
        stored = store.get(record_key) if store is not None else None
        if store is not None and isinstance(stored, dict):
            store.set(record_key, {**stored, "abandoned": True})
        raise
