"""The durations book (``client/durations``): what a wait tells, the estimate, probes, bounds, threads."""

from __future__ import annotations

import math
import threading
from collections import Counter

import pytest

from airflow_provider_lotimage.client import durations
from airflow_provider_lotimage.client.contract import TaskProgress
from airflow_provider_lotimage.client.durations import (
    MAX_SECONDS,
    MIN_SECONDS,
    PROBE_EVERY,
    WINDOW,
    DurationBook,
    Observation,
    book_for,
    estimate,
    observed,
)
from airflow_provider_lotimage.client.progress import ProgressWatch
from airflow_provider_lotimage.client.schedule import (
    FINISH_MARGIN,
    KIND_IMAGINE,
    KIND_UPSCALE,
    PROBE_FACTOR,
    TYPICAL_SECONDS,
)

T0 = 1_000_000.0
PRIOR = TYPICAL_SECONDS[KIND_UPSCALE]


def progress(pct: int) -> TaskProgress:
    return TaskProgress(task_id="t-1", progress=pct, image_url="http://x/y.png" if pct == 100 else None)


def measured(seconds: float) -> Observation:
    return Observation(seconds, measured=True)


def bound(seconds: float) -> Observation:
    return Observation(seconds, measured=False)


def no_probes(book: DurationBook, kind: str = KIND_UPSCALE) -> float:
    value = book.expected(kind, probe=False)
    assert value is not None
    return value


# -- what one wait tells --------------------------------------------------------------------------


def test_a_first_read_that_finds_the_task_finished_is_only_a_bound() -> None:
    seen = observed(T0, T0 + 11.0, -1, T0, None)
    assert seen == bound(11.0)


def test_a_task_seen_moving_is_measured_between_its_progress_and_the_finishing_read() -> None:
    """46 % at 5.5 s: the true fraction is 0.46..0.61, so the run ends 9.0..12.0 s after submission."""
    seen = observed(T0, T0 + 13.2, 46, T0 + 5.5, None)
    assert seen is not None and seen.measured
    low, high = 5.5 / (0.46 + 1 / 7), 5.5 / 0.46
    assert seen.seconds == pytest.approx((low + high) / 2)
    assert 10.0 <= seen.seconds <= 11.0  # a 10 s task, measured within a few percent


def test_the_finishing_read_bounds_a_measure_from_above() -> None:
    """15 % at 1 s says up to 6.7 s; the task was found finished at 2 s, so it ended before."""
    seen = observed(T0, T0 + 2.0, 15, T0 + 1.0, None)
    assert seen is not None and seen.measured and 1.0 < seen.seconds <= 2.0


def test_a_task_seen_at_zero_percent_teaches_nothing() -> None:
    """It may have queued behind the key's other tasks: its wait measures the queue."""
    assert observed(T0, T0 + 40.0, 62, T0 + 30.0, T0 + 11.0) is None
    assert observed(T0, T0 + 40.0, -1, T0, T0 + 11.0) is None
    assert observed(T0, T0 - 1.0, -1, T0, None) is None  # a clock that went back


# -- the estimate -----------------------------------------------------------------------------------


def test_without_observations_the_estimate_is_the_prior() -> None:
    assert estimate(PRIOR, []) == PRIOR
    assert no_probes(DurationBook()) == PRIOR
    assert no_probes(DurationBook(), KIND_IMAGINE) == TYPICAL_SECONDS[KIND_IMAGINE]


def test_an_unknown_kind_has_no_expectation_and_teaches_nothing() -> None:
    book = DurationBook()
    assert book.expected(None) is None and book.expected("zoom") is None
    book.record("zoom", measured(3.0))
    book.record(None, measured(3.0))
    assert book.observations("zoom") == []


def test_a_measured_duration_moves_the_estimate_half_way_in_log_space() -> None:
    assert estimate(PRIOR, [measured(2.5)]) == pytest.approx(math.sqrt(PRIOR * 2.5))
    assert estimate(PRIOR, [measured(2.5)] * 12) == pytest.approx(2.5, rel=0.01)
    assert estimate(2.5, [measured(PRIOR)] * 12) == pytest.approx(PRIOR, rel=0.01)


def test_a_bound_lowers_the_estimate_and_never_raises_it() -> None:
    assert estimate(PRIOR, [bound(6.6)]) == 6.6
    assert estimate(PRIOR, [bound(30.0)]) == PRIOR
    assert estimate(PRIOR, [measured(2.0)] * 12 + [bound(2.4)] * 20) == pytest.approx(2.0, rel=0.01)


def test_one_odd_task_moves_the_estimate_by_the_square_root_of_its_ratio() -> None:
    settled = [measured(2.0)] * 12
    odd = estimate(PRIOR, [*settled, measured(32.0)])
    assert odd == pytest.approx(2.0 * 4, rel=0.01)
    assert estimate(PRIOR, [*settled, measured(32.0), *[measured(2.0)] * 4]) < 2.5


def test_the_estimate_is_clamped() -> None:
    assert estimate(PRIOR, [measured(0.01)] * 40) == MIN_SECONDS
    assert estimate(PRIOR, [measured(1e9)] * 40) == MAX_SECONDS
    assert estimate(1e9, []) == MAX_SECONDS


def test_the_book_keeps_only_its_window() -> None:
    book = DurationBook()
    for n in range(WINDOW * 5):
        book.record(KIND_UPSCALE, measured(1.0 + n))
    kept = book.observations(KIND_UPSCALE)
    assert len(kept) == WINDOW
    assert [seen.seconds for seen in kept] == [1.0 + n for n in range(WINDOW * 4, WINDOW * 5)]


def test_an_observation_is_two_numbers_as_text_and_anything_else_is_refused() -> None:
    assert Observation.from_text(measured(2.25).to_text()) == measured(2.25)
    assert Observation.from_text(b"11.000 0") == bound(11.0)
    for text in ("", "x 1", "2.0 2", "2.0", "nan 1", "-1 1", "inf 0", "1 1 1"):
        assert Observation.from_text(text) is None, text


# -- probes -------------------------------------------------------------------------------------------


def probes_among(book: DurationBook, waits: int) -> int:
    estimate_now = no_probes(book)
    return sum(book.expected(KIND_UPSCALE) != estimate_now for _ in range(waits))


def test_without_a_measure_every_second_wait_probes() -> None:
    book = DurationBook()
    values = [book.expected(KIND_UPSCALE) for _ in range(6)]
    assert values == [PRIOR * PROBE_FACTOR, PRIOR] * 3


def test_with_a_measure_one_wait_in_probe_every_probes() -> None:
    book = DurationBook()
    book.record(KIND_UPSCALE, measured(4.0))
    assert probes_among(book, PROBE_EVERY * 4) == 4


def test_a_wait_that_does_not_learn_never_probes() -> None:
    book = DurationBook()
    assert {book.expected(KIND_UPSCALE, probe=False) for _ in range(30)} == {PRIOR}


def reads_of(watch: ProgressWatch, book: DurationBook, seconds: float) -> list[tuple[float, int]]:
    """Drive ``watch`` over a task that runs ``seconds`` from T0, shown as the emulator does.

    Progress comes in sevenths of the run, each showing the step it reached (0, 15, 31 ... 93),
    then 100: the contract's steps. Returns each read's seconds after T0 and what it showed.
    """
    steps = (0, 15, 31, 46, 62, 78, 93)
    now, reads = T0, []
    while not reads or reads[-1][1] < 100:
        now += watch.next_poll_in(10.0, now=now)
        elapsed = now - T0
        shown = 100 if elapsed >= seconds else steps[int(elapsed / seconds * 7)]
        reads.append((round(elapsed, 1), shown))
        watch.step(progress(shown), now, durations=book)
    return reads


def test_a_probe_that_finds_its_task_moving_places_its_end_by_the_whole_estimate() -> None:
    """Only a probe's first read aims early: its task seen moving, the estimate places the end.

    A grid of the prior's 45 s that starts at once: the probe reads it at 0.66 of that and sees
    62 %. Placing its end by the probe's 27 s read it again at 43 s, at 93 %, and a third time;
    placed by the whole 45 s, the second read finds it finished, no later than the same grid's
    second read when its wait is no probe: a probe costs its early read, nothing more.
    """
    grid = TYPICAL_SECONDS[KIND_IMAGINE]
    runs = {}
    for probe in (True, False):
        book = DurationBook()
        if not probe:
            book.expected(KIND_IMAGINE)  # the book's probe goes to another wait
        watch = ProgressWatch.resume("t-1", started_at=T0, now=T0, kind=KIND_IMAGINE, from_submission=True)
        watch.expect(book, now=T0)
        assert (watch.probing, watch.expected_seconds) == (probe, grid)
        runs[probe] = reads_of(watch, book, grid)
    probe_reads, plain_reads = runs[True], runs[False]
    assert probe_reads[0] == (pytest.approx(grid * PROBE_FACTOR * (1 + FINISH_MARGIN), abs=0.1), 62)
    assert len(probe_reads) == len(plain_reads) == 2, runs
    assert probe_reads[1][0] <= plain_reads[1][0]


# -- the watch takes its expectation and gives its duration --------------------------------------------


def test_the_first_read_comes_at_the_learned_end() -> None:
    book = DurationBook()
    for _ in range(12):
        book.record(KIND_UPSCALE, measured(2.0))
    watch = ProgressWatch.resume("t-1", started_at=T0, now=T0, kind=KIND_UPSCALE)
    watch.expect(book)
    assert watch.expected_seconds == pytest.approx(2.0, rel=0.01)
    assert watch.next_poll_in(10.0, now=T0) == pytest.approx(watch.expected_seconds * (1 + FINISH_MARGIN))


def test_an_unknown_kind_reads_as_before_and_a_fixed_schedule_takes_nothing() -> None:
    book = DurationBook()
    unknown = ProgressWatch.resume("t-1", started_at=T0, now=T0)
    unknown.expect(book)
    assert unknown.expected_seconds is None and unknown.next_poll_in(10.0, now=T0) == 10.0
    fixed = ProgressWatch.resume("t-1", started_at=T0, now=T0, kind=KIND_UPSCALE, adaptive=False)
    fixed.expect(book)
    assert fixed.expected_seconds is None


def test_the_expectation_and_the_flag_survive_serialisation() -> None:
    watch = ProgressWatch.resume("t-1", started_at=T0, now=T0, kind=KIND_UPSCALE, from_submission=True)
    watch.expect(DurationBook())
    copy = ProgressWatch.from_dict(watch.to_dict())
    assert (copy.expected_seconds, copy.probing, copy.from_submission) == (PRIOR, True, True)
    probe_read = PRIOR * PROBE_FACTOR * (1 + FINISH_MARGIN)
    assert copy.next_poll_in(10.0, now=T0) == pytest.approx(probe_read)
    copy.expect(DurationBook())  # a watch that has its expectation keeps it
    assert (copy.expected_seconds, copy.probing) == (PRIOR, True)


def test_only_a_wait_from_the_submission_gives_its_duration() -> None:
    book = DurationBook()
    for flag in (False, True):
        watch = ProgressWatch.resume("t-1", started_at=T0, now=T0, kind=KIND_UPSCALE, from_submission=flag)
        watch.step(progress(46), now=T0 + 5.5)
        assert watch.step(progress(100), now=T0 + 13.2, durations=book) is not None
    [seen] = book.observations(KIND_UPSCALE)
    assert seen == observed(T0, T0 + 13.2, 46, T0 + 5.5, None)


# -- shared by a process, thread-safe -----------------------------------------------------------------


def test_one_book_per_key_and_place_and_old_ones_go(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(durations, "_books", type(durations._books)())
    monkeypatch.setattr(durations, "MAX_BOOKS", 3)
    first = book_for("digest-a")
    assert book_for("digest-a") is first and book_for("digest-a", "redis:x") is not first
    for name in ("digest-b", "digest-c", "digest-d"):
        book_for(name)
    assert len(durations._books) == 3 and book_for("digest-a") is not first


def test_the_book_is_thread_safe() -> None:
    """Threads recording and asking at once: no observation torn, exactly one probe in twelve."""
    book = DurationBook()
    for _ in range(WINDOW):
        book.record(KIND_UPSCALE, measured(3.0))
    start = threading.Barrier(8)
    asked: Counter[bool] = Counter()
    lock = threading.Lock()

    def work(n: int) -> None:
        start.wait()
        mine: Counter[bool] = Counter()
        for i in range(PROBE_EVERY * 25):
            book.record(KIND_UPSCALE, measured(3.0 + (n + i) % 2))
            value = book.expected(KIND_UPSCALE)
            mine[value is not None and value < 3.0 * 0.9] += 1
        with lock:
            asked.update(mine)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert asked[True] == 8 * 25
    kept = book.observations(KIND_UPSCALE)
    assert len(kept) == WINDOW and {seen.seconds for seen in kept} <= {3.0, 4.0}
