"""TaskProgressTrigger: waits for a LotImage task in the triggerer, holding no worker slot."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_lotimage.exceptions import LotImageError, TaskTimeoutError, error_class
from airflow_provider_lotimage.hooks.lotimage import LotImageHook
from airflow_provider_lotimage.waiting import DEFAULT_STALL_TIMEOUT, ProgressWatch

#: Polls are spread by up to this fraction of the interval, so a thousand triggers deferred in the
#: same second do not poll in lockstep.
POLL_JITTER = 0.2


class TaskProgressTrigger(BaseTrigger):
    """Polls ``task/progress`` until the task is finished, failed, stalled or out of time.

    Yields exactly one event: ``{"status": "success", "lotimage_task_id", "result"}`` with the
    result dict, ``{"status": "error", "lotimage_task_id", "message", "error_type"}``, or
    ``{"status": "timeout", "lotimage_task_id", "message"}``. Times are absolute (epoch seconds)
    so that a triggerer restart neither resets the timeout nor mistakes the restart for a stall.
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
    ) -> None:
        super().__init__()
        self.lotimage_task_id = lotimage_task_id
        self.lotimage_conn_id = lotimage_conn_id
        self.poll_interval = float(poll_interval)
        self.end_time = end_time
        self.stall_timeout = stall_timeout
        self.started_at = time.time() if started_at is None else started_at

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
            },
        )

    def _watch(self) -> ProgressWatch:
        timeout = None if self.end_time is None else max(0.0, self.end_time - self.started_at)
        return ProgressWatch(
            task_id=self.lotimage_task_id,
            started_at=self.started_at,
            last_change_at=time.time(),
            timeout=timeout,
            stall_timeout=self.stall_timeout,
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll until the task is done, then yield the one event (see the class docstring)."""
        hook = LotImageHook(self.lotimage_conn_id)
        watch = self._watch()
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
