"""The client-side limiter: never more than the key's calls in any window, across processes too."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

from airflow_provider_lotimage.ratelimit import SlidingWindowLimiter, key_identity, limiter_for


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
