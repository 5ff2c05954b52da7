"""Waking the triggers of one event loop when the route has recorded their delivery.

A triggerer runs its triggers on one event loop; each waiting trigger asks :meth:`wait` to sleep
until its next scheduled read *or* until a delivery newer than the last one it acted on shows up.
One poller per loop and Redis connection looks for all of them with a single ``MGET`` every
:data:`LISTEN_EVERY` seconds, so a thousand waiting triggers cost Redis two commands a second,
and a trigger moved to another triggerer finds a delivery recorded before it got there (the
record is durable, not a message that is gone once published).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from dataclasses import dataclass, field

from airflow_provider_lotimage.client.webhook import Delivery
from airflow_provider_lotimage.webhooks.redis_store import WebhookStore

log = logging.getLogger(__name__)

#: Seconds between two looks for deliveries: a delivery is acted on within about this long.
LISTEN_EVERY = 0.5


@dataclass
class _Waiter:
    after: float
    future: asyncio.Future[Delivery]


@dataclass
class DeliveryListener:
    """The poller of one event loop and one store, and the triggers waiting on it."""

    store: WebhookStore
    waiting: dict[str, list[_Waiter]] = field(default_factory=dict)
    poller: asyncio.Task[None] | None = None
    failing: bool = False

    async def wait(self, key: str, timeout: float, *, after: float = 0.0) -> Delivery | None:
        """Sleep up to ``timeout`` s; return the token's delivery if one newer than ``after`` comes."""
        waiter = _Waiter(after, asyncio.get_running_loop().create_future())
        self.waiting.setdefault(key, []).append(waiter)
        if self.poller is None or self.poller.done():
            self.poller = asyncio.get_running_loop().create_task(self._poll())
        try:
            return await asyncio.wait_for(waiter.future, max(0.0, timeout))
        except TimeoutError:
            return None
        finally:
            waiters = self.waiting.get(key, [])
            if waiter in waiters:
                waiters.remove(waiter)
            if not waiters:
                self.waiting.pop(key, None)

    async def _poll(self) -> None:
        """Look for the waiting tokens' deliveries until nobody waits."""
        async with self.store.connected() as client:
            while self.waiting:
                try:
                    found = await self.store.delivered(client, list(self.waiting))
                except Exception as exc:
                    self._failed(exc)
                    found = {}
                else:
                    self.failing = False
                for key, delivery in found.items():
                    for waiter in self.waiting.get(key, []):
                        if delivery.received_at > waiter.after and not waiter.future.done():
                            waiter.future.set_result(delivery)
                await asyncio.sleep(LISTEN_EVERY)

    def _failed(self, exc: BaseException) -> None:
        if not self.failing:
            log.warning(
                "Webhook completion: Redis connection %r did not answer (%s); polling goes on",
                self.store.conn_id,
                type(exc).__name__,
            )
        self.failing = True


_listeners: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, DeliveryListener]] = (
    weakref.WeakKeyDictionary()
)


def listener_for(store: WebhookStore) -> DeliveryListener:
    """Return the running loop's listener on ``store`` (one per loop: a client belongs to its loop)."""
    per_loop = _listeners.setdefault(asyncio.get_running_loop(), {})
    listener = per_loop.get(store.conn_id)
    if listener is None or listener.store is not store:
        listener = per_loop[store.conn_id] = DeliveryListener(store)
    return listener
