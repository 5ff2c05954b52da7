"""The window arithmetic every rate limiter of a LotImage key shares, whatever its scope.

LotImage allows a key a few calls per second and answers 429 beyond that. A limiter hands out
*reservations*: each caller is given the earliest moment its call may leave and sleeps until then,
so callers never spin and never retry for a slot. What a caller asks of a limiter is the client's
:class:`~airflow_provider_lotimage.client.limiter.RateLimiter`, which the limiters here implement.
Where the reservations live is the scope's business: this machine (:mod:`.local`: a file for
``host``, memory for ``process``) or a Redis every machine reaches (:mod:`.redis_budget`);
:mod:`.registry` picks one for a connection.

Imports run one way, base ← local ← redis_budget ← registry (redis_link beside redis_budget), so
the provider works without the Redis provider installed.
"""

from __future__ import annotations

import hashlib

#: Extra room added to the one-second window, so calls spaced exactly at the limit never arrive
#: at the service closer together than it counts.
WINDOW_MARGIN = 0.2
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


def window(rate_per_second: float) -> tuple[int, float]:
    """Return ``(calls, period)`` for a rate: whole calls per window, the margin included."""
    calls = max(1, int(rate_per_second))
    return calls, calls / rate_per_second + WINDOW_MARGIN


def key_identity(base_url: str, api_key: str) -> str:
    """Return a short digest naming a (service, key) pair without revealing the key."""
    return hashlib.sha256(f"{base_url}\0{api_key}".encode()).hexdigest()[:20]


class LimiterConfigError(ValueError):
    """A rate-limit setting cannot work; ``field`` names the connection extra to fix.

    Raised while the limiter is built, before any call; :func:`.registry.limiter_of` turns it into
    a :class:`~airflow_provider_lotimage.exceptions.ConnectionConfigError` naming the connection.
    """

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(problem)
        self.field = field
        self.problem = problem
