"""The client-side limiter: never more than the key's calls in any window, across processes too."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import time
from collections.abc import Callable
from pathlib import Path

from airflow_provider_lotimage.client.retry import RetryPolicy
from airflow_provider_lotimage.client.transport import Call
from airflow_provider_lotimage.exceptions import RateLimitedError
from airflow_provider_lotimage.ratelimit.base import key_identity
from airflow_provider_lotimage.ratelimit.local import SlidingWindowLimiter
from airflow_provider_lotimage.ratelimit.registry import limiter_for


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def max_in_window(stamps: list[float], window: float) -> int:
    stamps = sorted(stamps)
    return max(sum(1 for s in stamps if t <= s < t + window) for t in stamps)


def test_reservations_keep_three_per_window() -> None:
    clock = FakeClock()
    limiter = SlidingWindowLimiter(3, 1.1, clock=clock)
    slots = [clock.now + limiter.reserve() for _ in range(30)]
    assert slots == sorted(slots)
    assert max_in_window(slots, 1.1) == 3
    assert slots[-1] - slots[0] >= 9 * 1.1 - 1e-9


def test_block_for_pushes_every_caller_back() -> None:
    clock = FakeClock()
    limiter = SlidingWindowLimiter(3, 1.1, clock=clock)
    limiter.block_for(5.0)
    assert limiter.reserve() >= 5.0


def test_shared_state_file(tmp_path: Path) -> None:
    clock = FakeClock()
    a = SlidingWindowLimiter(3, 1.1, state_file=tmp_path / "s.json", clock=clock)
    b = SlidingWindowLimiter(3, 1.1, state_file=tmp_path / "s.json", clock=clock)
    waits = [a.reserve(), b.reserve(), a.reserve(), b.reserve()]
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert waits[3] >= 1.1 - 1e-9  # explicit period given


def _worker(path: str, n: int, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    limiter = SlidingWindowLimiter(3, 1.1, state_file=Path(path))
    stamps = []
    for _ in range(n):
        limiter.acquire()
        stamps.append(time.time())
    queue.put(stamps)


def test_processes_share_one_budget(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(str(tmp_path / "shared.json"), 4, queue)) for _ in range(3)]
    for p in procs:
        p.start()
    stamps = [s for _ in procs for s in queue.get(timeout=60)]
    for p in procs:
        p.join(10)
    assert len(stamps) == 12
    # 12 calls at 3 per 1.1 s take at least 3 full windows, and no window holds more than 3.
    assert max(stamps) - min(stamps) >= 3 * 1.1 - 0.05
    assert max_in_window(stamps, 1.0) <= 3


def test_registry_gives_one_limiter_per_key_and_rate() -> None:
    ident = key_identity("http://127.0.0.1:1", "secret-key")
    assert "secret" not in ident
    assert limiter_for(ident, 3.0, "process") is limiter_for(ident, 3.0, "process")
    assert limiter_for(ident, 0.5, "process").calls == 1


def test_async_hold_backs_of_the_local_limiter() -> None:
    clock = FakeClock()
    limiter = SlidingWindowLimiter(3, 1.1, clock=clock)
    asyncio.run(limiter.ablock_for(2.0))
    assert limiter.reserve() >= 2.0
    later = SlidingWindowLimiter(3, 1.1, clock=clock)
    asyncio.run(later.asent(clock.now, clock.now + 0.5))  # left half a second late
    assert later.reserve() >= 0.5 + 1.1 - 1e-9


class RecordingLimiter:
    """Stands in for a key's limiter to see which hold-back the retry loops use."""

    def __init__(self) -> None:
        self.held: list[tuple[str, float]] = []

    def acquire(self) -> float:
        return 0.0

    async def acquire_async(self) -> float:
        return 0.0

    def block_for(self, seconds: float) -> None:
        self.held.append(("sync", seconds))

    async def ablock_for(self, seconds: float) -> None:
        self.held.append(("async", seconds))

    async def asent(self, slot: float, sent_at: float) -> None:
        return None


def _rate_limited_once() -> Callable[[], str]:
    answers = iter([RateLimitedError("429", retry_after=0.01, http_status=429), "done"])

    def call() -> str:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return call


def test_a_429_holds_the_key_back_sync_and_async() -> None:
    """The sync loop tells the limiter directly; the async loop awaits it (a Redis budget is remote)."""
    policy = RetryPolicy(max_attempts=2, base_delay=0.01)
    call = Call("task/progress", "/p", {}, paid=False, parse=lambda reply: reply)
    log = logging.getLogger("test")
    limiter = RecordingLimiter()
    attempt_once = _rate_limited_once()
    for attempt in policy.retrying(call, limiter, log):
        with attempt:
            attempt_once()

    async def main() -> None:
        attempt_again = _rate_limited_once()
        async for attempt in policy.aretrying(call, limiter, log):
            with attempt:
                attempt_again()

    asyncio.run(main())
    assert [kind for kind, _ in limiter.held] == ["sync", "async"]
    assert all(0.01 <= seconds <= 0.3 for _, seconds in limiter.held)
