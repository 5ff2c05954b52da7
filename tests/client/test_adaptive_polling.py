"""The adaptive read schedule of ProgressWatch: when the next progress read comes, and how many."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest

from airflow_provider_lotimage.client.contract import TaskProgress
from airflow_provider_lotimage.client.durations import DurationBook
from airflow_provider_lotimage.client.metrics import NO_METRICS
from airflow_provider_lotimage.client.progress import ProgressWatch, read_due
from airflow_provider_lotimage.client.schedule import (
    FINISH_MARGIN,
    KIND_IMAGINE,
    KIND_UPSCALE,
    KIND_VARIATION,
    MAX_POLL_FACTOR,
    MIN_POLL_GAP,
    TYPICAL_SECONDS,
    kind_of_button,
    typical_seconds,
)
from airflow_provider_lotimage.exceptions import TaskStalledError, TaskTimeoutError, TransientError

T0 = 1_000_000.0
POLL = 10.0
UPPER = POLL * MAX_POLL_FACTOR


def progress(pct: int) -> TaskProgress:
    return TaskProgress(task_id="t-1", progress=pct, image_url="http://x/y.png" if pct == 100 else None)


def watch_at(kind: str | None = None, **fields: object) -> ProgressWatch:
    """A watch begun at T0 with no hold (as the hook's and the sensor's)."""
    return ProgressWatch.resume("t-1", started_at=T0, now=T0, kind=kind, **fields)  # type: ignore[arg-type]


# -- kinds and priors ---------------------------------------------------------------------------


@pytest.mark.parametrize("button", ["U1", "U2", "U3", "U4", " U2 "])
def test_upscale_buttons_make_upscales(button: str) -> None:
    assert kind_of_button(button) == KIND_UPSCALE


@pytest.mark.parametrize("button", ["V1", "V4", "\U0001f504", "Zoom Out 2x", "Vary (Subtle)", "u1", "??"])
def test_other_buttons_make_grids(button: str) -> None:
    assert kind_of_button(button) == KIND_VARIATION


def test_priors_put_grids_well_above_upscales_and_unknown_kinds_have_none() -> None:
    assert KIND_IMAGINE == "imagine"
    assert typical_seconds(KIND_IMAGINE) == typical_seconds(KIND_VARIATION) == 45.0
    assert typical_seconds(KIND_UPSCALE) == 10.0
    assert typical_seconds(None) is None
    assert typical_seconds("zoom") is None
    assert set(TYPICAL_SECONDS) == {KIND_IMAGINE, KIND_VARIATION, KIND_UPSCALE}


def test_the_first_read_lands_after_the_kinds_typical_end() -> None:
    upscale = watch_at(KIND_UPSCALE)
    assert upscale.next_poll_in(POLL, now=T0) == pytest.approx(10.0 * (1 + FINISH_MARGIN))
    grid = watch_at(KIND_IMAGINE)
    assert grid.next_poll_in(60.0, now=T0) == pytest.approx(45.0 * (1 + FINISH_MARGIN))


def test_the_first_read_of_a_long_kind_is_capped_by_the_upper_bound() -> None:
    assert watch_at(KIND_IMAGINE).next_poll_in(POLL, now=T0) == UPPER


def test_the_first_read_of_a_task_past_its_typical_end_is_at_once() -> None:
    """A trigger recreated after a triggerer restart has no reads: the task may be done."""
    assert watch_at(KIND_UPSCALE).next_poll_in(POLL, now=T0 + 60) == 0.0


def test_the_first_read_of_an_unknown_kind_is_the_fixed_interval() -> None:
    assert watch_at(None).next_poll_in(POLL, now=T0) == POLL
    assert watch_at("zoom").next_poll_in(POLL, now=T0) == POLL


def test_a_zero_read_late_in_the_prior_means_queued() -> None:
    """A jittered first read a little before the expected end finds 0 %: queued, not starting."""
    watch = watch_at(KIND_UPSCALE)
    watch.step(progress(0), now=T0 + 9)
    assert watch.next_poll_in(POLL, now=T0 + 9) == UPPER


def test_a_zero_read_right_after_submission_still_waits_for_the_prior() -> None:
    """A blocking wait or a sensor reads at once; the prior still sets the next read."""
    watch = watch_at(KIND_UPSCALE)
    watch.step(progress(0), now=T0 + 0.5)
    assert watch.next_poll_in(POLL, now=T0 + 0.5) == pytest.approx(11.0 - 0.5)


# -- queued, moving, near the end, stalled ------------------------------------------------------


def test_a_queued_task_is_read_at_the_upper_bound() -> None:
    watch = watch_at(KIND_UPSCALE)
    for t in (11.0, 11.0 + UPPER, 11.0 + 2 * UPPER):
        watch.step(progress(0), now=T0 + t)
        assert watch.next_poll_in(POLL, now=T0 + t) == UPPER


def test_a_task_of_unknown_kind_at_zero_is_read_at_the_interval_then_the_upper_bound() -> None:
    """Read at once after submission, 0 % says nothing; read again after half the interval, queued."""
    watch = watch_at(None)
    watch.step(progress(0), now=T0)
    assert watch.next_poll_in(POLL, now=T0) == POLL
    watch.step(progress(0), now=T0 + POLL)
    assert watch.next_poll_in(POLL, now=T0 + POLL) == UPPER


def test_a_moving_task_is_read_at_its_predicted_end() -> None:
    """40 % after 20 s: 50 s in all, so the read comes at 50 s plus the margin."""
    watch = watch_at(KIND_IMAGINE)
    watch.step(progress(40), now=T0 + 20)
    assert watch.next_poll_in(100.0, now=T0 + 20) == pytest.approx(50.0 * (1 + FINISH_MARGIN) - 20)


def test_the_rate_is_measured_from_the_last_read_at_zero() -> None:
    """Queued for 60 s, then 50 % 10 s after that last 0 %: it runs 20 s, not 140 s."""
    watch = watch_at(KIND_IMAGINE)
    watch.step(progress(0), now=T0 + 60)
    watch.step(progress(50), now=T0 + 70)
    assert watch.next_poll_in(POLL, now=T0 + 70) == pytest.approx(60 + 20 * (1 + FINISH_MARGIN) - 70)


def test_a_moving_task_is_never_read_later_than_the_upper_bound() -> None:
    watch = watch_at(KIND_IMAGINE)
    watch.step(progress(1), now=T0 + 20)  # 2000 s to go at this rate
    assert watch.next_poll_in(POLL, now=T0 + 20) == UPPER


def test_near_the_end_the_next_read_is_soon() -> None:
    """93 % after 45 s: the last step is due within about a tenth of the run, not a full interval."""
    watch = watch_at(KIND_IMAGINE)
    watch.step(progress(93), now=T0 + 45)
    total = 45 * 100 / 93
    assert watch.next_poll_in(POLL, now=T0 + 45) == pytest.approx(total * (1 + FINISH_MARGIN) - 45)
    assert watch.next_poll_in(POLL, now=T0 + 45) < POLL


def test_near_the_end_the_next_read_is_not_before_the_min_gap() -> None:
    watch = watch_at(KIND_UPSCALE)
    watch.step(progress(95), now=T0 + 4)  # predicted end 0.6 s away
    assert watch.next_poll_in(POLL, now=T0 + 4) == MIN_POLL_GAP
    watch.step(progress(99), now=T0 + 5)
    assert watch.next_poll_in(POLL, now=T0 + 5) == MIN_POLL_GAP


def test_a_short_poll_interval_is_kept_below_the_min_gap() -> None:
    """The adaptive schedule never reads more often than the fixed one it replaces, nor less."""
    watch = watch_at(KIND_IMAGINE)
    watch.step(progress(93), now=T0 + 1)
    assert watch.next_poll_in(0.2, now=T0 + 1) == pytest.approx(0.2)


def test_a_stalled_task_backs_off_toward_the_upper_bound() -> None:
    """Standing still past its predicted end, it waits at least as long as it has stood still."""
    watch = watch_at(KIND_IMAGINE, stall_timeout=900.0)
    watch.step(progress(93), now=T0 + 45)
    delays = []
    t = 45.0 + watch.next_poll_in(POLL, now=T0 + 45)
    for _ in range(6):
        watch.step(progress(93), now=T0 + t)
        delays.append(watch.next_poll_in(POLL, now=T0 + t))
        t += delays[-1]
    assert delays == sorted(delays)
    assert delays[0] < POLL
    assert delays[-1] == UPPER


def test_a_stall_is_read_and_raised_at_its_deadline() -> None:
    watch = watch_at(KIND_IMAGINE, stall_timeout=40.0)
    watch.step(progress(46), now=T0 + 20)
    t = 20.0
    for _ in range(10):
        delay = watch.next_poll_in(POLL, now=T0 + t)
        assert t + delay <= 20.0 + 40.0
        t += delay
        if t >= 60.0:
            break
        watch.step(progress(46), now=T0 + t)
    assert t == pytest.approx(60.0)
    with pytest.raises(TaskStalledError):
        watch.step(progress(46), now=T0 + t)


def test_a_stall_at_zero_is_read_at_its_deadline_not_the_upper_bound() -> None:
    watch = watch_at(KIND_UPSCALE, stall_timeout=15.0)
    watch.step(progress(0), now=T0 + 11)  # last change at 11 s: the stall deadline is 26 s
    assert watch.next_poll_in(POLL, now=T0 + 11) == pytest.approx(15.0)


def test_read_errors_count_as_standing_still() -> None:
    watch = watch_at(KIND_IMAGINE)
    watch.step(progress(93), now=T0 + 45)
    watch.step(TransientError("boom"), now=T0 + 50)
    assert watch.next_poll_in(POLL, now=T0 + 50) == pytest.approx(5.0)


# -- the bounds that win ------------------------------------------------------------------------


def test_the_overall_timeout_wins_over_the_schedule() -> None:
    watch = ProgressWatch.resume("t-1", started_at=T0, end_time=T0 + 25, now=T0, kind=KIND_IMAGINE)
    watch.step(progress(0), now=T0)
    assert watch.next_poll_in(POLL, now=T0 + 20) == 5.0
    assert watch.next_poll_in(POLL, now=T0 + 30) == 0.0
    with pytest.raises(TaskTimeoutError):
        watch.step(progress(0), now=T0 + 25)


def test_first_poll_at_wins_over_a_short_prior_and_the_timeout() -> None:
    watch = ProgressWatch.resume(
        "t-1", started_at=T0, end_time=T0 + 2, first_poll_at=T0 + 10, now=T0, kind=KIND_UPSCALE
    )
    assert watch.next_poll_in(0.5, now=T0) == 10.0
    assert watch.next_poll_in(0.5, now=T0 + 4) == 6.0


def test_first_poll_at_holds_a_long_prior_to_the_upper_bound() -> None:
    watch = ProgressWatch.resume("t-1", started_at=T0, first_poll_at=T0 + 10, now=T0, kind=KIND_IMAGINE)
    assert watch.next_poll_in(POLL, now=T0) == UPPER


@pytest.mark.parametrize("seed", range(5))
def test_jitter_spreads_reads_but_keeps_the_bounds(seed: int) -> None:
    random.seed(seed)
    queued = watch_at(KIND_UPSCALE)
    queued.step(progress(0), now=T0 + 11)
    near_end = watch_at(KIND_UPSCALE)
    near_end.step(progress(95), now=T0 + 4)
    moving = watch_at(KIND_IMAGINE)
    moving.step(progress(40), now=T0 + 20)
    for _ in range(50):
        assert UPPER * 0.8 <= queued.next_poll_in(POLL, jitter=0.2, now=T0 + 11) <= UPPER
        assert MIN_POLL_GAP <= near_end.next_poll_in(POLL, jitter=0.2, now=T0 + 4) <= MIN_POLL_GAP * 1.2
        # a predicted end is only read later, never sooner: a read before it would be wasted
        assert 35 - 1e-9 <= moving.next_poll_in(100.0, jitter=0.2, now=T0 + 20) <= 35 * 1.2


def test_not_adaptive_is_the_old_fixed_schedule() -> None:
    watch = ProgressWatch.resume(
        "t-1", started_at=T0, end_time=T0 + 100, now=T0, kind=KIND_IMAGINE, adaptive=False
    )
    assert watch.next_poll_in(2.0, now=T0) == 2.0
    for t, pct in ((2.0, 0), (4.0, 50), (6.0, 93), (8.0, 93)):
        watch.step(progress(pct), now=T0 + t)
        assert watch.next_poll_in(2.0, now=T0 + t) == 2.0
    assert watch.next_poll_in(2.0, now=T0 + 99) == 1.0
    start = ProgressWatch.start("t-1", adaptive=False)
    assert start.next_poll_in(2.0, now=start.started_at) == 2.0


def test_not_adaptive_keeps_the_hold() -> None:
    watch = ProgressWatch.resume("t-1", started_at=T0, first_poll_at=T0 + 10, now=T0, adaptive=False)
    assert watch.next_poll_in(1.0, now=T0 + 3) == 7.0


# -- plain data and read_due --------------------------------------------------------------------


def test_the_new_fields_survive_to_dict_and_from_dict() -> None:
    watch = ProgressWatch.start("t-1", kind=KIND_UPSCALE, adaptive=False)
    assert (watch.kind, watch.adaptive) == (KIND_UPSCALE, False)
    watch = watch_at(KIND_IMAGINE)
    watch.step(progress(0), now=T0 + 5)
    watch.step(progress(46), now=T0 + 25)
    data = watch.to_dict()
    assert {"kind", "adaptive", "last_read_at", "zero_seen_at"} <= set(data)
    copy = ProgressWatch.from_dict(data)
    assert copy == ProgressWatch.from_dict(data) and copy.to_dict() == data
    assert copy.next_poll_in(POLL, now=T0 + 25) == watch.next_poll_in(POLL, now=T0 + 25)


def test_old_records_without_the_new_fields_load_as_adaptive_without_history() -> None:
    old = {k: v for k, v in watch_at().to_dict().items() if k not in ("kind", "adaptive", "last_read_at")}
    watch = ProgressWatch.from_dict(old)
    assert (watch.kind, watch.adaptive, watch.last_read_at, watch.zero_seen_at) == (None, True, None, None)


def test_read_due_the_first_read_is_always_due() -> None:
    assert read_due(watch_at(KIND_IMAGINE), POLL, now=T0)
    assert read_due(watch_at(None), POLL, now=T0)


def test_read_due_respects_the_hold() -> None:
    watch = ProgressWatch.resume("t-1", started_at=T0, first_poll_at=T0 + 10, now=T0)
    assert not read_due(watch, POLL, now=T0 + 5)
    assert read_due(watch, POLL, now=T0 + 10)


def test_read_due_follows_the_schedule_across_pokes() -> None:
    watch = watch_at(KIND_UPSCALE)
    watch.step(progress(0), now=T0)
    assert not read_due(watch, POLL, now=T0 + 5)
    assert read_due(watch, POLL, now=T0 + 11)
    watch.step(progress(0), now=T0 + 11)  # queued: next at the upper bound
    restored = ProgressWatch.from_dict(watch.to_dict())  # a sensor in reschedule mode
    assert not read_due(restored, POLL, now=T0 + 11 + UPPER - 1)
    assert read_due(restored, POLL, now=T0 + 11 + UPPER)


def test_read_due_for_a_stall_and_a_timeout_deadline() -> None:
    stalling = watch_at(KIND_IMAGINE, stall_timeout=10.0)
    stalling.step(progress(46), now=T0 + 5)
    stalling.step(progress(46), now=T0 + 12)  # backs off to 19 s, but the stall is due at 15 s
    assert not read_due(stalling, POLL, now=T0 + 14.9)
    assert read_due(stalling, POLL, now=T0 + 15)
    timing_out = ProgressWatch.resume("t-1", started_at=T0, end_time=T0 + 8, now=T0, kind=KIND_IMAGINE)
    timing_out.step(progress(0), now=T0)
    assert not read_due(timing_out, POLL, now=T0 + 7)
    assert read_due(timing_out, POLL, now=T0 + 8)


def test_read_due_not_adaptive_is_every_poll_interval() -> None:
    watch = watch_at(KIND_IMAGINE, adaptive=False)
    watch.step(progress(0), now=T0)
    assert not read_due(watch, POLL, now=T0 + 9)
    assert read_due(watch, POLL, now=T0 + 10)


# -- simulation: reads per paid task ------------------------------------------------------------


@dataclass
class LinearTask:
    """A simulated task that goes from 0 % at ``start`` to finished at ``start + duration``."""

    start: float
    duration: float

    @property
    def end(self) -> float:
        return self.start + self.duration

    def at(self, t: float) -> TaskProgress:
        if t >= self.end:
            return progress(100)
        return progress(max(0, int(100 * (t - self.start) / self.duration)))


def drive(
    task: LinearTask, kind: str, poll_interval: float, *, hold: float | None, adaptive: bool = True
) -> tuple[int, float]:
    """Wait for ``task`` as a trigger does (first read no sooner than ``hold``); reads and lag."""
    first_poll_at = None if hold is None else T0 + hold
    watch = ProgressWatch.resume(
        "t-1", started_at=T0, first_poll_at=first_poll_at, now=T0, kind=kind, adaptive=adaptive
    )
    t = T0 + watch.next_poll_in(poll_interval, jitter=JITTER, now=T0)
    reads = 0
    while True:
        reads += 1
        if watch.step(task.at(t - T0), now=t) is not None:
            return reads, t - T0 - task.end
        t += watch.next_poll_in(poll_interval, jitter=JITTER, now=t)


#: The trigger's spread of its sleeps.
JITTER = 0.2
# The emulator's durations (imagine_seconds 45, upscale_seconds 10) at the time scales and poll
# intervals of the provider's defaults and of the benchmark (time_scale 0.5, poll_interval 5).
SETTINGS = [(1.0, 10.0), (0.5, 5.0)]


@pytest.mark.parametrize(("scale", "poll_interval"), SETTINGS)
@pytest.mark.parametrize("hold", [10.0, None])
def test_a_batch_costs_at_most_one_and_a_half_reads_per_paid_task(
    scale: float, poll_interval: float, hold: float | None
) -> None:
    random.seed(0)
    grid = drive(LinearTask(0.0, 45.0 * scale), KIND_IMAGINE, poll_interval, hold=hold)
    upscales = [
        drive(LinearTask(0.0, 10.0 * scale), kind_of_button(f"U{n}"), poll_interval, hold=hold)
        for n in range(1, 5)
    ]
    runs = [grid, *upscales]
    assert sum(reads for reads, _ in runs) / len(runs) <= 1.5
    for _, lag in runs:
        assert 0 <= lag <= poll_interval * MAX_POLL_FACTOR


@pytest.mark.parametrize(("scale", "poll_interval"), SETTINGS)
def test_a_queued_task_costs_a_few_reads_and_is_picked_up_within_the_bound(
    scale: float, poll_interval: float
) -> None:
    """Queued behind the key's running tasks for a grid's time, then run: reads stay rare."""
    random.seed(1)
    task = LinearTask(45.0 * scale, 10.0 * scale)
    reads, lag = drive(task, KIND_UPSCALE, poll_interval, hold=10.0)
    fixed, _ = drive(task, KIND_UPSCALE, poll_interval, hold=10.0, adaptive=False)
    assert reads <= 3 < fixed
    assert 0 <= lag <= poll_interval * MAX_POLL_FACTOR


def test_the_fixed_schedule_would_have_cost_more() -> None:
    """The baseline the adaptive schedule replaces, as a check of the simulation itself."""
    random.seed(2)
    grid, _ = drive(LinearTask(0.0, 45.0), KIND_IMAGINE, POLL, hold=10.0, adaptive=False)
    upscale, _ = drive(LinearTask(0.0, 10.0), KIND_UPSCALE, POLL, hold=10.0, adaptive=False)
    assert (grid + 4 * upscale) / 5 > 1.5


# -- the hook's blocking wait -------------------------------------------------------------------


class FakeClock:
    """Stands in for ``time`` in the hook's module: sleeping moves the clock, nothing waits."""

    def __init__(self) -> None:
        self.now = T0
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class FakeHook:
    """Answers ``poll_once`` from a simulated task, on the fake clock."""

    metrics = NO_METRICS

    def __init__(self, clock: FakeClock, task: LinearTask) -> None:
        self.clock, self.task, self.reads = clock, task, 0
        self.durations = DurationBook()  # a fresh key's: the kinds' priors

    def poll_once(self, lotimage_task_id: str) -> TaskProgress:
        self.reads += 1
        return self.task.at(self.clock.now - T0)


def wait_with_fake_hook(monkeypatch: pytest.MonkeyPatch, **params: object) -> tuple[FakeClock, FakeHook]:
    from airflow_provider_lotimage.hooks import lotimage

    clock = FakeClock()
    monkeypatch.setattr(lotimage, "time", clock)
    monkeypatch.setattr("airflow_provider_lotimage.client.progress.time", clock)
    fake = FakeHook(clock, LinearTask(0.0, 10.0))
    lotimage.LotImageHook.wait_for_task(fake, "t-1", poll_interval=POLL, **params)  # type: ignore[arg-type]
    return clock, fake


def test_the_hooks_wait_reads_a_fresh_task_of_known_kind_once_near_its_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock, fake = wait_with_fake_hook(monkeypatch, kind=KIND_UPSCALE)
    assert fake.reads == 1
    assert clock.sleeps == [pytest.approx(10.0 * (1 + FINISH_MARGIN))]


def test_the_hooks_wait_reads_at_once_without_a_kind_or_adaptive(monkeypatch: pytest.MonkeyPatch) -> None:
    clock, fake = wait_with_fake_hook(monkeypatch)
    assert fake.reads == 2 and clock.sleeps == [POLL]
    clock, fake = wait_with_fake_hook(monkeypatch, kind=KIND_UPSCALE, adaptive=False)
    assert fake.reads == 2 and clock.sleeps == [POLL]
