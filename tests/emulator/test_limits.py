"""Rate limit, daily quota, per-key concurrency and the two HTTP status styles."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import requests

from .helpers import KEY, Client

if TYPE_CHECKING:
    from collections.abc import Callable

    from lotimage_emulator import Emulator

RATE_LIMITED = {"status": 429, "errMessage": "Too many requests"}


def test_rate_limit_counts_all_endpoints_and_sends_retry_after(
    make_emulator: Callable[..., Emulator],
) -> None:
    emu = make_emulator(rate_limit=3)
    client = Client(emu.url)
    started = time.monotonic()
    task = client.submit()
    assert client.progress(task).json()["status"] == 200
    assert client.button(task, "U1").json()["status"] == 400  # not finished yet, but it counted
    limited = client.imagine()
    assert time.monotonic() - started < 1.0, "the four calls must land in one window"
    assert limited.status_code == 200 and limited.json() == RATE_LIMITED
    assert limited.headers["Retry-After"] == "1"
    time.sleep(float(limited.headers["Retry-After"]))
    assert client.progress(task).json()["status"] == 200
    stats = emu.stats()
    assert stats["rate_limited"] == 1 and stats["rate_limited_by_limiter"] == 1
    assert stats["submissions"]["imagine"] == 1, "a rate-limited imagine creates nothing"
    assert stats["max_calls_per_second"] == 4
    assert stats["peak_calls_per_second"] == {emu.key_id(KEY): 4}


def test_calls_within_the_limit_pass_and_keys_are_limited_separately(
    make_emulator: Callable[..., Emulator],
) -> None:
    emu = make_emulator(rate_limit=3, keys=(KEY, "second-key"))
    first, second = Client(emu.url), Client(emu.url, key="second-key")
    task = first.submit()
    for _ in range(5):  # 3 a second, paced: never limited
        time.sleep(0.4)
        assert first.progress(task).json()["status"] == 200
    for _ in range(3):  # a burst of another key does not eat the first key's budget
        assert second.imagine().json()["status"] == 200
    stats = emu.stats()
    assert stats["rate_limited"] == 0
    assert stats["peak_calls_per_second"][emu.key_id(KEY)] <= 3


def test_daily_quota_counts_every_call(make_emulator: Callable[..., Emulator]) -> None:
    emu = make_emulator(daily_quota=3)
    client = Client(emu.url)
    task = client.submit()
    assert client.progress(task).json()["status"] == 200
    assert client.progress("unknown").json()["status"] == 404  # answered, so it counted
    exhausted = {"status": 403, "errMessage": "Daily request limit reached"}
    assert client.imagine().json() == exhausted
    assert client.progress(task).json() == exhausted
    assert client.button(task, "U1").json() == exhausted
    assert Client(emu.url, key="bad").imagine().json()["status"] == 401, "auth is checked first"
    assert emu.stats()["quota_used"][emu.key_id(KEY)] == 3
    emu.set_config(daily_quota=None)
    assert client.progress(task).json()["status"] == 200


def test_fourth_task_queues_at_zero_while_three_run(make_emulator: Callable[..., Emulator]) -> None:
    emu = make_emulator(time_scale=0.02, keys=(KEY, "other"))  # imagine 0.9 s
    client = Client(emu.url)
    tasks = [client.submit(f"owl {n}") for n in range(4)]
    other = Client(emu.url, key="other").submit("another key's owl")
    time.sleep(0.45)
    progress = [client.progress(task).json()["progress"] for task in tasks]
    assert all(value > 0 for value in progress[:3]) and progress[3] == 0, progress
    assert Client(emu.url, key="other").progress(other).json()["progress"] > 0, "queues are per key"
    counts = emu.stats()["tasks"]
    assert (counts["queued"], counts["running"], counts["finished"]) == (1, 4, 0)
    for task in tasks[:3]:
        client.wait(task)
    states = {task["taskId"]: task["state"] for task in emu.tasks()}
    assert states[tasks[3]] == "running", "the queued task starts when a slot frees"
    started = time.monotonic()
    client.wait(tasks[3])
    assert time.monotonic() - started > 0.5, "and then runs its full duration"


def test_max_running_is_configurable(make_emulator: Callable[..., Emulator]) -> None:
    emu = make_emulator(time_scale=0.02, max_running=1)
    client = Client(emu.url)
    first, second = client.submit(), client.submit()
    time.sleep(0.3)
    assert client.progress(first).json()["progress"] > 0
    assert client.progress(second).json()["progress"] == 0
    emu.set_config(max_running=2)
    assert client.progress(second).json()["progress"] == 0
    time.sleep(0.2)
    assert client.progress(second).json()["progress"] > 0, "a raised limit starts queued tasks"


def test_mirror_http_status_switches_at_runtime(make_emulator: Callable[..., Emulator]) -> None:
    emu = make_emulator(rate_limit=2)
    client = Client(emu.url)
    assert client.progress("missing").status_code == 200  # sibling style: HTTP 200, error in body
    emu.set_config(mirror_http_status=True)
    response = client.progress("missing")
    assert response.status_code == 404 and response.json() == {"status": 404, "errMessage": "Task not found"}
    limited = client.progress("missing")
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "1"
    bad_key = Client(emu.url, key="nope").imagine()
    assert bad_key.status_code == 401 and bad_key.json()["status"] == 401
    # ...and back, over the admin API, as a test in another process would do it.
    requests.post(emu.url + "/_emulator/faults", json={"flags": {"mirror_http_status": False}}, timeout=5)
    assert Client(emu.url, key="nope").imagine().status_code == 200
    requests.post(emu.url + "/_emulator/config", json={"mirror_http_status": True}, timeout=5)
    assert Client(emu.url, key="nope").imagine().status_code == 401
    emu.set_config(rate_limit=None)
    ok = client.imagine()
    assert ok.status_code == 200 and ok.json()["status"] == 200


def test_mirror_http_status_from_start(make_emulator: Callable[..., Emulator]) -> None:
    emu = make_emulator(mirror_http_status=True)
    client = Client(emu.url)
    response = client.imagine("")
    assert response.status_code == 400 and response.json()["errMessage"] == "prompt is required"
    task = client.submit()
    body = client.wait(task)
    assert client.progress(task).status_code == 200 and body["progress"] == 100


def test_task_rows_time_the_queue_the_reads_and_how_late_the_end_was_seen(
    make_emulator: Callable[..., Emulator],
) -> None:
    emu = make_emulator(time_scale=0.02, max_running=1)  # imagine 0.9 s, one at a time
    client = Client(emu.url)
    first, second = client.submit(), client.submit()
    client.progress(second)
    time.sleep(1.2)  # the first ended at 0.9 s: this read sees it 0.3 s late
    client.progress(first)
    client.progress(first)
    timing = {task["taskId"]: task["timing"] for task in emu.tasks()}
    assert timing[first]["queuedSeconds"] < 0.1 and abs(timing[first]["runSeconds"] - 0.9) < 0.05
    assert len(timing[first]["readsAt"]) == 2 and timing[first]["readsAt"][0] >= 1.2
    assert 0.25 <= timing[first]["endSeenAfterSeconds"] <= 0.6, "the first read after the end counts"
    assert abs(timing[second]["queuedSeconds"] - 0.9) < 0.05, "queued until the first ended"
    assert timing[second]["readsAt"][0] < 0.2 and timing[second]["endSeenAfterSeconds"] is None
