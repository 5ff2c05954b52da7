"""One Redis connection of this process, for the rate budget or the shared durations.

The rate budget (:mod:`.redis_budget`) and the shared durations (:mod:`.redis_durations`) each
have a link of their own to a Redis connection (one script each).

The connection is read by the Redis provider's ``RedisHook``, so it means here what it means to
every other user of that provider; a sync client (``redis``) and, per event loop, an asyncio client
(``redis.asyncio``) are built from the parameters the hook read. Both use short timeouts and no
retries: a Redis that does not answer at once counts as away, its callers fall back, and Redis is
asked again every :data:`RETRY_REDIS_EVERY` seconds. The provider and ``redis`` are imported only
here, and this module only for scope ``"redis"``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from airflow_provider_lotimage.ratelimit.base import LimiterConfigError

log = logging.getLogger(__name__)

#: Seconds to wait for Redis to connect or answer before counting it as away.
REDIS_TIMEOUT = 0.5
#: While Redis is away, one caller asks it again this often (seconds); the others fall back.
RETRY_REDIS_EVERY = 5.0
#: Commands one event loop runs at once: a triggerer waking a thousand triggers must not open a
#: thousand sockets. Waiting for a turn and the command together take at most ASYNC_DEADLINE.
ASYNC_CONNECTIONS = 16
ASYNC_DEADLINE = 2.0
#: What RedisHook may set on an SSL connection, passed on to both clients.
_SSL_ARGS = ("ssl_cert_reqs", "ssl_ca_certs", "ssl_keyfile", "ssl_certfile", "ssl_check_hostname")
_FIELD = "rate_limit_redis_conn_id"


@dataclass(frozen=True)
class SharedThing:
    """What a link shares, as its log lines name it: ``name``, and what happens ``meanwhile`` it is away."""

    name: str
    meanwhile: str


RATE_BUDGET = SharedThing(
    "the LotImage budget", "each machine keeps its own LotImage rate budget (scope 'host')"
)


@dataclass
class _LoopClient:
    """The async client of one event loop (an asyncio client belongs to the loop that made it)."""

    client: Any
    script: Any
    gate: asyncio.Semaphore
    users: int = 0


class RedisLink:
    """One Redis connection in this process: its clients, and whether Redis answers.

    Shared by the budgets of every LotImage key kept in that Redis, so an outage is noticed and
    logged once per process, not once per key or call. Both clients are built from the same
    parameters, with short timeouts and no retries of their own: a slow Redis means "fall back",
    not "wait".

    :param conn_id: the Airflow Redis connection (named in logs; its password never is).
    :param params: host, port, db, username, password and SSL settings read by ``RedisHook``.
    :param script: the Lua script it runs (with ``EVALSHA``, loaded again when Redis forgot it).
    :param shares: what the link shares, for its log lines (the rate budget, by default).
    """

    def __init__(
        self, conn_id: str, params: dict[str, Any], script: str, shares: SharedThing | None = None
    ) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self.conn_id = conn_id
        self.shares = shares or RATE_BUDGET
        self._params = params
        self._source = script
        self._client = redis.Redis(**params, **_options(Retry(NoBackoff(), 0)))
        self._script = self._client.register_script(script)
        self._loops: dict[asyncio.AbstractEventLoop, _LoopClient] = {}
        self._lock = threading.Lock()
        self._retry_at: float | None = None  # time.monotonic(); None while Redis answers

    def run(self, key: str, args: list[Any]) -> Any:
        """Run the script for ``key`` (blocking, at most a few timeouts); ``None``: Redis is away."""
        if not self._may_try():
            return None
        try:
            reply = self._script(keys=[key], args=args)
        except Exception as exc:
            self._failed(exc)
            return None
        self._answered()
        return reply

    async def arun(self, key: str, args: list[Any]) -> Any:
        """Run the script with the loop's asyncio client; ``None``: Redis is away."""
        if not self._may_try():
            return None
        try:
            async with self.leased() as loop_client, asyncio.timeout(ASYNC_DEADLINE), loop_client.gate:
                reply = await loop_client.script(keys=[key], args=args)
        except Exception as exc:
            self._failed(exc)
            return None
        self._answered()
        return reply

    @contextlib.asynccontextmanager
    async def leased(self) -> AsyncIterator[_LoopClient]:
        """Lend the running loop's client, made on first use and closed when its last user leaves.

        A triggerer's long-lived loop keeps one open while triggers wait; a short-lived loop
        (``dag.test()``, tests) closes it before the loop ends, leaving no socket behind.
        """
        loop = asyncio.get_running_loop()
        loop_client = self._loops.get(loop)
        if loop_client is None:
            loop_client = self._loops[loop] = self._loop_client()
        loop_client.users += 1
        try:
            yield loop_client
        finally:
            loop_client.users -= 1
            if loop_client.users == 0 and self._loops.get(loop) is loop_client:
                del self._loops[loop]
                with contextlib.suppress(Exception):
                    await loop_client.client.aclose()

    def _loop_client(self) -> _LoopClient:
        import redis.asyncio
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        client = redis.asyncio.Redis(**self._params, **_options(Retry(NoBackoff(), 0)))
        return _LoopClient(client, client.register_script(self._source), asyncio.Semaphore(ASYNC_CONNECTIONS))

    def _may_try(self) -> bool:
        """Whether to ask Redis: always while it answers; while away, one caller per interval."""
        with self._lock:
            if self._retry_at is None:
                return True
            now = time.monotonic()
            if now < self._retry_at:
                return False
            self._retry_at = now + RETRY_REDIS_EVERY
            return True

    def _failed(self, exc: BaseException) -> None:
        with self._lock:
            first = self._retry_at is None
            self._retry_at = time.monotonic() + RETRY_REDIS_EVERY
        if first:
            log.warning(
                "Redis connection %r did not answer (%s); until it does, %s. "
                "Redis is tried again every %g s.",
                self.conn_id,
                self._describe(exc),
                self.shares.meanwhile,
                RETRY_REDIS_EVERY,
            )

    def _answered(self) -> None:
        with self._lock:
            back = self._retry_at is not None
            self._retry_at = None
        if back:
            log.info("Redis connection %r answers again: %s is shared again", self.conn_id, self.shares.name)

    def _describe(self, exc: BaseException) -> str:
        """Name a failure for the log, without the connection's password."""
        text = f"{type(exc).__name__}: {exc}"[:200]
        password = self._params.get("password")
        return text.replace(password, "***") if password else text

    def __repr__(self) -> str:
        return f"<RedisLink {self.conn_id!r}>"


def _options(no_retry: Any) -> dict[str, Any]:
    """Short timeouts and no retries: a Redis that does not answer at once counts as away."""
    return {"socket_timeout": REDIS_TIMEOUT, "socket_connect_timeout": REDIS_TIMEOUT, "retry": no_retry}


_links: dict[tuple[str, tuple[tuple[str, str], ...], str], RedisLink] = {}
_links_lock = threading.Lock()


def link_for(conn_id: str, script: str, shares: SharedThing | None = None) -> RedisLink:
    """Return this process's link to the Redis of ``conn_id``, running ``script``, sharing ``shares``.

    The connection is read every time (once per hook), so a changed connection takes effect for
    the next task; clients are made once per distinct connection.

    :raises LimiterConfigError: the provider is missing, or the connection is absent or unusable.
    """
    params = connection_params(conn_id)
    key = (conn_id, tuple(sorted((name, repr(value)) for name, value in params.items())), script)
    with _links_lock:
        link = _links.get(key)
        if link is None:
            link = _links[key] = RedisLink(conn_id, params, script, shares)
        return link


def connection_params(conn_id: str) -> dict[str, Any]:
    """Read a Redis connection with the Redis provider's ``RedisHook``: what both clients are built from.

    The hook makes a client without connecting; its parameters are taken from that client, so the
    connection means here what it means to every other user of the Redis provider.

    :raises LimiterConfigError: naming the field to fix.
    """
    hook = _redis_hook_class()(redis_conn_id=conn_id)
    import redis  # installed: the Redis provider requires it

    try:
        client = hook.get_conn()
    except Exception as exc:
        raise _unusable(conn_id, hook, exc) from None
    if hook.cluster or not isinstance(client, redis.Redis):
        raise _unusable(conn_id, hook, None)
    pool = client.connection_pool
    given = pool.connection_kwargs
    params = {name: given.get(name) for name in ("host", "port", "db", "username", "password")}
    params["port"] = params["port"] or 6379
    if issubclass(pool.connection_class, redis.SSLConnection):
        params.update({"ssl": True, **{name: given[name] for name in _SSL_ARGS if name in given}})
    return params


def _redis_hook_class() -> Any:
    """Import ``RedisHook``, telling the user how to install it when it is missing."""
    try:
        from airflow.providers.redis.hooks.redis import RedisHook
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith(("redis", "airflow.providers.redis")):
            raise
        raise LimiterConfigError(
            "rate_limit_scope",
            "scope 'redis' needs the Redis provider: pip install 'airflow-provider-lotimage[redis]'",
        ) from None
    return RedisHook


def _unusable(conn_id: str, hook: Any, exc: BaseException | None) -> LimiterConfigError:
    from airflow.providers.common.compat.sdk import AirflowNotFoundException

    if isinstance(exc, AirflowNotFoundException):
        return LimiterConfigError(
            _FIELD, f"Redis connection {conn_id!r} does not exist; create it or name another"
        )
    if getattr(hook, "cluster", False):
        return LimiterConfigError(
            _FIELD, f"Redis connection {conn_id!r} is a Redis Cluster (extra 'cluster'), which the rate "
            "budget does not support; name a single Redis server"
        )  # fmt: skip
    return LimiterConfigError(_FIELD, f"Redis connection {conn_id!r} is unusable ({type(exc).__name__})")
