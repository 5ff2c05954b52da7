"""The one answer to "done, failed, stalled, timed out, or keep waiting?".

The sensor's ``poke``, the hook's blocking ``wait_for_task`` and the trigger's loop all feed
their observations to a :class:`ProgressWatch`; only how they wait between observations differs.
The watch is plain data (:meth:`to_dict` / :meth:`from_dict`), so it survives a sensor's
reschedule and a trigger's serialisation.

It also decides when a trigger may read progress for the first time after a deferral
(:func:`earliest_first_poll`, :attr:`ProgressWatch.first_poll_at`), the guard against Airflow's
deferral race described in :func:`default_first_poll_delay`.

And it decides when to read next (:meth:`ProgressWatch.next_poll_in`, :meth:`ProgressWatch.read_due`).
Every read spends one of the key's 3 calls a second, and on a trial key one of its 10 calls a day,
so the adaptive schedule reads when there is likely something new to see: at the end predicted
from the task's kind (before any progress is seen) or from its progress rate, rarely while it is
queued at 0 %, less and less often while it does not move. Its bounds: never sooner than
:data:`MIN_POLL_GAP` after the previous read, never later than ``poll_interval`` times
:data:`MAX_POLL_FACTOR`, and a read is always made in time to report a stall or a timeout.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass
from typing import Any

from airflow_provider_lotimage.client.contract import TaskProgress
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

#: The kind of a task made by ``imagine``.
KIND_IMAGINE = "imagine"
#: The kind of a task made by a grid-making button: ``V1``..``V4``, reroll, zoom and vary.
KIND_VARIATION = "variation"
#: The kind of a task made by ``U1``..``U4``: a single picture.
KIND_UPSCALE = "upscale"

#: Typical seconds from submission to the end of a task of each kind, the prior for the first read
#: when no progress has been seen. They are the emulator's durations (``imagine_seconds``,
#: ``variation_seconds``, ``upscale_seconds`` at ``time_scale`` 1), which sit inside the ranges of
#: the contract's task lifecycle for Midjourney fast mode: a grid (imagine, variations, reroll,
#: zoom, vary) 30-90 s, an upscale 5-20 s. A faster service, or an emulator with ``time_scale`` < 1,
#: only makes the first read come later than needed, within :data:`MAX_POLL_FACTOR`.
TYPICAL_SECONDS: dict[str, float] = {KIND_IMAGINE: 45.0, KIND_VARIATION: 45.0, KIND_UPSCALE: 10.0}

#: The adaptive schedule never waits longer than ``poll_interval`` times this between reads. The
#: caller's ``poll_interval`` says how stale an answer may be; three times it (30 s at the default
#: 10 s) reads a task queued at 0 % a third as often as the fixed schedule, and reports a finish
#: after a wrong prediction at most that late. It meets the target of the batch mix (one grid to
#: four upscales: 1.2 reads a task, against 3.6 with fixed polling): an upscale takes one read, a
#: grid two (one to learn the rate, one at the predicted end). A factor of 5 or more would save
#: the grid's first read at the default interval, but let a queued or mispredicted task finish
#: unnoticed for 50 s or more, longer than a whole grid.
MAX_POLL_FACTOR = 3.0

#: Seconds the adaptive schedule leaves at least between two reads of one task: the task's fair
#: share of the key. The contract allows 3 calls a second per key, and a key runs about 3 tasks at
#: once, so a task read more often than once a second takes the budget of the key's other tasks
#: and of its submissions (and draws 429s). A ``poll_interval`` below it is kept as given: the
#: adaptive schedule never reads more often than the fixed one it replaces.
MIN_POLL_GAP = 1.0

#: Fraction of the predicted duration added to a predicted end before reading. Progress comes in
#: steps (15, 31, 46 ... 93, 100: about a seventh of the run each), so the shown progress lags the
#: true one by up to a step whatever the percentage, and the predicted end is early by up to a
#: step's time; a read a tenth of the run after it mostly finds the task finished, not at 93 %.
#: (Simulated over the contract's duration ranges, 0.1 costs about 15 % fewer reads than no
#: margin for about 1 s more lag; a margin on the remaining time alone saves only half as many.)
FINISH_MARGIN = 0.1

_UPSCALE_BUTTONS = frozenset({"U1", "U2", "U3", "U4"})


def kind_of_button(button: str) -> str:
    """Return the kind of task pressing ``button`` makes, for its first read's prior.

    ``U1``..``U4`` upscale one picture; every other button of the contract (``V1``..``V4``,
    reroll, zoom, vary) makes a new grid, so an unknown label counts as a grid too.
    """
    return KIND_UPSCALE if button.strip() in _UPSCALE_BUTTONS else KIND_VARIATION


def typical_seconds(kind: str | None) -> float | None:
    """Return the prior duration of a task of ``kind`` (:data:`TYPICAL_SECONDS`), None if unknown."""
    return TYPICAL_SECONDS.get(kind) if kind is not None else None


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
    #: The task's kind (:data:`KIND_IMAGINE`, :func:`kind_of_button`): the prior for the first read.
    kind: str | None = None
    #: Whether :meth:`next_poll_in` adapts to the task (False: every ``poll_interval``).
    adaptive: bool = True
    #: Epoch seconds of the last read, answered or not (``None``: no read yet).
    last_read_at: float | None = None
    #: Epoch seconds of the last read that saw 0 %: the task had not moved yet then, so the
    #: progress rate is measured from there (``None``: from :attr:`started_at`).
    zero_seen_at: float | None = None

    @classmethod
    def start(
        cls,
        task_id: str,
        *,
        timeout: float | None = None,
        stall_timeout: float | None = DEFAULT_STALL_TIMEOUT,
        kind: str | None = None,
        adaptive: bool = True,
    ) -> ProgressWatch:
        """Begin watching a task now.

        :param task_id: the LotImage taskId.
        :param timeout: seconds the whole wait may take (``None``: no limit).
        :param stall_timeout: seconds without progress after which the task counts as stalled.
        :param kind: the task's kind, for the first read's prior (``None``: unknown).
        :param adaptive: whether reads follow the task (False: every ``poll_interval``).
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
        kind: str | None = None,
        adaptive: bool = True,
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
        :param kind: the task's kind, for the first read's prior (``None``: unknown).
        :param adaptive: whether reads follow the task (False: every ``poll_interval``).
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
            kind=kind,
            adaptive=adaptive,
        )

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
        self._check_limits(now)
        return False

    def observe_error(self, error: LotImageError, now: float | None = None) -> None:
        """Record a transient failure to read progress; it counts as no progress."""
        now = time.time() if now is None else now
        self.last_read_at = now
        self.last_error = str(error)
        self.moved = False
        self._check_limits(now)

    def _record_read(self, progress: int, now: float) -> None:
        """Remember when this read was made, and whether the task still showed 0 % then."""
        self.last_read_at = now
        if progress <= 0:
            self.zero_seen_at = now

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

        Adaptive (the default), the read comes when there is likely something new to see (see
        :meth:`_wanted_at`), within :data:`MIN_POLL_GAP` and ``poll_interval`` times
        :data:`MAX_POLL_FACTOR`, and no later than the stall deadline; otherwise every
        ``poll_interval``. ``jitter`` spreads the sleep by up to that fraction, so triggers started
        together do not read together: adaptive, only later (a read before a predicted end is
        wasted), or earlier at the upper bound, never past the bounds. Never past the overall
        timeout, so a timeout is reported on time; never before :attr:`first_poll_at`, for the
        reason given in :func:`default_first_poll_delay`.
        """
        now = time.time() if now is None else now
        spread = random.uniform(-jitter, jitter)
        if self.adaptive:
            delay = self._adaptive_delay(poll_interval, now, abs(spread))
        else:
            delay = poll_interval * (1.0 + spread)
        left = self.seconds_left(now)
        if left is not None:
            delay = max(0.0, min(delay, left))
        return max(delay, self.first_poll_in(now))

    def read_due(self, poll_interval: float, now: float | None = None) -> bool:
        """Whether a caller that wakes on its own cadence (a sensor's poke) should read now.

        The first read is always due (after :attr:`first_poll_at`); later ones when the schedule
        :meth:`next_poll_in` made right after the last read says so (without jitter: a poke
        cadence spreads reads already). A stall or timeout deadline makes a read due too, so
        they are still reported, at the first poke after the deadline.
        """
        now = time.time() if now is None else now
        if self.first_poll_in(now) > 0:
            return False
        if self.last_read_at is None:
            return True
        if not self.adaptive:
            return now >= self.last_read_at + poll_interval
        due = self.last_read_at + self._adaptive_delay(poll_interval, self.last_read_at)
        left = self.seconds_left(self.last_read_at)
        return now >= (due if left is None else min(due, self.last_read_at + left))

    def _adaptive_delay(self, poll_interval: float, now: float, spread: float = 0.0) -> float:
        """Seconds from ``now`` to the wanted read, spread by the fraction ``spread``, within the bounds."""
        low, high = self._gap_bounds(poll_interval, now)
        delay = min(max(self._wanted_at(poll_interval, now) - now, low), high)
        delay *= 1.0 - spread if delay >= high else 1.0 + spread
        delay = min(max(delay, low), high)
        if self.stall_timeout is not None:
            delay = min(delay, max(0.0, self.last_change_at + self.stall_timeout - now))
        return delay

    def _gap_bounds(self, poll_interval: float, now: float) -> tuple[float, float]:
        """Return the shortest and the longest sleep from ``now``.

        The shortest keeps the fair-share gap (:data:`MIN_POLL_GAP`, or ``poll_interval`` when
        shorter, as the fixed schedule would read) after the last read; the longest is
        ``poll_interval`` times :data:`MAX_POLL_FACTOR`.
        """
        high = max(0.0, poll_interval * MAX_POLL_FACTOR)
        if self.last_read_at is None:
            return 0.0, high
        low = max(0.0, self.last_read_at + min(MIN_POLL_GAP, poll_interval) - now)
        return min(low, high), high

    def _wanted_at(self, poll_interval: float, now: float) -> float:
        """When (epoch seconds) a read is likely to find something new, before the bounds.

        Before any progress: the end expected from the kind's prior; without a kind, nothing is
        known, so the fixed schedule's next read. ``math.inf`` means "as late as the bounds
        allow": a task that still showed 0 % past half its typical duration (a running task shows
        its first step after about a seventh; ``poll_interval`` stands in for an unknown kind's)
        is queued behind the key's other tasks.
        """
        if self.last_progress > 0:
            return self._moving_wanted_at(now)
        prior = typical_seconds(self.kind)
        if (
            self.last_read_at is not None
            and self.last_read_at >= self.started_at + (prior or poll_interval) / 2
        ):
            return math.inf
        return now + poll_interval if prior is None else self.started_at + prior * (1.0 + FINISH_MARGIN)

    def _moving_wanted_at(self, now: float) -> float:
        """Return the predicted end of a task that has moved, or later while it stands still.

        The rate is the progress over the time since the task was last seen at 0 % (or since
        submission): a long base evens out the steps progress comes in. A task that did not move
        at the last read backs off: it waits at least as long as it has stood still, so a stalled
        task is read less and less often (its stall deadline still gets a read).
        """
        since = self.started_at if self.zero_seen_at is None else self.zero_seen_at
        elapsed = self.last_change_at - since
        if elapsed <= 0:
            return math.inf
        total = elapsed * 100.0 / self.last_progress
        predicted_end = since + total * (1.0 + FINISH_MARGIN)
        return max(predicted_end, now + (now - self.last_change_at))

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
