"""Separate processes, each with its own temp dir (so no ``host`` lock file is shared), share one
key's budget through Redis: the calls per second, a 429's hold-back and a late send's hold-back."""

from __future__ import annotations

import json
import time

import pytest

from tests.ratelimit.processes import Workers, max_in_window

#: Never called: the limiter only hashes it (with the key) into the budget's name.
URL = "http://lotimage.invalid"
#: 3 calls a second plus the margin: one window is 1.2 s.
PERIOD = 1.2


def limiters(workers: Workers, api_key: str, scope: str = "redis") -> list:
    extra = {"rate_limit_scope": scope}
    return workers.start_ready(["first", "second"], "limiter", url=URL, key=api_key, extra=extra)


def test_two_processes_never_exceed_the_rate_together(
    workers: Workers, redis_connection: str, api_key: str
) -> None:
    """One process waits in a thread (sync), the other in an event loop with three coroutines."""
    sync, concurrent = limiters(workers, api_key)
    sync.go(op="acquire", calls=6)
    concurrent.go(op="acquire", calls=6, concurrency=3)
    stamps = sync.result()["stamps"] + concurrent.result()["stamps"]
    assert len(stamps) == 12
    assert max_in_window(stamps, 1.0) <= 3
    # Twelve calls at three a window take three windows after the first three: one budget (two
    # budgets would take one). Each caller's clock guess may be off by a little of the margin.
    assert max(stamps) - min(stamps) >= 3 * PERIOD - 0.2


def test_without_redis_the_same_processes_do_not_share(workers: Workers, api_key: str) -> None:
    """The control: scope ``host`` with a temp dir each gives each process a budget of its own."""
    results = Workers.all_run(limiters(workers, api_key, "host"), op="acquire", calls=6)
    assert max_in_window([s for r in results for s in r["stamps"]], 1.0) == 6


def test_hold_backs_set_in_one_process_delay_the_other(
    workers: Workers, redis_connection: str, api_key: str
) -> None:
    """A hold-back from the async path (the sync one is the 429 test's), then a late send's."""
    holder, caller = limiters(workers, api_key)
    blocked_at = holder.run(op="block", seconds=2.0)["at"]
    (called_at,) = caller.run(op="acquire", calls=1)["stamps"]
    assert called_at - blocked_at >= 2.0 - 0.05  # less a guess of when the server decided

    sent_at = holder.run(op="late", late=0.5)["sent_at"]
    (called_at,) = caller.run(op="acquire", calls=1, concurrency=1)["stamps"]
    # The late call counts from when it left: the next may leave one window after it.
    assert called_at >= sent_at + PERIOD - 0.1


def test_retry_after_of_a_429_holds_every_process_back(
    workers: Workers,
    redis_connection: str,
    lotimage_emulator,
    lotimage_api_key: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """End to end: the service's 429 to one process's hook holds another process's hook back."""
    connection = {"conn_type": "lotimage", "host": lotimage_emulator.url, "password": lotimage_api_key}
    connection["extra"] = {"rate_limit_scope": "redis"}
    monkeypatch.setenv("AIRFLOW_CONN_LOTIMAGE_DEFAULT", json.dumps(connection))
    refused, other = workers.start_ready(["refused", "other"], "hook", conn_id="lotimage_default")
    lotimage_emulator.add_fault("http_429", endpoint="imagine", retry_after=2)
    refused.go(imagine=1, reads=0)
    deadline = time.monotonic() + 20
    while lotimage_emulator.stats()["rate_limited"] < 1:
        assert time.monotonic() < deadline, "the 429 never came"
        time.sleep(0.02)
    waited = other.run(imagine=1, reads=0)
    assert waited["ended"] - waited["started"] >= 1.5  # Retry-After 2 s, less the time to notice it
    assert len(refused.result()["tasks"]) == 1
    stats = lotimage_emulator.stats()
    assert stats["rate_limited"] == 1 and stats["submissions"]["imagine"] == 2
