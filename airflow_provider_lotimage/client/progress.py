"""The one answer to "done, failed, stalled, timed out, or keep waiting?".

The sensor's ``poke``, the hook's blocking ``wait_for_task`` and the trigger's loop all feed
their observations to a :class:`ProgressWatch`; only how they wait between observations differs.
The watch holds the limits (the overall timeout, the stall timeout, the first-poll hold after a
deferral) and what was seen; when to read next is :mod:`.schedule`'s arithmetic on what was seen.
The watch is plain data (:meth:`ProgressWatch.to_dict` / :meth:`ProgressWatch.from_dict`), so it
survives a sensor's reschedule and a trigger's serialisation.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

from airflow_provider_lotimage.client import metric_names as names
from airflow_provider_lotimage.client import queue_place
from airflow_provider_lotimage.client.contract import TaskProgress
from airflow_provider_lotimage.client.durations import DurationBook, observed
from airflow_provider_lotimage.client.metrics import NO_METRICS, Metrics, report_failure
from airflow_provider_lotimage.client.schedule import adaptive_delay
from airflow_provider_lotimage.exceptions import (
    LotImageError,
    TaskStalledError,
    TaskTimeoutError,
    TransientError,
)


class _Before(NamedTuple):
    """What a watch had seen before the finishing read: where the task's end lies after."""

    last_progress: int
    last_change_at: float
    zero_seen_at: float | None
    last_read_at: float | None


#: Default seconds without any progress before a task counts as stalled. Generous, because a task
#: queued behind the key's running tasks legitimately shows 0 % for minutes.
DEFAULT_STALL_TIMEOUT = 900.0
#: Fields of a watch that belong to this process's wait, never to its plain data.
_TRANSIENT = ("moved", "replan")


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
    #: ``None``: no such limit (why: ``utils.deferral.default_first_poll_delay``).
    first_poll_at: float | None = None
    #: Whether the last observation changed the progress (for "log as it moves").
    moved: bool = False
    #: The task's kind (:mod:`.schedule`: ``KIND_IMAGINE``, ``kind_of_button``): the first read's prior.
    kind: str | None = None
    #: Whether :meth:`next_poll_in` adapts to the task (False: every ``poll_interval``).
    adaptive: bool = True
    #: Epoch seconds of the last read, answered or not (``None``: no read yet).
    last_read_at: float | None = None
    #: Epoch seconds of the last read that saw 0 %: the task had not moved yet then, so the
    #: progress rate is measured from there (``None``: from :attr:`started_at`).
    zero_seen_at: float | None = None
    #: Whether a webhook delivery tells the wait when to read (:mod:`.schedule`: polling backs off).
    hinted: bool = False
    #: Seconds the task is expected to take, learned as the wait began (``None``: the kind's prior).
    expected_seconds: float | None = None
    #: Whether the first read aims early on purpose, at :data:`.schedule.PROBE_FACTOR` of
    #: :attr:`expected_seconds` (a probe of the :class:`~.durations.DurationBook`).
    probing: bool = False
    #: Whether the wait began at the task's submission (the submitting operators): only then is
    #: its end a duration of the task's kind, recorded in a :class:`~.durations.DurationBook`.
    from_submission: bool = False
    #: Epoch seconds the task is likely to start, behind the key's tasks in flight in this process
    #: (:mod:`.key_queue`; ``None``: at its submission, or not known).
    starts_at: float | None = None
    #: Called (from any thread) when the key's queue moves :attr:`starts_at` earlier or later, so
    #: a sleeping wait can plan its read again (:func:`.queue_place.place`); ``None``: nobody listens.
    replan: Callable[[], None] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def start(
        cls,
        task_id: str,
        *,
        timeout: float | None = None,
        stall_timeout: float | None = DEFAULT_STALL_TIMEOUT,
        kind: str | None = None,
        adaptive: bool = True,
        from_submission: bool = False,
    ) -> ProgressWatch:
        """Begin watching a task now.

        :param task_id: the LotImage taskId.
        :param timeout: seconds the whole wait may take (``None``: no limit).
        :param stall_timeout: seconds without progress after which the task counts as stalled.
        :param kind: the task's kind, for the first read's prior (``None``: unknown).
        :param adaptive: whether reads follow the task (False: every ``poll_interval``).
        :param from_submission: the task was submitted just now (its end is a duration to learn).
        """
        now = time.time()
        return cls(
            task_id=task_id,
            started_at=now,
            last_change_at=now,
            timeout=timeout,
            stall_timeout=stall_timeout,
            kind=kind,
            adaptive=adaptive,
            from_submission=from_submission,
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
        **fields: Any,
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
        :param fields: the watch's other fields, as given at the start (``kind``, ``adaptive``,
            ``hinted``, ``from_submission``).
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
            **fields,
        )

    def expect(self, book: DurationBook, now: float | None = None) -> None:
        """Take the expected duration from ``book`` as the wait begins (probing only if it learns).

        A wait that began at the submission also joins the key's queue (:mod:`.queue_place`), so
        its first read counts from its likely start; the waiter leaves it when the wait ends.
        """
        if self.adaptive and self.expected_seconds is None and self.last_read_at is None:
            self.expected_seconds, self.probing = book.expectation(self.kind, probe=self.from_submission)
        queue_place.join(self, book, time.time() if now is None else now)

    def observe(self, progress: TaskProgress, now: float | None = None) -> bool:
        """Record one answer. True when the task is finished; raises when waiting must stop.

        Returns whether the progress moved through :attr:`moved`; failed tasks never get here,
        because the parser raises :class:`~airflow_provider_lotimage.exceptions.TaskFailedError`.
        """
        now = time.time() if now is None else now
        self._record_read(progress.progress, now)
        self.moved = progress.progress != self.last_progress
        if self.moved:
            self.last_progress = progress.progress
            self.last_change_at = now
        self.last_error = None
        if progress.is_finished:
            return True
        _check_limits(self, now)
        return False

    def observe_error(self, error: LotImageError, now: float | None = None) -> None:
        """Record a transient failure to read progress; it counts as no progress."""
        now = time.time() if now is None else now
        self.last_read_at = now
        self.last_error = str(error)
        self.moved = False
        _check_limits(self, now)

    def _record_read(self, progress: int, now: float) -> None:
        """Remember when this read was made, and whether the task still showed 0 % then."""
        self.last_read_at = now
        if progress <= 0:
            self.zero_seen_at = now

    def step(
        self,
        outcome: TaskProgress | TransientError,
        now: float | None = None,
        *,
        metrics: Metrics = NO_METRICS,
        durations: DurationBook | None = None,
    ) -> TaskProgress | None:
        """One poll's outcome in, the finished task out (or None to keep waiting).

        The one place a wait's end is seen, whoever waits (poke, blocking wait, trigger): a
        finished task's seconds since :attr:`started_at` go to ``metrics`` by kind, a stall or a
        timeout by reason (the service's own verdicts are counted by the read: :mod:`.retry`).
        A wait :attr:`from_submission` also gives its task's duration to ``durations``
        (:func:`.durations.observed`, from what was seen before the finishing read; nothing when
        the task was predicted to queue: its wait measured the queue too), and keeps its place in
        the key's queue up to date.
        """
        now = time.time() if now is None else now
        before = _Before(self.last_progress, self.last_change_at, self.zero_seen_at, self.last_read_at)
        try:
            if isinstance(outcome, TransientError):
                self.observe_error(outcome, now)
            elif self.observe(outcome, now):
                _finished(self, now, before, metrics, durations)
                return outcome
        except (TaskStalledError, TaskTimeoutError) as error:
            report_failure(metrics, error)
            raise
        if durations is not None:
            queue_place.place(self, durations, now)
        return None

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

        Adaptive (the default), the read comes when there is likely something new to see (see
        :func:`.schedule.adaptive_delay`), within :data:`.schedule.MIN_POLL_GAP` and ``poll_interval``
        times :data:`.schedule.MAX_POLL_FACTOR`, and no later than the stall deadline; otherwise every
        ``poll_interval``. ``jitter`` spreads the sleep by up to that fraction, so triggers started
        together do not read together: adaptive, only later (a read before a predicted end is
        wasted), or earlier at the upper bound, never past the bounds. Never past the overall
        timeout, so a timeout is reported on time; never before :attr:`first_poll_at`, for the
        reason given in ``utils.deferral.default_first_poll_delay``.
        """
        now = time.time() if now is None else now
        spread = random.uniform(-jitter, jitter)
        if self.adaptive:
            delay = adaptive_delay(self, poll_interval, now, abs(spread))
        else:
            delay = poll_interval * (1.0 + spread)
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

    def to_dict(self) -> dict[str, Any]:
        """Return the watch as plain data for task state or a trigger (no :data:`_TRANSIENT` field)."""
        data = asdict(self)
        for transient in _TRANSIENT:
            data.pop(transient, None)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProgressWatch:
        """Rebuild a watch from :meth:`to_dict`'s output, ignoring keys that are not fields."""
        fields = {k: data[k] for k in cls.__dataclass_fields__ if k in data and k not in _TRANSIENT}
        return cls(**fields)


def read_due(watch: ProgressWatch, poll_interval: float, now: float | None = None) -> bool:
    """Whether a caller that wakes on its own cadence (a sensor's poke) should read now.

    The first read is always due (after :attr:`~ProgressWatch.first_poll_at`); later ones when the
    schedule :meth:`~ProgressWatch.next_poll_in` made right after the last read says so (without
    jitter: a poke cadence spreads reads already). A stall or timeout deadline makes a read due
    too, so they are still reported, at the first poke after the deadline.
    """
    now = time.time() if now is None else now
    if watch.first_poll_in(now) > 0:
        return False
    if watch.last_read_at is None:
        return True
    if not watch.adaptive:
        return now >= watch.last_read_at + poll_interval
    due = watch.last_read_at + adaptive_delay(watch, poll_interval, watch.last_read_at)
    left = watch.seconds_left(watch.last_read_at)
    return now >= (due if left is None else min(due, watch.last_read_at + left))


def _finished(
    watch: ProgressWatch, now: float, before: _Before, metrics: Metrics, durations: DurationBook | None
) -> None:
    """Count a finished task's wait, and learn its duration where the wait tells one."""
    kind = {names.TAG_KIND: watch.kind or names.KIND_UNKNOWN}
    metrics.timing(names.TASK_DURATION, max(0.0, now - watch.started_at), tags=kind)
    if durations is not None and watch.from_submission:
        queue_place.finish(watch, durations, now, before.last_read_at)
        if not queue_place.queued(watch):
            seen = observed(
                watch.started_at, now, before.last_progress, before.last_change_at, before.zero_seen_at
            )
            durations.record(watch.kind, seen)


def _check_limits(watch: ProgressWatch, now: float) -> None:
    """Raise when the watch's overall or stall timeout has passed at ``now``."""
    suffix = f"; last error: {watch.last_error}" if watch.last_error else ""
    if watch.timeout is not None and now - watch.started_at >= watch.timeout:
        raise TaskTimeoutError(
            f"LotImage task did not finish within {watch.timeout:g} s "
            f"(last progress {max(watch.last_progress, 0)}%){suffix}",
            task_id=watch.task_id,
        )
    if watch.stall_timeout is not None and now - watch.last_change_at >= watch.stall_timeout:
        raise TaskStalledError(
            f"LotImage task stalled at {max(watch.last_progress, 0)}%: no progress for "
            f"{now - watch.last_change_at:.0f} s (stall timeout {watch.stall_timeout:g} s){suffix}",
            task_id=watch.task_id,
        )
