"""A wait's place in its key's queue (:mod:`.key_queue`): joining it, keeping it up to date, leaving.

Only the waits that began at their task's submission (the submitting operators') take part: their
order is the service's. A wait joins as it learns its expected duration, tells the queue after
each read what it saw (moving: where its end lies; 0 %: asks for its likely start again), tells
it when its task finished, and leaves however the wait ends.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from airflow_provider_lotimage.client.key_queue import QUEUED_AFTER
from airflow_provider_lotimage.client.schedule import Observations, moving_run

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow_provider_lotimage.client.durations import DurationBook


class Waiting(Observations, Protocol):
    """What a wait shows of itself here: the fields of a :class:`~.progress.ProgressWatch`."""

    task_id: str
    adaptive: bool
    from_submission: bool
    replan: Callable[[], None] | None


def takes_part(watch: Waiting) -> bool:
    """Whether the wait's task is in its key's queue: adaptive, and waited for since its submission."""
    return watch.adaptive and watch.from_submission and watch.expected_seconds is not None


def join(watch: Waiting, book: DurationBook, now: float) -> None:
    """Enter the queue as the wait begins, with its whole expected duration (a probe's too)."""
    if takes_part(watch):
        assert watch.expected_seconds is not None
        book.queue.enter(watch.task_id, watch.started_at, watch.expected_seconds)
        place(watch, book, now)


def place(watch: Waiting, book: DurationBook, now: float) -> None:
    """Tell the queue what the last read saw, and take :attr:`~.progress.ProgressWatch.starts_at` from it."""
    if not takes_part(watch):
        return
    if watch.last_progress > 0:
        since, total = moving_run(watch)
        if total is not None:
            book.queue.moved(watch.task_id, since + total)
        return
    # A wait told by webhook polls only as a fallback: a start that moved is no reason to plan again.
    watch.starts_at = book.queue.start_of(watch.task_id, now, None if watch.hinted else watch.replan)


def finish(watch: Waiting, book: DurationBook, now: float, last_read_at: float | None) -> None:
    """Tell the queue the task was seen finished now, and not at the read before.

    A wait told by webhook reads when the delivery comes, as the task ends: its end is now. (A
    delivery lost makes that end late, by the fallback's sleep: the waits behind, told by webhook
    too, only plan their own fallback later.) Otherwise its end lies after the read before, or
    its submission, and the queue places it as early as it could have been.
    """
    if takes_part(watch):
        not_before = now if watch.hinted else last_read_at or watch.started_at
        book.queue.finish(watch.task_id, now, not_before=not_before)


def leave(watch: Waiting, book: DurationBook) -> None:
    """Leave the queue: the wait is over, however it ended (after :func:`finish`: nothing)."""
    book.queue.leave(watch.task_id)


def queued(watch: Waiting) -> bool:
    """Whether the queue made the task wait after its submission (its end is then no duration)."""
    return watch.starts_at is not None and watch.starts_at > watch.started_at + QUEUED_AFTER
