"""TaskProgressTrigger: waits for a LotImage task in the triggerer, holding no worker slot."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_lotimage.exceptions import LotImageError, TaskTimeoutError, error_class
from airflow_provider_lotimage.hooks.lotimage import LotImageHook
from airflow_provider_lotimage.waiting import DEFAULT_STALL_TIMEOUT, ProgressWatch, earliest_first_poll

#: Polls are spread by up to this fraction of the interval, so a thousand triggers deferred in the
#: same second do not poll in lockstep.
POLL_JITTER = 0.2


class TaskProgressTrigger(BaseTrigger):
    """Polls ``task/progress`` until the task is finished, failed, stalled or out of time.

    Yields exactly one event: ``{"status": "success", "lotimage_task_id", "result"}`` with the
    result dict, ``{"status": "error", "lotimage_task_id", "message", "error_type"}``, or
    ``{"status": "timeout", "lotimage_task_id", "message"}``. Times are absolute (epoch seconds)
    so that a triggerer restart neither resets the timeout nor mistakes the restart for a stall.

    The first progress read, and so any event, comes no sooner than ``first_poll_at``: a trigger
    that fires within seconds of its deferral can make Airflow fail the resumed task ("state
    mismatch"; why, and the default of ``[workers] min_heartbeat_interval`` + 5 s, in
    :func:`~airflow_provider_lotimage.waiting.default_first_poll_delay`). Operators compute it in
    the worker when they defer. It is absolute, so a trigger recreated after a triggerer restart
    waits only for what is left of it. The wait applies when a triggerer runs the trigger (which
    gives it a ``trigger_id``); ``dag.test()`` runs it inline, in the task's own process right
    after the deferral, where no scheduler can race it, and reads at once.

    :param lotimage_task_id: the taskId to follow.
    :param lotimage_conn_id: the LotImage connection.
    :param poll_interval: seconds between progress reads (spread by :data:`POLL_JITTER`).
    :param end_time: epoch seconds when the wait times out (``None``: never).
    :param stall_timeout: seconds without progress after which the task counts as stalled.
    :param started_at: epoch seconds when the wait began (default: now).
    :param first_poll_at: epoch seconds before which progress is not read (default: now plus
        :func:`~airflow_provider_lotimage.waiting.default_first_poll_delay`, read where the
        trigger is built; pass a time in the past to read at once).
    """

    def __init__(
        self,
        lotimage_task_id: str,
        lotimage_conn_id: str = LotImageHook.default_conn_name,
        *,
        poll_interval: float = 10.0,
        end_time: float | None = None,
        stall_timeout: float | None = DEFAULT_STALL_TIMEOUT,
        started_at: float | None = None,
        first_poll_at: float | None = None,
    ) -> None:
        super().__init__()
        self.lotimage_task_id = lotimage_task_id
        self.lotimage_conn_id = lotimage_conn_id
        self.poll_interval = float(poll_interval)
        self.end_time = end_time
        self.stall_timeout = stall_timeout
        self.started_at = time.time() if started_at is None else started_at
        self.first_poll_at = earliest_first_poll(None) if first_poll_at is None else float(first_poll_at)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Return the classpath and keyword arguments that recreate this trigger in the triggerer."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "lotimage_task_id": self.lotimage_task_id,
                "lotimage_conn_id": self.lotimage_conn_id,
                "poll_interval": self.poll_interval,
                "end_time": self.end_time,
                "stall_timeout": self.stall_timeout,
                "started_at": self.started_at,
                "first_poll_at": self.first_poll_at,
            },
        )

    @property
    def run_by_triggerer(self) -> bool:
        """Whether a triggerer runs this trigger: it sets ``trigger_id``, the trigger's row id.

        Only then does a scheduler resume the task, the race that ``first_poll_at`` guards against.
        """
        return getattr(self, "trigger_id", None) is not None

    def _watch(self) -> ProgressWatch:
        return ProgressWatch.resume(
            self.lotimage_task_id,
            started_at=self.started_at,
            end_time=self.end_time,
            stall_timeout=self.stall_timeout,
            first_poll_at=self.first_poll_at if self.run_by_triggerer else None,
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll until the task is done, then yield the one event (see the class docstring).

        The wait for ``first_poll_at`` comes before anything that could fail: an exception from
        ``run`` also resumes the task, and would race the scheduler just as an early event would.
        """
        watch = self._watch()
        hold = watch.first_poll_in()
        if hold > 0:
            self.log.info(
                "Reading LotImage task %s in %.1f s: a trigger that fires sooner after its deferral can "
                "make Airflow fail the resumed task",
                self.lotimage_task_id,
                hold,
            )
            await asyncio.sleep(hold)
        hook = LotImageHook(self.lotimage_conn_id)
        base = {"lotimage_task_id": self.lotimage_task_id}
        try:
            while (done := watch.step(await hook.apoll_once(self.lotimage_task_id))) is None:
                if watch.moved:
                    self.log.info("LotImage task %s: %d%%", self.lotimage_task_id, watch.last_progress)
                await asyncio.sleep(watch.next_poll_in(self.poll_interval, jitter=POLL_JITTER))
        except TaskTimeoutError as err:
            yield TriggerEvent({**base, "status": "timeout", "message": str(err)})
            return
        except LotImageError as err:
            yield TriggerEvent(
                {**base, "status": "error", "message": str(err), "error_type": type(err).__name__}
            )
            return
        yield TriggerEvent({**base, "status": "success", "result": done.to_result()})


def result_from_event(event: Any) -> dict[str, Any]:
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
    return result
