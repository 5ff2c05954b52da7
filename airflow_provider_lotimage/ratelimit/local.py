"""A sliding-window call limiter shared by every caller that uses the same key.

LotImage allows a key a few calls per second and answers 429 beyond that. The limiter hands out
*reservations*: each caller is given the earliest moment its call may leave and sleeps until then,
so callers never spin and never retry for a slot. With scope ``"host"`` the reservations live in a
small file guarded by ``flock``, so the worker processes and the triggerer of one machine share a
single budget; with scope ``"process"`` they live in memory; with scope ``"redis"`` they live in
Redis, shared by every machine that reaches it (:mod:`.redis_budget`, imported only for that scope
so the provider works without the Redis provider installed).
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

#: Extra room added to the one-second window, so calls spaced exactly at the limit never arrive
#: at the service closer together than it counts.
WINDOW_MARGIN = 0.2
#: Where a key's budget is shared: by every machine reaching one Redis, by the processes of a
#: machine, or within one process.
SCOPES = frozenset({"host", "process", "redis"})
#: The Redis connection that holds the budget when the scope is ``"redis"``.
DEFAULT_REDIS_CONN_ID = "redis_default"
#: A caller that wakes later than this after its slot gives the slot up and reserves another: a
#: busy event loop must not bunch several late calls together with the next window's calls.
LATE_TOLERANCE = 0.05


def woke_too_late(slot: float, now: float) -> bool:
    """Whether a caller woke so long after its slot that it must give the slot up and reserve again."""
    return now - slot > LATE_TOLERANCE


def late_send_hold(slot: float, sent_at: float, period: float, now: float) -> float:
    """Return how long every caller must hold back after a call of ``slot`` left at ``sent_at`` (0: on time).

    A late call counts in the service's window from when it left, so the others wait one window
    from then.
    """
    return sent_at + period - now if sent_at - slot > LATE_TOLERANCE else 0.0


class RateLimiter(Protocol):
    """What the hook, the retry loop and the async transport ask of a key's limiter, in any scope.

    The async methods exist because a limiter may have to ask a server (scope ``"redis"``): the
    triggerer's event loop must never wait on a blocking client.
    """

    def acquire(self) -> float:
        """Block until the caller's reserved slot; return the slot (this machine's epoch seconds)."""

    async def acquire_async(self) -> float:
        """Wait, without blocking the event loop, until the reserved slot; return the slot."""

    def block_for(self, seconds: float) -> None:
        """Hold every caller of the key back for ``seconds`` (the service answered 429)."""

    async def ablock_for(self, seconds: float) -> None:
        """:meth:`block_for`, without blocking the event loop."""

    async def asent(self, slot: float, sent_at: float) -> None:
        """Report when the call of ``slot`` really left (see :meth:`SlidingWindowLimiter.sent`)."""


class LimiterConfigError(ValueError):
    """A rate-limit setting cannot work; ``field`` names the connection extra to fix.

    Raised while the limiter is built, before any call; the connection turns it into a
    :class:`~airflow_provider_lotimage.exceptions.ConnectionConfigError` naming the connection.
    """

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(problem)
        self.field = field
        self.problem = problem


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


def limiter_for(
    identity: str,
    rate_per_second: float,
    scope: str = "host",
    *,
    redis_conn_id: str = DEFAULT_REDIS_CONN_ID,
) -> RateLimiter:
    """Return the one limiter of this process for a key (``identity`` is a digest, never the key itself).

    A fractional rate such as 0.5 becomes one call per two seconds.

    :param redis_conn_id: the Redis connection of scope ``"redis"``; read (and checked) here.
    :raises LimiterConfigError: scope ``"redis"`` cannot work (provider missing, no such connection).
    """
    if rate_per_second <= 0:
        raise ValueError("rate_per_second must be positive")
    if scope not in SCOPES:
        raise ValueError(f"rate_limit_scope must be one of {sorted(SCOPES)}")
    if scope == "redis":
        return _redis_budget(identity, rate_per_second, redis_conn_id)
    return _local_limiter(identity, rate_per_second, scope)


def _local_limiter(identity: str, rate_per_second: float, scope: str) -> SlidingWindowLimiter:
    """Return the key's limiter kept in a machine-wide file (``host``) or in memory (``process``)."""
    with _registry_lock:
        key = (identity, rate_per_second, scope)
        limiter = _registry.get(key)
        if limiter is None:
            calls, period = window(rate_per_second)
            state_file = None
            if scope == "host":
                state_file = (
                    Path(tempfile.gettempdir()) / "airflow-provider-lotimage" / f"rate-{identity}.json"
                )
            limiter = SlidingWindowLimiter(calls, period, state_file=state_file)
            _registry[key] = limiter
        return limiter


def window(rate_per_second: float) -> tuple[int, float]:
    """Return ``(calls, period)`` for a rate: whole calls per window, the margin included."""
    calls = max(1, int(rate_per_second))
    return calls, calls / rate_per_second + WINDOW_MARGIN


def _redis_budget(identity: str, rate_per_second: float, redis_conn_id: str) -> RateLimiter:
    """Return the key's Redis-held budget, with this machine's (``host``) limiter as its fallback."""
    from airflow_provider_lotimage.ratelimit import redis_budget

    calls, period = window(rate_per_second)
    fallback = _local_limiter(identity, rate_per_second, "host")
    return redis_budget.budget_for(redis_conn_id, identity, calls, period, fallback)


def key_identity(base_url: str, api_key: str) -> str:
    """Return a short digest naming a (service, key) pair without revealing the key."""
    return hashlib.sha256(f"{base_url}\0{api_key}".encode()).hexdigest()[:20]
