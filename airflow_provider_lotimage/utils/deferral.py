"""What a task decides as it hands its wait to the triggerer, and what it reads when it comes back.

* **When the trigger may read first** (:func:`default_first_poll_delay`, :func:`earliest_first_poll`):
  the guard against Airflow's deferral race, decided in the worker at deferral time.
* **Where the task ends** (:func:`ends_in_triggerer`, :class:`TaskEnding`): in the triggerer when
  nothing only a worker runs is lost, and what the trigger then stores and releases.
* **What the trigger's event means** (:func:`result_from_event`), the same for every
  ``execute_complete``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from airflow_provider_lotimage import config
from airflow_provider_lotimage.exceptions import LotImageError, TaskTimeoutError, error_class
from airflow_provider_lotimage.version_compat import has_task_listeners

if TYPE_CHECKING:
    from airflow_provider_lotimage.client.results import LotImageResult

#: Seconds added to Airflow's ``[workers] min_heartbeat_interval`` to make the default delay of a
#: trigger's first progress read (:func:`default_first_poll_delay`). It covers what happens after
#: the task's supervisor notices that the task process has exited: its wind-down, the executor's
#: report, and the scheduler loop that handles the report (about a second on an idle scheduler,
#: several on a busy two-core machine).
RESUME_MARGIN = 5.0


def default_first_poll_delay() -> float:
    """Return the seconds a trigger waits after its deferral before its first progress read.

    Why wait at all: Airflow 3.1 to 3.3 can fail a deferred task whose trigger fires within a few
    seconds of the deferral ("state mismatch" in the scheduler; apache/airflow issues #66374,
    #71580, #72716). The task's supervisor notices that the task process has exited (it deferred)
    only at its next select timeout, ``[workers] min_heartbeat_interval`` (5 s by default), and
    only then does the executor report the deferring try as finished. If the trigger has fired
    and the scheduler has already queued the resumed try by the time that late report is
    handled, the scheduler takes the report for the end of the resumed try and fails the task. A
    trigger that can yield nothing before the report is handled cannot lose that race, so its
    first read, and therefore its first event, comes no sooner than the interval plus
    :data:`RESUME_MARGIN` (10 s with Airflow's defaults).

    Why read here, in the worker at deferral time: the supervisor that lingers is the worker's,
    so the worker's setting is the one that counts (the DAG processor's and the triggerer's may
    differ), and a change of the setting applies from the next deferral on.
    """
    return max(0.0, config.min_heartbeat_interval()) + RESUME_MARGIN


def hold_seconds(first_poll_delay: float | None) -> float:
    """Return the seconds a task's ``first_poll_delay`` stands for (``None``: the default delay)."""
    return default_first_poll_delay() if first_poll_delay is None else max(0.0, float(first_poll_delay))


def earliest_first_poll(first_poll_delay: float | None, *, now: float | None = None) -> float:
    """Return when (epoch seconds) a trigger deferred now may read progress for the first time.

    Absolute, so that a trigger recreated after a triggerer restart neither waits the whole delay
    again nor forgets it. ``None`` means :func:`default_first_poll_delay`; call this in the worker,
    at deferral time, for the reason given there.
    """
    return (time.time() if now is None else now) + hold_seconds(first_poll_delay)


@dataclass(frozen=True)
class TaskEnding:
    """How a trigger ends its task on success; the field names are the trigger's serialized kwargs.

    :param end_from_trigger: end the task in the triggerer (:func:`ends_in_triggerer` decides).
    :param release_keys: the task's records to release first (see ``utils.task_state.release``).
    :param push_return_value: store the ``return_value`` XCom (the task's ``do_xcom_push``).
    :param push_task_id: store the ``lotimage_task_id`` XCom too (the submitting operators).
    """

    end_from_trigger: bool = False
    release_keys: tuple[str, ...] = ()
    push_return_value: bool = True
    push_task_id: bool = False

    def to_kwargs(self) -> dict[str, Any]:
        """Return the fields as JSON-ready keyword arguments (``release_keys`` as a list)."""
        return {
            "end_from_trigger": self.end_from_trigger,
            "release_keys": list(self.release_keys),
            "push_return_value": self.push_return_value,
            "push_task_id": self.push_task_id,
        }


def ends_in_triggerer(task: Any) -> bool:
    """Return whether ``task`` (with ``end_from_trigger``) may end in the triggerer on success.

    A task that ends there skips what only a worker does when a task succeeds (the triggerer just
    sets the state and stores the XComs): ``on_success_callback`` (the triggerer sends a success
    callback request, but the DAG processor of Airflow 3.1 to 3.3 runs failure callbacks only),
    the asset events of ``outlets``, ``post_execute`` and the worker's task listeners. A task with
    a success callback or outlets therefore ends on a worker anyway, saying so.

    Listeners: Airflow refuses to load a DAG with a task whose ``end_from_trigger`` is true once
    plugins registered listeners (the OpenLineage provider's, ...), since they would not see it end.
    So the operators' default is ``None``: end in the triggerer unless listeners are registered,
    then on a worker, where they run (docs/lineage.md).
    """
    if task.end_from_trigger is None and has_task_listeners():
        task.log.info(
            "Airflow has task listeners (e.g. OpenLineage), which only a worker runs: task %s ends "
            "on a worker, not in the triggerer",
            task.task_id,
        )
        return False
    if task.end_from_trigger is False:
        return False
    skipped = [name for name in ("on_success_callback", "outlets") if getattr(task, name, None)]
    if skipped:
        task.log.info(
            "Task %s has %s, which only a worker runs: it ends on a worker, not in the triggerer",
            task.task_id,
            " and ".join(skipped),
        )
        return False
    return True


def result_from_event(event: Any) -> LotImageResult:
    """Check a trigger event and return its result dict, or raise what went wrong.

    Shared by every ``execute_complete`` so they all validate events the same way.
    """
    if not isinstance(event, dict) or event.get("status") not in ("success", "error", "timeout"):
        raise LotImageError(f"Unexpected event from TaskProgressTrigger: {event!r}")
    task_id = event.get("lotimage_task_id")
    if event["status"] == "timeout":
        raise TaskTimeoutError(str(event.get("message") or "LotImage task timed out"), task_id=None)
    if event["status"] == "error":
        raise error_class(str(event.get("error_type")))(
            str(event.get("message") or "LotImage task failed"), task_id=None
        )
    result = event.get("result")
    if (
        not isinstance(result, dict)
        or result.get("lotimage_task_id") != task_id
        or not result.get("image_url")
    ):
        raise LotImageError(f"Malformed success event from TaskProgressTrigger: {event!r}")
    return cast("LotImageResult", result)
