"""Which limiter, and which durations book, a LotImage connection gets: one per key and scope.

The hook asks here (:func:`limiter_of`) once it has read its connection, and keeps the answer; a
picture download, which needs neither the key nor its budget, never does. Scope ``"redis"`` imports
:mod:`.redis_budget` (and so the Redis provider) only when a connection asks for it.
"""

from __future__ import annotations

from airflow_provider_lotimage.client.durations import DurationBook, book_for
from airflow_provider_lotimage.client.limiter import RateLimiter
from airflow_provider_lotimage.client.settings import DEFAULT_REDIS_CONN_ID, SCOPES, ConnectionSettings
from airflow_provider_lotimage.exceptions import ConnectionConfigError
from airflow_provider_lotimage.ratelimit.base import LimiterConfigError, key_identity, window
from airflow_provider_lotimage.ratelimit.local import local_limiter


def limiter_of(settings: ConnectionSettings) -> RateLimiter:
    """Return the limiter of a connection's (service, key) pair, shared within its scope.

    For scope ``redis`` this reads the Redis connection (blocking: the async path calls it in a
    worker thread).

    :raises ConnectionConfigError: the limiter cannot work (e.g. no such Redis connection), naming
        the connection and the extra to fix.
    """
    try:
        return limiter_for(
            key_identity(settings.base_url, settings.api_key),
            settings.rate_limit,
            settings.rate_limit_scope,
            redis_conn_id=settings.rate_limit_redis_conn_id,
        )
    except LimiterConfigError as exc:
        raise ConnectionConfigError.of_extra(settings.conn_id, exc.field, exc.problem) from None


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
    if scope != "redis":
        return local_limiter(identity, rate_per_second, scope)
    from airflow_provider_lotimage.ratelimit import redis_budget

    calls, period = window(rate_per_second)
    fallback = local_limiter(identity, rate_per_second, "host")
    return redis_budget.budget_for(redis_conn_id, identity, calls, period, fallback)


def durations_of(settings: ConnectionSettings) -> DurationBook:
    """Return the durations book of a connection's (service, key) pair in this process.

    For scope ``redis`` the book's observations are shared through the rate budget's Redis
    (:mod:`.redis_durations`; this reads the Redis connection, blocking). A Redis connection that
    cannot work leaves the book to this process: learning durations is never a reason to fail.
    """
    identity = key_identity(settings.base_url, settings.api_key)
    if settings.rate_limit_scope != "redis":
        return book_for(identity)
    from airflow_provider_lotimage.ratelimit import redis_durations

    conn_id = settings.rate_limit_redis_conn_id
    try:
        shared = redis_durations.shared_durations(conn_id, identity)
    except LimiterConfigError:
        return book_for(identity)
    return book_for(identity, f"redis:{conn_id}", lambda: shared)
