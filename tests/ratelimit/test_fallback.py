"""Redis away (killed, or frozen so it never answers): every caller falls back to its machine's
``host`` budget at once, one warning names the Redis connection (never its password), and the
budget is shared through Redis again once it answers."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from airflow_harness.redis_server import RedisServer
from airflow_provider_lotimage.client.settings import read_settings
from airflow_provider_lotimage.ratelimit import redis_link
from airflow_provider_lotimage.ratelimit.redis_budget import RedisBudget
from airflow_provider_lotimage.ratelimit.registry import limiter_of
from tests.ratelimit.conftest import REDIS_PASSWORD
from tests.ratelimit.processes import max_in_window

URL = "http://lotimage.invalid"
LOGGER = "airflow_provider_lotimage.ratelimit.redis_link"
#: No wait may exceed one window (1.2 s) plus one Redis timeout and some scheduling slack.
BOUND = 1.2 + redis_link.REDIS_TIMEOUT + 0.3


@pytest.fixture
def budget(
    redis_connection: str, api_key: str, host_tmpdir: Path, monkeypatch: pytest.MonkeyPatch
) -> RedisBudget:
    monkeypatch.setattr(redis_link, "RETRY_REDIS_EVERY", 0.5)
    conn = SimpleNamespace(conn_id="lotimage_default", host=URL, port=None, password=api_key)
    limiter = limiter_of(read_settings(conn, {"rate_limit_scope": "redis"}))
    assert isinstance(limiter, RedisBudget)
    return limiter


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[Callable[[int], list[str]]]:
    caplog.set_level(logging.INFO, logger=LOGGER)

    def at(level: int) -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == level]

    yield at
    assert REDIS_PASSWORD not in caplog.text


def timed(call: Callable[[], object]) -> float:
    started = time.monotonic()
    call()
    return time.monotonic() - started


def calls(budget: RedisBudget, count: int, *, use_async: bool = False) -> list[float]:
    """Acquire ``count`` slots, each within :data:`BOUND`; return the moments they came."""
    stamps = []
    for _ in range(count):
        took = timed(lambda: asyncio.run(budget.acquire_async()) if use_async else budget.acquire())
        assert took < BOUND
        stamps.append(time.time())
    return stamps


def wait_for_retry() -> None:
    time.sleep(redis_link.RETRY_REDIS_EVERY + 0.05)


def test_killed_redis_falls_back_to_host_then_comes_back(
    budget: RedisBudget, redis_server: RedisServer, redis_client, host_tmpdir: Path, logs
) -> None:
    calls(budget, 3)
    assert redis_client.exists(budget.key)
    redis_server.kill()

    stamps = calls(budget, 4) + calls(budget, 2, use_async=True)
    assert max_in_window(stamps, 1.0) <= 3  # the machine's own budget holds meanwhile
    assert (host_tmpdir / "airflow-provider-lotimage" / f"rate-{budget.key.rsplit(':', 1)[1]}.json").exists()
    (warning,) = logs(logging.WARNING)
    assert "'redis_default'" in warning and "host" in warning

    redis_server.start()
    wait_for_retry()
    calls(budget, 1)
    assert redis_client.exists(budget.key)  # a fresh Redis: the budget is back in it
    (info,) = logs(logging.INFO)
    assert "'redis_default'" in info and "answers again" in info
    assert len(logs(logging.WARNING)) == 1


def test_frozen_redis_times_out_into_the_fallback(
    budget: RedisBudget, redis_server: RedisServer, redis_client, logs
) -> None:
    """A Redis that accepts but never answers (SIGSTOP) costs one timeout, then nothing."""
    calls(budget, 1, use_async=True)
    pid = redis_server.service.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        first = timed(budget.acquire)
        assert redis_link.REDIS_TIMEOUT - 0.05 <= first < BOUND  # one read timed out
        assert timed(budget.acquire) < 0.3  # no more waiting on Redis until the next retry
        wait_for_retry()
        assert timed(lambda: asyncio.run(budget.acquire_async())) < BOUND  # the async retry times out too
        assert len(logs(logging.WARNING)) == 1
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_for_retry()
    redis_client.delete(budget.key)
    calls(budget, 1, use_async=True)
    assert redis_client.exists(budget.key)
    assert len(logs(logging.INFO)) == 1


def test_a_hold_back_while_redis_is_away_still_holds_this_machine(
    budget: RedisBudget, redis_server: RedisServer
) -> None:
    redis_server.kill()
    budget.block_for(1.0)
    assert budget.reserve() >= 0.9
