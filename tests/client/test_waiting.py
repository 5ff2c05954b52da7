"""ProgressWatch's timing decisions: the first-poll hold after a deferral, the stall and overall clocks."""

from __future__ import annotations

import math

import pytest

from airflow_provider_lotimage.client.contract import TaskProgress
from airflow_provider_lotimage.client.progress import ProgressWatch
from airflow_provider_lotimage.client.validation import validate_first_poll_delay
from airflow_provider_lotimage.exceptions import LotImageInputError, TaskStalledError, TransientError
from airflow_provider_lotimage.utils.deferral import (
    RESUME_MARGIN,
    default_first_poll_delay,
    earliest_first_poll,
)

T0 = 1_000_000.0


def progress(pct: int, *, image: bool = False) -> TaskProgress:
    return TaskProgress(task_id="t-1", progress=pct, image_url="http://x/y.png" if image else None)


@pytest.mark.parametrize(("interval", "expected"), [("5", 5.0 + RESUME_MARGIN), ("1", 1.0 + RESUME_MARGIN)])
def test_default_delay_follows_the_workers_min_heartbeat_interval(
    monkeypatch: pytest.MonkeyPatch, interval: str, expected: float
) -> None:
    monkeypatch.setenv("AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL", interval)
    assert default_first_poll_delay() == expected
    assert earliest_first_poll(None, now=T0) == T0 + expected


def test_default_delay_with_airflows_defaults_is_ten_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL", raising=False)
    assert default_first_poll_delay() == 10.0


def test_explicit_delay_wins_over_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL", "5")
    assert earliest_first_poll(0, now=T0) == T0
    assert earliest_first_poll(2.5, now=T0) == T0 + 2.5


@pytest.mark.parametrize("value", [-1, -0.1, True, "10", math.inf, math.nan, [1]])
def test_bad_first_poll_delay_is_refused(value: object) -> None:
    with pytest.raises(LotImageInputError, match="first_poll_delay"):
        validate_first_poll_delay(value)


@pytest.mark.parametrize(("value", "expected"), [(None, None), (0, 0.0), (3, 3.0), (7.5, 7.5)])
def test_good_first_poll_delay_is_kept(value: object, expected: float | None) -> None:
    assert validate_first_poll_delay(value) == expected


def test_no_poll_before_first_poll_at_even_past_the_timeout() -> None:
    """The overall timeout shortens sleeps, but never below the hold: a timeout event is an event."""
    watch = ProgressWatch.resume("t-1", started_at=T0, end_time=T0 + 2, first_poll_at=T0 + 10, now=T0)
    assert watch.first_poll_in(now=T0) == 10.0
    assert watch.first_poll_in(now=T0 + 4) == 6.0
    assert watch.first_poll_in(now=T0 + 11) == 0.0
    assert watch.next_poll_in(1.0, now=T0 + 3) == 7.0
    assert watch.next_poll_in(1.0, now=T0 + 10) == 0.0  # past the timeout: poll at once


def test_next_poll_in_without_a_hold_is_the_interval_clipped_to_the_timeout() -> None:
    watch = ProgressWatch.resume("t-1", started_at=T0, end_time=T0 + 5, now=T0)
    assert watch.first_poll_in(now=T0) == 0.0
    assert watch.next_poll_in(2.0, now=T0) == 2.0
    assert watch.next_poll_in(2.0, now=T0 + 4) == 1.0


def test_resume_keeps_the_overall_timeout_absolute() -> None:
    """A triggerer restart 30 s into a 60 s wait leaves 30 s, not 60."""
    watch = ProgressWatch.resume("t-1", started_at=T0, end_time=T0 + 60, now=T0 + 30)
    assert watch.timeout == 60
    assert watch.seconds_left(now=T0 + 30) == 30


def test_the_hold_is_not_a_stall() -> None:
    """A read error right after a 10 s hold must not count the hold as 10 s without progress."""
    watch = ProgressWatch.resume("t-1", started_at=T0, stall_timeout=2, first_poll_at=T0 + 10, now=T0)
    watch.observe_error(TransientError("boom"), now=T0 + 10.5)  # 0.5 s after the first read: fine
    with pytest.raises(TaskStalledError):
        watch.observe_error(TransientError("boom"), now=T0 + 12.5)


def test_first_poll_at_survives_to_dict_and_old_records_load() -> None:
    watch = ProgressWatch.resume("t-1", started_at=T0, first_poll_at=T0 + 10, now=T0)
    assert ProgressWatch.from_dict(watch.to_dict()).first_poll_at == T0 + 10
    old = {k: v for k, v in watch.to_dict().items() if k != "first_poll_at"}
    assert ProgressWatch.from_dict(old).first_poll_at is None


def test_a_finished_task_is_done_at_the_first_read_after_the_hold() -> None:
    watch = ProgressWatch.resume("t-1", started_at=T0, first_poll_at=T0 + 10, now=T0)
    assert watch.step(progress(100, image=True), now=T0 + 10) is not None
