"""What the client asks of a key's rate limiter: the protocol the transports and the retry loop use.

The limiters themselves (this machine's, or a budget held in Redis) are
:mod:`airflow_provider_lotimage.ratelimit`'s, which implements this protocol; the client only
paces its calls with one, so it imports no implementation.
"""

from __future__ import annotations

from typing import Protocol


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
        """Report when the call of ``slot`` really left (a late call holds the others back)."""
