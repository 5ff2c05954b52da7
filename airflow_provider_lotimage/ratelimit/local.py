"""A key's limiter kept on this machine: in a file every process of the host shares, or in memory.

With scope ``"host"`` the reservations live in a small file guarded by ``flock``
(:func:`state_file`), so the worker processes and the triggerer of one machine share a single
budget; with scope ``"process"`` they live in memory. Either is also the fallback of a
Redis-held budget (:mod:`.redis_budget`) while Redis does not answer.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from airflow_provider_lotimage.ratelimit.base import WINDOW_MARGIN, late_send_hold, window, woke_too_late


def state_file(identity: str) -> Path:
    """Return the file of a key's ``host`` budget: ``<tmp>/airflow-provider-lotimage/rate-<identity>.json``.

    Every process of the machine that uses the key opens the same file, so the name is part of the
    budget's contract: a renamed file would split one key's budget in two during an upgrade.
    """
    return Path(tempfile.gettempdir()) / "airflow-provider-lotimage" / f"rate-{identity}.json"


class SlidingWindowLimiter:
    """At most ``calls`` reservations in any ``period`` seconds (``period`` includes a margin)."""

    def __init__(
        self,
        calls: int,
        period: float = 1.0 + WINDOW_MARGIN,
        *,
        state_file: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if calls < 1:
            raise ValueError("calls must be at least 1")
        self.calls = calls
        self.period = period
        self.state_file = state_file
        self._clock = clock
        self._lock = threading.Lock()
        self._slots: list[float] = []
        self._blocked_until = 0.0

    def reserve(self) -> float:
        """Reserve the next free slot and return how many seconds to wait for it (>= 0)."""
        return max(0.0, self._reserve_slot() - self._clock())

    def _reserve_slot(self) -> float:
        with self._lock:
            if self.state_file is None:
                slot, self._slots = self._take(self._slots, self._blocked_until)
                return slot
            return self._reserve_shared()

    def block_for(self, seconds: float) -> None:
        """Hold every caller back for ``seconds`` (used when the service answered 429)."""
        until = self._clock() + max(0.0, seconds)
        with self._lock:
            if self.state_file is None:
                self._blocked_until = max(self._blocked_until, until)
                return
            with self._locked_state() as state:
                state["blocked_until"] = max(float(state.get("blocked_until", 0.0)), until)

    def acquire(self) -> float:
        """Block the calling thread until its reserved slot; returns the slot (epoch seconds)."""
        while True:
            slot = self._reserve_slot()
            if (delay := slot - self._clock()) > 0:
                time.sleep(delay)
            if self._still_valid(slot):
                return slot

    async def acquire_async(self) -> float:
        """Wait, without blocking the event loop, until the reserved slot; returns the slot."""
        while True:
            slot = self._reserve_slot()
            if (delay := slot - self._clock()) > 0:
                await asyncio.sleep(delay)
            if self._still_valid(slot):
                return slot

    async def ablock_for(self, seconds: float) -> None:
        """:meth:`block_for`: memory or a local file, microseconds, fine on the event loop."""
        self.block_for(seconds)

    def sent(self, slot: float, sent_at: float) -> None:
        """Report when a call really left.

        A call that left late (a congested event loop between its slot and the socket) may sit in
        the service's window together with the next calls, so every call not yet sent is held back
        one window from it; their holders re-reserve.
        """
        if hold := late_send_hold(slot, sent_at, self.period, self._clock()):
            self.block_for(hold)

    async def asent(self, slot: float, sent_at: float) -> None:
        """:meth:`sent`, from the async transport's send-time trace."""
        self.sent(slot, sent_at)

    def _still_valid(self, slot: float) -> bool:
        """Check a slot: given up when its holder woke too late or a late call blocked it meanwhile."""
        if woke_too_late(slot, self._clock()):
            return False
        return slot >= self._blocked()

    def _blocked(self) -> float:
        if self.state_file is None:
            return self._blocked_until
        with self._lock, self._locked_state() as state:
            return float(state.get("blocked_until", 0.0))

    def _take(self, slots: list[float], blocked_until: float) -> tuple[float, list[float]]:
        now = self._clock()
        live = sorted(s for s in slots if s > now - self.period)
        slot = max(now, blocked_until)
        if len(live) >= self.calls:
            slot = max(slot, live[-self.calls] + self.period)
        live.append(slot)
        return slot, sorted(live)[-self.calls :]

    def _reserve_shared(self) -> float:
        with self._locked_state() as state:
            slots = [float(s) for s in state.get("slots", [])]
            slot, state["slots"] = self._take(slots, float(state.get("blocked_until", 0.0)))
        return slot

    def _locked_state(self) -> _LockedJsonFile:
        assert self.state_file is not None
        return _LockedJsonFile(self.state_file)


class _LockedJsonFile:
    """Read-modify-write of a tiny JSON file under an exclusive ``flock`` (held for microseconds)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.state: dict = {}
        self._fd = -1

    def __enter__(self) -> dict:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        raw = os.read(self._fd, 65536)
        try:
            loaded = json.loads(raw) if raw else {}
            self.state = loaded if isinstance(loaded, dict) else {}
        except ValueError:
            self.state = {}
        return self.state

    def __exit__(self, *exc: object) -> None:
        try:
            data = json.dumps(self.state).encode()
            os.lseek(self._fd, 0, os.SEEK_SET)
            os.ftruncate(self._fd, 0)
            os.write(self._fd, data)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)


_registry: dict[tuple[str, float, str], SlidingWindowLimiter] = {}
_registry_lock = threading.Lock()


def local_limiter(identity: str, rate_per_second: float, scope: str) -> SlidingWindowLimiter:
    """Return this process's limiter of a key, in the machine-wide file (``host``) or in memory."""
    with _registry_lock:
        key = (identity, rate_per_second, scope)
        limiter = _registry.get(key)
        if limiter is None:
            calls, period = window(rate_per_second)
            limiter = SlidingWindowLimiter(
                calls, period, state_file=state_file(identity) if scope == "host" else None
            )
            _registry[key] = limiter
        return limiter
