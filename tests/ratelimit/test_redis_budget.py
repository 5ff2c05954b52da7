"""The budget's Lua script against a real Redis: reservations, hold-backs, the server's clock,
what is stored (never the key), expiry, and the asyncio client's lifetime."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from airflow_provider_lotimage.client.settings import read_settings
from airflow_provider_lotimage.ratelimit import redis_budget
from airflow_provider_lotimage.ratelimit.base import key_identity
from airflow_provider_lotimage.ratelimit.redis_budget import RedisBudget
from airflow_provider_lotimage.ratelimit.registry import limiter_of
from tests.ratelimit.conftest import REDIS_PASSWORD
from tests.ratelimit.processes import max_in_window

URL = "http://lotimage.invalid"
PERIOD = 1.2


@pytest.fixture
def budget(redis_connection: str, api_key: str, host_tmpdir: Path) -> RedisBudget:
    conn = SimpleNamespace(conn_id="lotimage_default", host=URL, port=None, password=api_key)
    limiter = limiter_of(read_settings(conn, {"rate_limit_scope": "redis"}))
    assert isinstance(limiter, RedisBudget)
    return limiter


def skewed(budget: RedisBudget, seconds: float) -> RedisBudget:
    """The same budget seen from a machine whose clock is ``seconds`` off."""
    return RedisBudget(
        budget.link,
        budget.key.removeprefix(redis_budget.KEY_PREFIX),
        budget.calls,
        budget.period,
        budget.fallback,
        clock=lambda: time.time() + seconds,
    )


def test_reservations_keep_three_per_window(budget: RedisBudget) -> None:
    """The script's own slots (the server's clock), then the waits callers are told."""
    slots = [float(budget.link.run(budget.key, budget._args("take"))[1]) for _ in range(30)]
    assert slots == sorted(slots)
    assert max_in_window(slots, PERIOD - 1e-6) == 3
    assert slots[-1] - slots[0] >= 9 * PERIOD - 1e-6
    before = time.time()
    wait = budget.reserve()
    after = time.time()
    assert slots[-3] + PERIOD - after - 0.01 <= wait <= slots[-3] + PERIOD - before + 0.01


def test_hold_back_and_check(budget: RedisBudget) -> None:
    (_, token) = budget.link.run(budget.key, budget._args("take"))
    budget.block_for(3.0)
    assert budget.reserve() >= 2.95
    assert budget.link.run(budget.key, budget._args("check", token.decode())) == 0  # overtaken


def test_host_clocks_do_not_matter(budget: RedisBudget) -> None:
    """Machines an hour apart share the budget: they only ever exchange relative delays."""
    ahead, behind = skewed(budget, 3600), skewed(budget, -3600)
    waits = [ahead.reserve(), behind.reserve(), ahead.reserve(), behind.reserve()]
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert PERIOD - 0.3 <= waits[3] <= PERIOD + 0.01
    started = time.monotonic()
    ahead.acquire()  # its slot is in its own clock: no hour-long sleep, no endless re-reserving
    assert time.monotonic() - started < PERIOD + 0.2


def test_nothing_in_redis_reveals_the_key(budget: RedisBudget, redis_client, api_key: str) -> None:
    budget.acquire()
    budget.block_for(1.0)
    slot = asyncio.run(budget.acquire_async())
    asyncio.run(budget.asent(slot, slot + 0.5))
    stored: dict[bytes, object] = {}
    for name in redis_client.scan_iter("*"):
        kind = redis_client.type(name)
        assert kind == b"hash"
        stored[name] = redis_client.hgetall(name)
    assert list(stored) == [f"lotimage:rate:{key_identity(URL, api_key)}".encode()]
    dump = repr(stored).encode()
    for secret in (api_key, REDIS_PASSWORD):
        assert secret.encode() not in dump
    ttl = redis_client.pttl(budget.key) / 1000
    assert 0 < ttl <= 1.0 + PERIOD + PERIOD + redis_budget.IDLE_TTL


def test_an_idle_budget_expires(budget: RedisBudget, redis_client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redis_budget, "IDLE_TTL", 0)
    budget.acquire()
    assert redis_client.exists(budget.key)
    time.sleep(PERIOD + 0.2)
    assert not redis_client.exists(budget.key)


def test_a_flushed_script_cache_is_refilled(budget: RedisBudget, redis_client, caplog) -> None:
    budget.acquire()
    redis_client.script_flush()
    asyncio.run(budget.acquire_async())
    budget.acquire()
    assert "did not answer" not in caplog.text


def test_async_waiters_share_the_window_and_leave_no_client_behind(budget: RedisBudget) -> None:
    async def main() -> list[float]:
        stamps: list[float] = []

        async def one() -> None:
            await budget.acquire_async()
            stamps.append(time.time())

        await asyncio.gather(*(one() for _ in range(7)))
        return stamps

    stamps = asyncio.run(main())
    assert max_in_window(stamps, 1.0) <= 3
    assert max(stamps) - min(stamps) >= 2 * PERIOD - 0.2  # two windows, give or take the margin
    assert budget.link._loops == {}  # the loop's client was closed with its last user
