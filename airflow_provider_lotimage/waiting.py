"""The one answer to "done, failed, stalled, timed out, or keep waiting?".

The sensor's ``poke``, the hook's blocking ``wait_for_task`` and the trigger's loop all feed
their observations to a :class:`ProgressWatch`; only how they wait between observations differs.
The watch is plain data (:meth:`to_dict` / :meth:`from_dict`), so it survives a sensor's
reschedule and a trigger's serialisation.
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass
from typing import Any

from airflow_provider_lotimage.api import TaskProgress
from airflow_provider_lotimage.exceptions import (
    LotImageError,
    TaskStalledError,
    TaskTimeoutError,
    TransientError,
)

#: Default seconds without any progress before a task counts as stalled. Generous, because a task
#: queued behind the key's running tasks legitimately shows 0 % for minutes.
DEFAULT_STALL_TIMEOUT = 900.0


@dataclass
class ProgressWatch:
    """Tracks one LotImage task across polls."""

    task_id: str
    started_at: float
    last_change_at: float
    timeout: float | None = None
    stall_timeout: float | None = DEFAULT_STALL_TIMEOUT
    last_progress: int = -1
    last_error: str | None = None
    #: Whether the last observation changed the progress (for "log as it moves").
    moved: bool = False

    @classmethod
    def start(
        cls,
        task_id: str,
        *,
        timeout: float | None = None,
        stall_timeout: float | None = DEFAULT_STALL_TIMEOUT,
    ) -> ProgressWatch:
        """Begin watching a task now.

        :param task_id: the LotImage taskId.
        :param timeout: seconds the whole wait may take (``None``: no limit).
        :param stall_timeout: seconds without progress after which the task counts as stalled.
        """
        now = time.time()
        return cls(
            task_id=task_id, started_at=now, last_change_at=now, timeout=timeout, stall_timeout=stall_timeout
        )

    def observe(self, progress: TaskProgress, now: float | None = None) -> bool:
        """Record one answer. True when the task is finished; raises when waiting must stop.

        Returns whether the progress moved through :attr:`moved`; failed tasks never get here,
        because the parser raises :class:`~airflow_provider_lotimage.exceptions.TaskFailedError`.
        """
        now = time.time() if now is None else now
        self.moved = progress.progress != self.last_progress
        if self.moved:
            self.last_progress = progress.progress
            self.last_change_at = now
        self.last_error = None
        if progress.is_finished:
            return True
        self._check_limits(now)
        return False

    def observe_error(self, error: LotImageError, now: float | None = None) -> None:
        """Record a transient failure to read progress; it counts as no progress."""
        self.last_error = str(error)
        self.moved = False
        self._check_limits(time.time() if now is None else now)

    def step(self, outcome: TaskProgress | TransientError, now: float | None = None) -> TaskProgress | None:
        """One poll's outcome in, the finished task out (or None to keep waiting)."""
        if isinstance(outcome, TransientError):
            self.observe_error(outcome, now)
            return None
        return outcome if self.observe(outcome, now) else None

    def next_poll_in(self, poll_interval: float, *, jitter: float = 0.0) -> float:
        """Seconds to sleep before the next poll: never past the overall timeout."""
        delay = poll_interval * (1.0 + random.uniform(-jitter, jitter))
        left = self.seconds_left()
        return delay if left is None else max(0.0, min(delay, left))

    def seconds_left(self, now: float | None = None) -> float | None:
        """Seconds until the overall timeout, or None without one."""
        if self.timeout is None:
            return None
        now = time.time() if now is None else now
        return max(0.0, self.started_at + self.timeout - now)

    def _check_limits(self, now: float) -> None:
        suffix = f"; last error: {self.last_error}" if self.last_error else ""
        if self.timeout is not None and now - self.started_at >= self.timeout:
            raise TaskTimeoutError(
                f"LotImage task did not finish within {self.timeout:g} s "
                f"(last progress {max(self.last_progress, 0)}%){suffix}",
                task_id=self.task_id,
            )
        if self.stall_timeout is not None and now - self.last_change_at >= self.stall_timeout:
            raise TaskStalledError(
                f"LotImage task stalled at {max(self.last_progress, 0)}%: no progress for "
                f"{now - self.last_change_at:.0f} s (stall timeout {self.stall_timeout:g} s){suffix}",
                task_id=self.task_id,
            )

    def to_dict(self) -> dict[str, Any]:
        """Return the watch as plain data for task state or a trigger, without the transient ``moved``."""
        data = asdict(self)
        data.pop("moved", None)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProgressWatch:
        """Rebuild a watch from :meth:`to_dict`'s output, ignoring keys that are not fields."""
        fields = {k: data[k] for k in cls.__dataclass_fields__ if k in data and k != "moved"}
        return cls(**fields)
