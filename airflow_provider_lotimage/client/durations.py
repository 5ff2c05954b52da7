"""How long a task of each kind takes for one key: the durations the adaptive schedule learns.

The schedule's first read of a task comes at its expected end (:mod:`.schedule`). Fixed priors
(:data:`~.schedule.TYPICAL_SECONDS`) make every first read late on a faster service, or on the
emulator at a ``time_scale`` below 1. A :class:`DurationBook` holds, per kind, the last
:data:`WINDOW` durations observed for one key (a few kilobytes a key: bounded memory) and
gives a wait its expected duration as the wait begins; the wait's end feeds the book back
(:meth:`.progress.ProgressWatch.step`).

**What a wait tells.** Only a wait that began at the submission says anything (the submitting
operators set ``from_submission``; a sensor may start any time after it). Its end is seen late,
by up to the gap between two reads, so a wait yields an :class:`Observation` of one of two sorts:

* *measured*: a read saw the task moving before the read that found it finished. The end lies
  between the two reads, and the progress shown narrows it: progress comes in steps of about a
  seventh of the run (:data:`PROGRESS_STEP`), so a task showing ``p`` % after ``t`` seconds
  runs between ``t / (p + step)`` and ``t / p``. The midpoint of what both say is recorded.
* *a bound*: the first read found the task finished; it took at most that long, maybe much less.

A task ever seen at 0 % records nothing: it may have queued behind the key's other tasks, and
its wait measures the queue, not the kind (the schedule has its own rule for queued tasks).

**The estimate** (:func:`estimate`) replays the window from the kind's prior: a measured duration
moves the estimate half way to it in log space (an EWMA: a duration is a scale, and one odd task
moves the estimate by at most the square root of its ratio), a bound lowers it to the bound. A
high quantile of the last durations would not do: a first read that finds the task finished is
the schedule's aim, and it tells only an upper bound; recorded as a duration it would push each
next read later still. So the estimate learns downwards only from reads made before it, and the
book makes some on purpose: every :data:`PROBE_EVERY`-th wait of a kind (every second one while
the window has no measured duration, so a service faster than the prior is found within a few
tasks) aims its first read at :data:`~.schedule.PROBE_FACTOR` of the estimate (only that read: a
task seen moving is placed by the whole estimate). A probe that finds the task finished lowers
the estimate to its read; one that finds it moving measures the duration. Probes cost about one
read in :data:`PROBE_EVERY` tasks; in exchange the first read of the others comes within the
schedule's margin of their end, at any speed of the service: an upscale takes about one read.

**Sharing.** One book per key in a process (:func:`book_for`), for every hook and trigger of that
key. Where the rate budget is shared through Redis, the observations are too (a
:class:`SharedDurations` beside the Redis budget); the book reads them at most every
:data:`SHARED_FRESH_SECONDS` and falls back to its own when they cannot be read. A book also holds
the key's :class:`~.key_queue.KeyQueue` of this process. Books are named
by the key's digest (:func:`~airflow_provider_lotimage.ratelimit.base.key_identity`), never the key.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from airflow_provider_lotimage.client.key_queue import KeyQueue
from airflow_provider_lotimage.client.schedule import PROBE_FACTOR, typical_seconds

#: Observations a book keeps per kind (and Redis per key and kind): enough for a robust estimate
#: that still follows a service whose speed changes within a few dozen tasks.
WINDOW = 32
#: The sane range of an expected duration: a learned value is kept within it, so one odd
#: observation (a clock jump, a task stuck for hours) cannot make the schedule absurd.
MIN_SECONDS = 1.0
MAX_SECONDS = 1800.0
#: How far a measured duration moves the estimate, in log space.
WEIGHT = 0.5
#: One wait in this many is a probe, once the window holds a measured duration.
PROBE_EVERY = 12
#: The shown progress lags the true one by up to this fraction of the run (its steps).
PROGRESS_STEP = 1.0 / 7.0
#: Seconds a book uses the shared observations it read before reading them again.
SHARED_FRESH_SECONDS = 5.0
#: Keys whose books a process keeps (the least recently used go first).
MAX_BOOKS = 256


def clamp(seconds: float) -> float:
    """Keep a duration within :data:`MIN_SECONDS` and :data:`MAX_SECONDS`, to the millisecond."""
    return round(min(max(seconds, MIN_SECONDS), MAX_SECONDS), 3)


@dataclass(frozen=True)
class Observation:
    """One wait's lesson: seconds from submission to the end, ``measured`` or only a bound."""

    seconds: float
    measured: bool

    def to_text(self) -> str:
        """Return the observation as stored in Redis: two numbers, nothing else."""
        return f"{self.seconds:.3f} {int(self.measured)}"

    @classmethod
    def from_text(cls, text: str | bytes) -> Observation | None:
        """Parse :meth:`to_text`'s output; None for anything else."""
        raw = text.decode() if isinstance(text, bytes) else text
        try:
            seconds, measured = raw.split()
            value = float(seconds)
        except ValueError:
            return None
        if not math.isfinite(value) or value <= 0 or measured not in ("0", "1"):
            return None
        return cls(value, measured == "1")


def observed(
    started_at: float,
    finished_at: float,
    last_progress: int,
    last_change_at: float,
    zero_seen_at: float | None,
) -> Observation | None:
    """Return what a wait that began at the submission says of its task's duration (module doc).

    :param last_progress: the progress shown before the finishing read (-1: none answered).
    :param last_change_at: when that progress was first shown.
    :param zero_seen_at: when a read last saw 0 % (``None``: never): then nothing is recorded.
    """
    upper = finished_at - started_at
    if zero_seen_at is not None or upper <= 0:
        return None
    if last_progress <= 0:
        return Observation(upper, measured=False)
    elapsed = last_change_at - started_at
    shown = min(last_progress, 100) / 100.0
    high = min(upper, elapsed / shown)
    low = min(max(elapsed, elapsed / min(1.0, shown + PROGRESS_STEP)), high)
    return Observation((low + high) / 2.0, measured=True)


def estimate(prior: float, observations: Iterable[Observation]) -> float:
    """Replay ``observations`` (oldest first) from ``prior``: the expected duration (module doc)."""
    level = math.log(clamp(prior))
    for seen in observations:
        value = math.log(clamp(seen.seconds))
        level = level + WEIGHT * (value - level) if seen.measured else min(level, value)
    return clamp(math.exp(level))


class SharedDurations(Protocol):
    """Observations shared by every process of a key (Redis: ``ratelimit.redis_durations``)."""

    def push(self, kind: str, observation: Observation) -> None:
        """Add an observation; best effort, never blocking the caller on the store."""

    def recent(self, kind: str) -> Sequence[Observation] | None:
        """Return the last :data:`WINDOW` observations, oldest first; None when unavailable."""


class DurationBook:
    """The durations observed for one key, per kind; thread-safe (module doc).

    :param shared: where the key's processes share their observations (``None``: this process).
    :param clock: monotonic seconds, for the freshness of the shared observations.
    """

    def __init__(
        self, shared: SharedDurations | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.shared = shared
        self._clock = clock
        self._lock = threading.Lock()
        self._own: dict[str, deque[Observation]] = {}
        self._read: dict[str, tuple[float, tuple[Observation, ...]]] = {}
        self._since_probe: dict[str, int] = {}
        #: The key's tasks in flight in this process: when a task is likely to start.
        self.queue = KeyQueue()

    def expected(self, kind: str | None, *, probe: bool = True) -> float | None:
        """Return the seconds a wait of ``kind`` aims its first read at; None for an unknown kind.

        :param probe: the wait may be a probe (only a wait that records its end should be one): its
            first read then aims at :data:`PROBE_FACTOR` of the estimate.
        """
        value, probing = self.expectation(kind, probe=probe)
        return clamp(value * PROBE_FACTOR) if probing and value is not None else value

    def expectation(self, kind: str | None, *, probe: bool = True) -> tuple[float | None, bool]:
        """Return the estimate of ``kind`` (None: unknown kind), and whether this wait probes.

        Apart, because only the first read of a probe aims early: once its task is seen moving, the
        estimate places the task's end (:func:`~.schedule.moving_run`), not the probe's fraction.
        """
        prior = typical_seconds(kind)
        if kind is None or prior is None:
            return None, False
        observations = self.observations(kind)
        return estimate(prior, observations), probe and self._probe_due(kind, observations)

    def record(self, kind: str | None, observation: Observation | None) -> None:
        """Add a wait's observation of a task of ``kind`` (nothing for an unknown kind)."""
        if observation is None or typical_seconds(kind) is None:
            return
        assert kind is not None
        with self._lock:
            self._own.setdefault(kind, deque(maxlen=WINDOW)).append(observation)
            if (read := self._read.get(kind)) is not None:
                self._read[kind] = (read[0], (*read[1], observation)[-WINDOW:])
        if self.shared is not None:
            self.shared.push(kind, observation)

    def observations(self, kind: str) -> list[Observation]:
        """Return the observations the estimate uses, oldest first: the shared ones when readable."""
        shared = self._shared(kind)
        if shared is not None:
            return list(shared)
        with self._lock:
            return list(self._own.get(kind, ()))

    def _shared(self, kind: str) -> tuple[Observation, ...] | None:
        if self.shared is None:
            return None
        now = self._clock()
        with self._lock:
            read = self._read.get(kind)
        if read is not None and now - read[0] < SHARED_FRESH_SECONDS:
            return read[1]
        got = self.shared.recent(kind)
        if got is None:
            return None
        observations = tuple(got)[-WINDOW:]
        with self._lock:
            self._read[kind] = (now, observations)
        return observations

    def _probe_due(self, kind: str, observations: Sequence[Observation]) -> bool:
        """Whether this wait probes: every :data:`PROBE_EVERY`-th, every second one without a measure."""
        every = PROBE_EVERY if any(seen.measured for seen in observations[-PROBE_EVERY:]) else 2
        with self._lock:
            waits = self._since_probe.get(kind, every - 1) + 1
            due = waits >= every
            self._since_probe[kind] = 0 if due else waits
        return due


_books: OrderedDict[tuple[str, str], DurationBook] = OrderedDict()
_books_lock = threading.Lock()


def book_for(
    identity: str, where: str = "process", shared: Callable[[], SharedDurations] | None = None
) -> DurationBook:
    """Return this process's book of a key (``identity``: its digest, never the key itself).

    :param where: where the book's observations are shared (e.g. ``"redis:<conn_id>"``); books of
        one key shared in different places are distinct, as the key's limiters are.
    :param shared: builds the shared observations when the book is made (``None``: none).
    """
    name = (identity, where)
    with _books_lock:
        book = _books.get(name)
        if book is None:
            book = _books[name] = DurationBook(None if shared is None else shared())
            while len(_books) > MAX_BOOKS:
                _books.popitem(last=False)
        else:
            _books.move_to_end(name)
        return book
