"""The one answer to "done, failed, stalled, timed out, or keep waiting?".

The sensor's ``poke``, the hook's blocking ``wait_for_task`` and the trigger's loop all feed
their observations to a :class:`ProgressWatch`; only how they wait between observations differs.
The watch is plain data (:meth:`to_dict` / :meth:`from_dict`), so it survives a sensor's
reschedule and a trigger's serialisation.

It also decides when a trigger may read progress for the first time after a deferral
(:func:`earliest_first_poll`, :attr:`ProgressWatch.first_poll_at`), the guard against Airflow's
deferral race described in :func:`default_first_poll_delay`.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass
from typing import Any

from airflow_provider_lotimage.api import TaskProgress
from airflow_provider_lotimage.exceptions import (
    LotImageError,
    LotImageInputError,
    TaskStalledError,
    TaskTimeoutError,
    TransientError,
)

#: Default seconds without any progress before a task counts as stalled. Generous, because a task
#: queued behind the key's running tasks legitimately shows 0 % for minutes.
DEFAULT_STALL_TIMEOUT = 900.0

#: Seconds added to Airflow's ``[workers] min_heartbeat_interval`` to make the default delay of a
#: trigger's first progress read (:func:`default_first_poll_delay`). It covers what happens after
#: the task's supervisor notices that the task process has exited: its wind-down, the executor's
#: report, and the scheduler loop that handles the report (about a second on an idle scheduler,
#: several on a busy two-core machine).
RESUME_MARGIN = 5.0

#: What ``[workers] min_heartbeat_interval`` is when nothing sets it (Airflow's own default).
_AIRFLOW_MIN_HEARTBEAT_INTERVAL = 5.0


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
    from airflow.providers.common.compat.sdk import conf

    interval = conf.getfloat("workers", "min_heartbeat_interval", fallback=_AIRFLOW_MIN_HEARTBEAT_INTERVAL)
    return max(0.0, interval) + RESUME_MARGIN


def validate_first_poll_delay(value: Any, *, name: str = "first_poll_delay") -> float | None:
    """Check a ``first_poll_delay`` parameter: ``None`` (the default delay) or seconds >= 0.

    Checked in the constructor, so a mistake fails the DAG's import instead of a deferral.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise LotImageInputError(
            f"{name} must be a number of seconds >= 0, or None for the default, got {value!r}"
        )
    return float(value)


def earliest_first_poll(first_poll_delay: float | None, *, now: float | None = None) -> float:
    """Return when (epoch seconds) a trigger deferred now may read progress for the first time.

    Absolute, so that a trigger recreated after a triggerer restart neither waits the whole delay
    again nor forgets it. ``None`` means :func:`default_first_poll_delay`; call this in the worker,
    at deferral time, for the reason given there.
    """
    delay = default_first_poll_delay() if first_poll_delay is None else max(0.0, float(first_poll_delay))
    return (time.time() if now is None else now) + delay


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
    #: Epoch seconds before which no progress is read (so no event yielded) after a deferral;
    #: ``None``: no such limit. See :func:`default_first_poll_delay`.
    first_poll_at: float | None = None
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

    @classmethod
    def resume(
        cls,
        task_id: str,
        *,
        started_at: float,
        end_time: float | None = None,
        stall_timeout: float | None = DEFAULT_STALL_TIMEOUT,
        first_poll_at: float | None = None,
        now: float | None = None,
    ) -> ProgressWatch:
        """Pick up a wait that began at ``started_at``, as a (re)started trigger does.

        The overall timeout keeps counting from ``started_at`` (``end_time`` is absolute), so a
        triggerer restart does not reset it. The stall clock starts at the first read instead:
        neither the time a restarted triggerer took to come back nor the wait for
        ``first_poll_at`` is a stall of the LotImage task.

        :param task_id: the LotImage taskId.
        :param started_at: epoch seconds when the wait began.
        :param end_time: epoch seconds when the wait times out (``None``: never).
        :param stall_timeout: seconds without progress after which the task counts as stalled.
        :param first_poll_at: epoch seconds before which progress is not read (``None``: at once).
        """
        now = time.time() if now is None else now
        timeout = None if end_time is None else max(0.0, end_time - started_at)
        return cls(
            task_id=task_id,
            started_at=started_at,
            last_change_at=max(now, first_poll_at or now),
            timeout=timeout,
            stall_timeout=stall_timeout,
            first_poll_at=first_poll_at,
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

    def first_poll_in(self, now: float | None = None) -> float:
        """Seconds to wait before the first read: until :attr:`first_poll_at`, or 0 without it.

        Not cut short by the overall timeout: an event before ``first_poll_at``, a timeout event
        included, is what the wait is there to prevent.
        """
        if self.first_poll_at is None:
            return 0.0
        now = time.time() if now is None else now
        return max(0.0, self.first_poll_at - now)

    def next_poll_in(self, poll_interval: float, *, jitter: float = 0.0, now: float | None = None) -> float:
        """Seconds to sleep before the next poll.

        Never past the overall timeout, so a timeout is reported on time; never before
        :attr:`first_poll_at`, for the reason given in :func:`default_first_poll_delay`.
        """
        now = time.time() if now is None else now
        delay = poll_interval * (1.0 + random.uniform(-jitter, jitter))
        left = self.seconds_left(now)
        if left is not None:
            delay = max(0.0, min(delay, left))
        return max(delay, self.first_poll_in(now))

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
