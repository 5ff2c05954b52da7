"""When to read a task's progress next: the adaptive schedule, pure arithmetic on what was seen.

Every read spends one of the key's 3 calls a second, and on a trial key one of its 10 calls a day,
so the adaptive schedule reads when there is likely something new to see: at the end expected
from the task's kind and its likely start in the key's queue (before any progress is seen) or from
its progress rate, rarely while it is queued at 0 %, less and less often while it does not move.
Its bounds: never sooner than :data:`MIN_POLL_GAP` after the previous read, never later than
``poll_interval`` times :data:`MAX_POLL_FACTOR` (after the likely start, for a task predicted to
queue), and a read is always made in time to report a stall.

The functions take the observations of a :class:`~.progress.ProgressWatch` and the time; they
read no clock (the watch does), so the schedule can be checked second by second.
"""

from __future__ import annotations

import math
from typing import Protocol

from airflow_provider_lotimage.client.contract import UPSCALE_BUTTONS

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

#: The adaptive schedule never waits longer than ``poll_interval`` times this between reads (for a
#: task predicted to queue behind the key's tasks in flight, counted from its likely start). The
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

#: With webhook completion the delivery says when to read, and polling is only the fallback for
#: a delivery that is late or lost: the adaptive schedule's sleeps, and its upper bound, are this
#: many times longer. A task whose delivery arrives then reads once, even when it waited in the
#: key's queue for minutes (the benchmark's batch of 6 at factor 2: 1.17 reads a task, the
#: fallback reading queued grids at its upper bound); a lost delivery costs at most four upper
#: bounds of lag (2 minutes at the default 10 s ``poll_interval``), and a stall is still
#: reported on time.
WEBHOOK_FALLBACK_FACTOR = 4.0

#: The fraction of its expected duration a probe's first read aims at (:mod:`.durations`: a probe
#: that finds its task finished lowers the estimate, one that finds it moving measures it). Only
#: the first read: once the task is seen moving, the whole estimate places its end.
PROBE_FACTOR = 0.6

#: Fraction of the predicted duration added to a predicted end before reading. Progress comes in
#: steps (15, 31, 46 ... 93, 100: about a seventh of the run each), so the shown progress lags the
#: true one by up to a step whatever the percentage, and the predicted end is early by up to a
#: step's time; a read a tenth of the run after it mostly finds the task finished, not at 93 %.
#: (Simulated over the contract's duration ranges, 0.1 costs about 15 % fewer reads than no
#: margin for about 1 s more lag; a margin on the remaining time alone saves only half as many.)
FINISH_MARGIN = 0.1


def kind_of_button(button: str) -> str:
    """Return the kind of task pressing ``button`` makes, for its first read's prior.

    ``U1``..``U4`` upscale one picture; every other button of the contract (``V1``..``V4``,
    reroll, zoom, vary) makes a new grid, so an unknown label counts as a grid too.
    """
    return KIND_UPSCALE if button.strip() in UPSCALE_BUTTONS else KIND_VARIATION


def typical_seconds(kind: str | None) -> float | None:
    """Return the prior duration of a task of ``kind`` (:data:`TYPICAL_SECONDS`), None if unknown."""
    return TYPICAL_SECONDS.get(kind) if kind is not None else None


def expected_seconds(seen: Observations) -> float | None:
    """Return the duration a task not yet moved is expected to take, None for an unknown kind.

    The duration learned for the key and kind when the wait began (:mod:`.durations`), or else
    the kind's prior (:data:`TYPICAL_SECONDS`).
    """
    if seen.expected_seconds is not None:
        return seen.expected_seconds
    return typical_seconds(seen.kind)


class Observations(Protocol):
    """What the schedule knows of a task: the fields of a :class:`~.progress.ProgressWatch`."""

    started_at: float
    last_change_at: float
    last_progress: int
    last_read_at: float | None
    zero_seen_at: float | None
    kind: str | None
    stall_timeout: float | None
    hinted: bool
    expected_seconds: float | None
    probing: bool
    starts_at: float | None


def adaptive_delay(seen: Observations, poll_interval: float, now: float, spread: float = 0.0) -> float:
    """Seconds from ``now`` to the wanted read, spread by the fraction ``spread``, within the bounds.

    The wanted read (:func:`wanted_at`) is spread only later, or earlier at the upper bound (a read
    before a predicted end is wasted), by ``spread`` of the sleep but of no more than
    ``poll_interval`` (the spread only keeps waits deferred together apart; a long sleep aimed at
    a predicted end would read it seconds late), kept within :func:`gap_bounds`, and never past
    the stall deadline, so a stall is reported on time. The upper bound of a task predicted to
    queue counts from its likely start. A wait told by webhook (``hinted``) sleeps
    :data:`WEBHOOK_FALLBACK_FACTOR` times longer.
    """
    low, high = gap_bounds(seen, poll_interval, now)
    wanted = wanted_at(seen, poll_interval, now)
    if seen.last_progress <= 0 and seen.starts_at is not None:
        high = max(low, queued_since(seen, seen.starts_at) + high - now)
    stretch = WEBHOOK_FALLBACK_FACTOR if seen.hinted else 1.0
    delay = min(max((wanted - now) * stretch, low), high)
    delay += min(delay, poll_interval) * (-spread if delay >= high else spread)
    delay = min(max(delay, low), high)
    if seen.stall_timeout is not None:
        delay = min(delay, max(0.0, seen.last_change_at + seen.stall_timeout - now))
    return delay


def queued_since(seen: Observations, starts_at: float) -> float:
    """Return when the upper bound of a task in the key's queue counts from (epoch seconds).

    From its likely start ``starts_at``, or from the last read after it: not from now, because a
    wait woken when that start came sooner (:mod:`.key_queue`) plans again in the middle of its
    sleep, and a bound restarted then would read it later than if the start had been known all along.
    """
    return max(starts_at, seen.started_at if seen.last_read_at is None else seen.last_read_at)


def gap_bounds(seen: Observations, poll_interval: float, now: float) -> tuple[float, float]:
    """Return the shortest and the longest sleep from ``now``.

    The shortest keeps the fair-share gap (:data:`MIN_POLL_GAP`, or ``poll_interval`` when
    shorter, as the fixed schedule would read) after the last read; the longest is
    ``poll_interval`` times :data:`MAX_POLL_FACTOR` (times :data:`WEBHOOK_FALLBACK_FACTOR` with webhooks).
    """
    high = max(0.0, poll_interval * MAX_POLL_FACTOR)
    if seen.hinted:
        high *= WEBHOOK_FALLBACK_FACTOR
    if seen.last_read_at is None:
        return 0.0, high
    low = max(0.0, seen.last_read_at + min(MIN_POLL_GAP, poll_interval) - now)
    return min(low, high), high


def wanted_at(seen: Observations, poll_interval: float, now: float) -> float:
    """When (epoch seconds) a read is likely to find something new, before the bounds.

    Before any progress: the end expected from the kind's duration, counted from the task's
    likely start in the key's queue (``starts_at``, :mod:`.key_queue`) or else its submission
    (a probe's at :data:`PROBE_FACTOR` of it); without a kind, nothing is known, so the fixed
    schedule's next read. ``math.inf`` means "as late as the bounds allow": a task that still
    showed 0 % past half its expected duration after its likely start (a running task shows its
    first step after about a seventh; ``poll_interval`` stands in for an unknown kind's) is
    queued behind tasks this process does not see.
    """
    if seen.last_progress > 0:
        return moving_wanted_at(seen, now)
    prior = expected_seconds(seen)
    begins = seen.started_at if seen.starts_at is None else max(seen.started_at, seen.starts_at)
    if seen.last_read_at is not None and seen.last_read_at >= begins + (prior or poll_interval) / 2:
        return math.inf
    if prior is None:
        return now + poll_interval
    return begins + prior * (PROBE_FACTOR if seen.probing else 1.0) * (1.0 + FINISH_MARGIN)


def moving_wanted_at(seen: Observations, now: float) -> float:
    """Return the predicted end of a task that has moved, or later while it stands still.

    The rate is the progress over the time since the task was last seen at 0 % (or since
    submission): a long base evens out the steps progress comes in. A task that did not move
    at the last read backs off: it waits at least as long as it has stood still, so a stalled
    task is read less and less often (its stall deadline still gets a read).
    """
    since, total = moving_run(seen)
    if total is None:
        return math.inf
    predicted_end = since + total * (1.0 + FINISH_MARGIN)
    return max(predicted_end, now + (now - seen.last_change_at))


def moving_run(seen: Observations) -> tuple[float, float | None]:
    """Return when a moving task's run is measured from and its predicted length (None: unknown).

    The rate counts from the last read at 0 %, or else from the submission or the likely start in
    the key's queue. Neither is seen for a task in the queue that was never read at 0 %: it may
    have started later, and a rate counted from too early a start reads it late. Its run is then
    also placed by its expected duration, and the sooner of the two ends is kept.
    """
    since = seen.started_at if seen.zero_seen_at is None else seen.zero_seen_at
    if seen.zero_seen_at is None and seen.starts_at is not None and seen.starts_at < seen.last_change_at:
        since = max(since, seen.starts_at)  # queued until then, as far as the key's queue tells
    elapsed = seen.last_change_at - since
    if elapsed <= 0 or seen.last_progress <= 0:
        return since, None
    total = elapsed * 100.0 / seen.last_progress
    expected = expected_seconds(seen)
    if seen.zero_seen_at is None and seen.starts_at is not None and expected is not None:
        placed = seen.last_change_at - expected * min(seen.last_progress, 100) / 100.0
        if placed + expected < since + total:
            return placed, expected
    return since, total
