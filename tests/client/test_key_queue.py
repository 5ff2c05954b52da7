"""The key's queue: a task's likely start, so a batch queued behind the key is read less and on time."""

from __future__ import annotations

import random

import pytest

from airflow_provider_lotimage.client import queue_place
from airflow_provider_lotimage.client.contract import TaskProgress
from airflow_provider_lotimage.client.durations import DurationBook, Observation
from airflow_provider_lotimage.client.key_queue import FORGET_SECONDS, InFlight, KeyQueue, replay
from airflow_provider_lotimage.client.progress import ProgressWatch
from airflow_provider_lotimage.client.schedule import KIND_IMAGINE, KIND_UPSCALE, MAX_POLL_FACTOR

T0 = 1_000_000.0


def test_the_first_three_start_at_once_the_rest_as_slots_free_in_submission_order() -> None:
    tasks = [(f"t{n}", InFlight(T0 + n, 10.0)) for n in range(7)]
    starts = replay(reversed(tasks))
    assert [starts[f"t{n}"] for n in range(7)] == [T0, T0 + 1, T0 + 2, T0 + 10, T0 + 11, T0 + 12, T0 + 20]


def test_a_moving_task_holds_its_slot_until_its_predicted_end() -> None:
    tasks = [
        ("a", InFlight(T0, 10.0, ends_at=T0 + 30)),
        ("b", InFlight(T0, 10.0, ends_at=T0 + 5)),
        ("c", InFlight(T0, 10.0, ends_at=T0 + 8)),
        ("d", InFlight(T0 + 1, 10.0)),
        ("e", InFlight(T0 + 2, 10.0)),
    ]
    assert replay(tasks) == {"d": T0 + 5, "e": T0 + 8}


def test_a_task_never_starts_before_its_submission() -> None:
    assert replay([("a", InFlight(T0, 10.0, ends_at=T0 + 1)), ("b", InFlight(T0 + 50, 10.0))], running=1) == {
        "b": T0 + 50
    }


def test_leaving_frees_the_slot_and_unknown_or_old_tasks_have_no_start() -> None:
    queue = KeyQueue(running=1)
    queue.enter("a", T0, 10.0)
    queue.enter("b", T0 + 1, 10.0)
    assert queue.start_of("b", T0 + 1) == T0 + 10
    queue.leave("a")
    assert queue.start_of("b", T0 + 1) == T0 + 1
    assert queue.start_of("zzz", T0 + 1) is None
    assert queue.start_of("b", T0 + 2 + FORGET_SECONDS) is None
    assert len(queue) == 0


def progress(pct: int) -> TaskProgress:
    return TaskProgress(task_id="t", progress=pct, image_url="http://x/y.png" if pct == 100 else None)


def learned(seconds: float) -> DurationBook:
    """A book that has measured the key's upscales (so it probes one wait in twelve)."""
    book = DurationBook()
    for _ in range(4):
        book.record(KIND_UPSCALE, Observation(seconds, measured=True))
    return book


def simulate_batch(
    count: int,
    seconds: float,
    poll_interval: float,
    *,
    queue: bool,
    book_seconds: float | None = None,
    replan: bool = True,
) -> tuple[list[int], list[float]]:
    """``count`` upscales submitted together to a key running 3 at once; each read on its own schedule.

    The service: first in, first out, 3 at once, each ``seconds`` long, progress linear after its
    start. The waits share one book (one process) when ``queue`` is on; else each has its own, as
    if the key's other tasks were out of sight. The books learned ``book_seconds`` (default: the
    service's); with ``replan`` a sleeping wait plans again when the queue says it starts sooner,
    as the trigger does. Returns the reads of each task and its lag.
    """
    random.seed(3)
    starts = [T0 + (n // 3) * seconds for n in range(count)]
    shared = learned(book_seconds or seconds)
    books = [shared if queue else learned(book_seconds or seconds) for _ in range(count)]
    watches = [  # submitted in turn, a hundredth of a second apart, as one process would
        ProgressWatch.resume(
            f"t{n}", started_at=T0 + n / 100, now=T0, kind=KIND_UPSCALE, from_submission=True
        )
        for n in range(count)
    ]
    woken: set[int] = set()
    for n, (watch, book) in enumerate(zip(watches, books, strict=True)):
        watch.replan = (lambda n=n: woken.add(n)) if replan else None
        watch.expect(book, now=T0)
    due = [T0 + watch.next_poll_in(poll_interval, jitter=0.2, now=T0) for watch in watches]
    reads, lags = [0] * count, [0.0] * count
    pending = set(range(count))
    while pending:
        n = min(pending, key=lambda i: due[i])
        t, start = due[n], starts[n]
        reads[n] += 1
        shown = 100 if t >= start + seconds else max(0, int(100 * (t - start) / seconds))
        if watches[n].step(progress(shown), now=t, durations=books[n]) is not None:
            pending.discard(n)
            lags[n] = t - (start + seconds)
        else:
            due[n] = t + watches[n].next_poll_in(poll_interval, jitter=0.2, now=t)
        for m in woken & pending:  # woken by this read: plan again from now
            queue_place.place(watches[m], books[m], t)
            due[m] = t + watches[m].next_poll_in(poll_interval, jitter=0.2, now=t)
        woken.clear()
    return reads, lags


@pytest.mark.parametrize(("seconds", "poll_interval"), [(10.0, 10.0), (5.0, 5.0)])
def test_a_batch_queued_behind_the_key_is_read_less_and_on_time(seconds: float, poll_interval: float) -> None:
    reads, lags = simulate_batch(12, seconds, poll_interval, queue=True)
    blind, blind_lags = simulate_batch(12, seconds, poll_interval, queue=False)
    assert sum(reads) / len(reads) <= 1.6 < 2.2 <= sum(blind) / len(blind)
    assert all(0 <= lag <= poll_interval * 0.4 for lag in lags), lags
    assert max(lags) * 4 < max(blind_lags) <= poll_interval * MAX_POLL_FACTOR


def test_tasks_queued_behind_faster_tasks_plan_again_and_are_not_read_late() -> None:
    # The book expects twice the service's duration (a prior, or a service that sped up): the
    # first three are seen moving at the bound and end early; the nine behind them start sooner
    # than they planned, are told so, and plan their first read again.
    reads, lags = simulate_batch(12, 22.5, 5.0, queue=True, book_seconds=45.0)
    _, unplanned = simulate_batch(12, 22.5, 5.0, queue=True, book_seconds=45.0, replan=False)
    assert max(lags) <= 5.0 < 20.0 < max(unplanned), (lags, unplanned)
    assert sum(reads) / len(reads) <= 2.0


def test_a_wait_is_told_once_when_its_planned_start_comes_sooner() -> None:
    queue, told = KeyQueue(running=1), []
    queue.enter("a", T0, 10.0)
    queue.enter("b", T0 + 1, 10.0)
    queue.enter("c", T0 + 2, 10.0)
    assert queue.start_of("c", T0 + 2, replan=lambda: told.append("c")) == T0 + 20
    queue.moved("a", T0 + 9.5)  # half a second sooner: not worth a new plan
    assert told == []
    queue.moved("a", T0 + 5)
    assert told == ["c"]
    queue.finish("a", T0 + 12, not_before=T0 + 4)
    queue.finish("b", T0 + 14, not_before=T0 + 11)  # told once: "c" planned nothing since
    assert told == ["c"]
    assert queue.start_of("c", T0 + 14, replan=lambda: told.append("c again")) == T0 + 11


def test_a_wait_is_told_when_a_task_submitted_before_it_joins_late() -> None:
    """The triggerer loads new triggers in batches, in no set order: "b" was submitted first."""
    queue, told = KeyQueue(running=1), []
    queue.enter("a", T0, 10.0)
    queue.enter("c", T0 + 2, 10.0)
    assert queue.start_of("c", T0 + 3, replan=lambda: told.append("c")) == T0 + 10
    queue.enter("d", T0 + 3, 10.0)  # behind "c": its start does not move
    assert told == []
    queue.enter("b", T0 + 1, 10.0)
    assert told == ["c"]
    assert queue.start_of("c", T0 + 4) == T0 + 20
    queue.moved("a", T0 + 10.5)  # half a second later: not worth a new plan
    assert told == ["c"]


def test_a_wait_is_told_when_a_task_ahead_moves_slower_than_expected() -> None:
    queue, told = KeyQueue(running=1), []
    queue.enter("a", T0, 10.0)
    queue.enter("b", T0 + 1, 10.0)
    assert queue.start_of("b", T0 + 1, replan=lambda: told.append("b")) == T0 + 10
    queue.moved("a", T0 + 25)
    assert told == ["b"] and queue.start_of("b", T0 + 12) == T0 + 25


def test_a_finished_task_frees_its_slot_as_early_as_it_could_have_ended() -> None:
    queue = KeyQueue(running=1)
    queue.enter("a", T0, 10.0)
    queue.enter("b", T0 + 1, 10.0)
    queue.finish("a", T0 + 30, not_before=T0 + 5)  # first seen finished at T0 + 30, unfinished at T0 + 5
    assert queue.start_of("b", T0 + 30) == T0 + 5
    queue.moved("b", T0 + 25)
    queue.enter("c", T0 + 2, 10.0)
    queue.finish("b", T0 + 40, not_before=T0 + 20)  # seen moving: where its progress pointed
    assert queue.start_of("c", T0 + 40) == T0 + 25
    queue.leave("b")  # the wait's own leave after finishing changes nothing
    assert queue.start_of("c", T0 + 40) == T0 + 25
    queue.finish("c", T0 + 41, not_before=T0 + 26)
    assert len(queue) == 0, "finished tasks behind no waiting task are dropped"
    queue.enter("d", T0 + 50, 10.0)
    queue.enter("e", T0 + 51, 10.0)
    queue.leave("d")  # a wait that ended without finishing frees its slot at once
    assert queue.start_of("e", T0 + 52) == T0 + 51


def test_a_wait_told_by_webhook_is_not_woken_to_poll_sooner() -> None:
    book, told = DurationBook(), []
    book.queue = KeyQueue(running=1)
    book.queue.enter("ahead", T0, 10.0)
    watches = {
        hinted: ProgressWatch.resume(
            f"hinted={hinted}",
            started_at=T0 + 1,
            now=T0 + 1,
            kind=KIND_UPSCALE,
            from_submission=True,
            hinted=hinted,
        )
        for hinted in (True, False)
    }
    for hinted, watch in watches.items():
        watch.replan = lambda hinted=hinted: told.append(hinted)
        watch.expect(book, now=T0 + 1)
    assert watches[True].starts_at == T0 + 10, "it still takes its place in the queue"
    book.queue.finish("ahead", T0 + 5, not_before=T0 + 4)
    assert told == [False]


def test_a_wait_told_its_start_came_sooner_keeps_the_bound_from_that_start() -> None:
    # Four grids on a fast service: three run, the fourth is planned to start when the first ends,
    # 45 s on. The three are first read at 7.4 s, finished; the fourth, told, is read at once: its
    # upper bound (poll_interval x 3) counts from its likely start, now its submission at 1.2 s,
    # as if that start had been known all along, not from the moment it was told.
    book, poll_interval = DurationBook(), 2.0
    watches = [
        ProgressWatch.resume(
            f"g{n}", started_at=T0 + n * 0.4, now=T0 + n * 0.4, kind=KIND_IMAGINE, from_submission=True
        )
        for n in range(4)
    ]
    for watch in watches:
        watch.expect(book, now=watch.started_at)
    last = watches[3]
    assert last.starts_at == T0 + 45.0
    assert last.next_poll_in(poll_interval, now=T0 + 1.2) == pytest.approx(45.0 - 1.2 + 3 * poll_interval)
    for watch in watches[:3]:
        assert watch.step(progress(100), now=T0 + 7.4, durations=book) is not None
    queue_place.place(last, book, T0 + 7.4)
    assert last.starts_at == T0 + 1.2
    assert last.next_poll_in(poll_interval, now=T0 + 7.4) == 0.0
    # After a read at 0 %, the bound counts from that read again.
    assert last.step(progress(0), now=T0 + 7.5, durations=book) is None
    assert last.next_poll_in(poll_interval, now=T0 + 7.5) == pytest.approx(3 * poll_interval)


def test_a_task_finished_on_a_webhook_delivery_frees_its_slot_when_read() -> None:
    """Read when its delivery came: it ended then, not at its submission (the waits behind it
    would otherwise plan their fallback reads on a slot freed long before)."""
    for hinted, freed_at in ((True, T0 + 45.0), (False, T0)):
        book = DurationBook()
        book.queue = KeyQueue(running=1)
        watch = ProgressWatch.resume(
            "grid", started_at=T0, now=T0, kind=KIND_IMAGINE, from_submission=True, hinted=hinted
        )
        watch.expect(book, now=T0)
        book.queue.enter("behind", T0 + 1, 10.0)
        assert watch.step(progress(100), now=T0 + 45.0, durations=book) is not None
        assert book.queue.start_of("behind", T0 + 46) == max(freed_at, T0 + 1)
