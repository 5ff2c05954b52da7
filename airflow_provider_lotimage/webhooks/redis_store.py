"""Where webhook completion keeps its registrations and deliveries: one Redis, seen cluster-wide.

Why Redis rather than Airflow's own API or database: a delivery must reach whichever triggerer on
whichever machine holds the waiting trigger within about a second, and the route that records it
is public (the service cannot authenticate), so a flood of wrong tokens must not load the
metadata database. Every triggerer already reaches Redis for the shared rate budget; a wrong
token costs one ``GET`` of a key that does not exist, and a thousand waiting triggers of one
triggerer cost one ``MGET`` every :data:`~.listener.LISTEN_EVERY` seconds.

Two keys per paid task, named by the token's SHA-256 (never the token):

* ``lotimage:webhook:<key>``: the registration, written by the worker before the paid call: the
  task instance it belongs to and, once known, the LotImage ``taskId``; it expires with the wait.
* ``lotimage:webhook:<key>:delivered``: the last delivery the route accepted (:class:`Delivery`).

Both are deleted when the wait ends, so the URL is useless afterwards. Redis is used with short
timeouts: a Redis that does not answer means "no webhook" (polling goes on), never a failed task.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from typing import Any

from airflow_provider_lotimage.client.webhook import Delivery

log = logging.getLogger(__name__)

KEY_PREFIX = "lotimage:webhook:"
#: Seconds to wait for Redis to connect or answer: a slow Redis means "no webhook", not "wait".
REDIS_TIMEOUT = 0.5
#: Seconds a delivery record outlives its registration at most (a wait that ends deletes both).
DELIVERY_TTL = 3600


def registration_key(key: str) -> str:
    """Return the Redis key of a token's registration."""
    return f"{KEY_PREFIX}{key}"


def delivery_key(key: str) -> str:
    """Return the Redis key of a token's last accepted delivery."""
    return f"{KEY_PREFIX}{key}:delivered"


@dataclass(frozen=True)
class Registration:
    """Who a webhook token belongs to: a task instance and, once submitted, its LotImage task."""

    dag_id: str
    task_id: str
    run_id: str
    map_index: int
    lotimage_task_id: str | None = None

    def to_json(self) -> str:
        """Return the stored form."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes | None) -> Registration | None:
        """Rebuild a stored registration; ``None`` for nothing or anything malformed."""
        if not text:
            return None
        try:
            return cls(**json.loads(text))
        except (ValueError, TypeError):
            return None


class WebhookStore:
    """The registrations and deliveries of one Redis connection (see the module doc).

    :param conn_id: the Airflow Redis connection (named in logs; its password never is).
    :param params: host, port, db, username, password and SSL settings read by ``RedisHook``.
    """

    def __init__(self, conn_id: str, params: dict[str, Any]) -> None:
        import redis

        self.conn_id = conn_id
        self._params = {**params, "socket_timeout": REDIS_TIMEOUT, "socket_connect_timeout": REDIS_TIMEOUT}
        self._client = redis.Redis(**self._params)

    # -- the worker: before and after the paid call, and when the wait ends ------------------------
    def register(self, key: str, owner: Registration, ttl: float) -> bool:
        """Record a new token's owner for ``ttl`` seconds; False if Redis did not take it."""
        stored = self._safely(
            self._client.set, registration_key(key), owner.to_json(), ex=max(1, int(ttl)), nx=True
        )
        return bool(stored)

    def bind(self, key: str, lotimage_task_id: str) -> None:
        """Add the LotImage task the paid call made: deliveries naming another task are refused."""
        owner = Registration.from_json(self._safely(self._client.get, registration_key(key)))
        if owner is not None:
            bound = Registration(**{**asdict(owner), "lotimage_task_id": lotimage_task_id})
            self._safely(self._client.set, registration_key(key), bound.to_json(), keepttl=True, xx=True)

    def forget(self, key: str) -> None:
        """Delete the token's registration and delivery: its URL answers 404 from now on."""
        self._safely(self._client.delete, registration_key(key), delivery_key(key))

    # -- the route and the triggers: asynchronous, on the caller's event loop ----------------------
    @contextlib.asynccontextmanager
    async def connected(self) -> AsyncIterator[Any]:
        """Lend an asyncio client for the running loop, closed when the block ends."""
        import redis.asyncio

        client = redis.asyncio.Redis(**self._params)
        try:
            yield client
        finally:
            with contextlib.suppress(Exception):
                await client.aclose()

    async def registration(self, client: Any, key: str) -> Registration | None:
        """Return the token's registration (``None``: unknown, expired, or forgotten)."""
        return Registration.from_json(await client.get(registration_key(key)))

    async def record(self, client: Any, key: str, delivery: Delivery) -> None:
        """Keep ``delivery`` as the token's last one, for no longer than its registration lives."""
        ttl = await client.ttl(registration_key(key))
        await client.set(delivery_key(key), delivery.to_json(), ex=min(DELIVERY_TTL, max(1, int(ttl))))

    async def delivered(self, client: Any, keys: list[str]) -> dict[str, Delivery]:
        """Return the last delivery of each of ``keys`` that has one, with one ``MGET``."""
        answers = await client.mget([delivery_key(key) for key in keys])
        found = {key: Delivery.from_json(answer) for key, answer in zip(keys, answers, strict=True)}
        return {key: delivery for key, delivery in found.items() if delivery is not None}

    async def aforget(self, key: str) -> None:
        """:meth:`forget` from an event loop (best effort)."""
        with contextlib.suppress(Exception):
            async with self.connected() as client:
                await client.delete(registration_key(key), delivery_key(key))

    def _safely(self, call: Any, *args: Any, **kwargs: Any) -> Any:
        """Run one command; on any Redis failure log it (without the password) and return None."""
        try:
            return call(*args, **kwargs)
        except Exception as exc:
            text = f"{type(exc).__name__}: {exc}"[:200]
            password = self._params.get("password")
            log.warning(
                "Webhook completion: Redis connection %r did not answer (%s); polling goes on",
                self.conn_id,
                text.replace(password, "***") if password else text,
            )
            return None


_stores: dict[tuple[str, str], WebhookStore] = {}
_stores_lock = threading.Lock()


def store_for(conn_id: str) -> WebhookStore:
    """Return this process's store of the Redis connection ``conn_id`` (read by ``RedisHook``).

    :raises LimiterConfigError: the Redis provider is missing, or the connection is unusable.
    """
    from airflow_provider_lotimage.ratelimit.redis_link import connection_params

    params = connection_params(conn_id)
    signature = (conn_id, repr(sorted(params.items())))
    with _stores_lock:
        store = _stores.get(signature)
        if store is None:
            store = _stores[signature] = WebhookStore(conn_id, params)
        return store


async def astore_for(conn_id: str) -> WebhookStore:
    """:func:`store_for` from an event loop (as the hook reads its connection in a triggerer)."""
    from asgiref.sync import sync_to_async

    return await sync_to_async(store_for)(conn_id)
