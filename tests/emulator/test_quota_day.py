"""The daily quota's day: moved on by the test (``next_day``), not by waiting for midnight UTC."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest
import requests

from .helpers import KEY, Client

if TYPE_CHECKING:
    from collections.abc import Callable

    from lotimage_emulator import Emulator

EXHAUSTED = {"status": 403, "errMessage": "Daily request limit reached"}


def _day(offset: int) -> str:
    return (datetime.now(UTC) + timedelta(days=offset)).date().isoformat()


def test_next_day_starts_the_quota_again_and_keeps_the_tasks(make_emulator: Callable[..., Emulator]) -> None:
    emu = make_emulator(daily_quota=2)
    client = Client(emu.url)
    assert emu.quota_day == _day(0)
    task = client.submit()
    time.sleep(0.3)  # an imagine lasts 0.09 s here
    assert client.progress(task).json()["progress"] == 100  # the second call of the day
    assert client.imagine().json() == EXHAUSTED
    assert client.progress(task).json() == EXHAUSTED
    assert emu.stats()["quota_used"][emu.key_id(KEY)] == 2

    assert emu.next_day() == _day(1) == emu.quota_day
    assert emu.stats()["quota_used"][emu.key_id(KEY)] == 0
    finished = client.progress(task).json()  # a task of the day before is still there
    assert finished["status"] == 200 and finished["progress"] == 100
    assert client.get(finished["imageUrl"]).status_code == 200, "its picture link still works"
    second = client.submit("a second owl, on the new day")
    assert client.imagine().json() == EXHAUSTED
    stats = emu.stats()
    assert stats["quota_used"][emu.key_id(KEY)] == 2
    assert stats["submissions"]["imagine"] == 2
    assert {row["taskId"] for row in emu.tasks()} == {task, second}


def test_next_day_by_admin_endpoint(make_emulator: Callable[..., Emulator]) -> None:
    emu = make_emulator(daily_quota=1)
    client = Client(emu.url)
    client.submit()
    assert client.imagine().json() == EXHAUSTED
    url = emu.url + "/_emulator/next-day"
    assert requests.post(url, timeout=5).json() == {"status": 200, "quota_day": _day(1)}
    client.submit()
    assert requests.post(url, json={"days": 2}, timeout=5).json() == {"status": 200, "quota_day": _day(3)}
    client.submit()
    for bad in ({"days": 0}, {"days": True}, {"days": "1"}, [1]):
        answer = requests.post(url, json=bad, timeout=5)
        assert answer.status_code == 400, bad
    assert requests.post(url, data=b"not json", timeout=5).status_code == 400
    assert emu.quota_day == _day(3), "a refused request moves nothing"


def test_reset_returns_to_today(make_emulator: Callable[..., Emulator]) -> None:
    emu = make_emulator(daily_quota=1)
    emu.next_day()
    emu.reset()
    assert emu.quota_day == _day(0)


@pytest.mark.parametrize("days", [0, -1, 1.5, True])
def test_next_day_refuses_what_is_not_a_day(make_emulator: Callable[..., Emulator], days: object) -> None:
    emu = make_emulator()
    with pytest.raises(ValueError, match="days must be"):
        emu.next_day(days)  # type: ignore[arg-type]
    assert emu.quota_day == _day(0)
