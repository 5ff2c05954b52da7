"""What the client reports about its calls and waits, and to what: the :class:`Metrics` protocol.

The client runs without Airflow, so it only names what happened (:mod:`.metric_names`) and hands it
to a :class:`Metrics`; the default, :data:`NO_METRICS`, drops it. The hook passes Airflow's
(``utils.metrics.AirflowMetrics``), which forwards to Airflow's ``Stats`` (StatsD or OpenTelemetry).

Where each figure is taken, once: every attempt of a call, its outcome, its 429 and what the 429
held back in the one retry loop (:mod:`.retry`, both transports); the limiter's wait in
:func:`paced`/:func:`apaced`, around the limiter call of each attempt; a wait's end in
:meth:`.progress.ProgressWatch.step`, which the sensor's poke, the hook's blocking wait and the
trigger share. A task that ends without a picture is counted where its end is seen: the service's
verdict (failed, banned, quota...) by the retry loop that read it, the watch's own (stalled, timed
out) by the watch.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

from airflow_provider_lotimage.client import metric_names as names
from airflow_provider_lotimage.exceptions import (
    InvalidRequestError,
    LotImageError,
    ProxyError,
    QuotaExhaustedError,
    RateLimitedError,
    ReadTimeoutError,
    ServiceUnreachableError,
    TaskFailedError,
    TaskNotFoundError,
    TaskStalledError,
    TaskTimeoutError,
    TLSError,
)

if TYPE_CHECKING:
    from airflow_provider_lotimage.client.limiter import RateLimiter

Tags = Mapping[str, str]


class Metrics(Protocol):
    """Where the client's figures go; every tag is one of :mod:`.metric_names`' few values."""

    def incr(self, name: str, count: int = 1, *, tags: Tags | None = None) -> None:
        """Add ``count`` to the counter ``name``."""

    def timing(self, name: str, seconds: float, *, tags: Tags | None = None) -> None:
        """Record a duration of ``seconds``."""

    def gauge(self, name: str, value: float, *, tags: Tags | None = None) -> None:
        """Set the gauge ``name`` to ``value``."""


class NoMetrics:
    """Drops every figure: the client's default, so code without Airflow reports nothing."""

    def incr(self, name: str, count: int = 1, *, tags: Tags | None = None) -> None:
        """Drop it."""

    def timing(self, name: str, seconds: float, *, tags: Tags | None = None) -> None:
        """Drop it."""

    def gauge(self, name: str, value: float, *, tags: Tags | None = None) -> None:
        """Drop it."""


NO_METRICS: Metrics = NoMetrics()


def outcome_of(error: BaseException | None) -> str:
    """Return the ``outcome`` tag of an attempt that ended with ``error`` (``None``: answered).

    The status the service gave wins (the body's over the HTTP one, as the parser reads them); a
    task the service reports failed was still an answered call. Without a status: no connection
    (refused, proxy, TLS, a request never built) or no answer in time.
    """
    if error is None or isinstance(error, TaskFailedError):
        return names.OUTCOME_OK
    if isinstance(error, RateLimitedError):
        return names.OUTCOME_RATE_LIMITED
    if isinstance(error, LotImageError):
        status = error.status if error.status not in (None, 200) else error.http_status
        if status == 429:
            return names.OUTCOME_RATE_LIMITED
        if status is not None and 400 <= status < 500:
            return names.OUTCOME_HTTP_4XX
        if status is not None:
            return names.OUTCOME_HTTP_5XX  # a 5xx, or an answer that could not be read
        if isinstance(error, ServiceUnreachableError | ProxyError | TLSError):
            return names.OUTCOME_CONNECTION
    if isinstance(error, ReadTimeoutError | TimeoutError):
        return names.OUTCOME_TIMEOUT
    return names.OUTCOME_CONNECTION


def reason_of(error: LotImageError) -> str:
    """Return the ``reason`` tag of a task that ended without a picture because of ``error``."""
    if isinstance(error, TaskStalledError):
        return names.REASON_STALLED
    if isinstance(error, TaskTimeoutError):
        return names.REASON_TIMEOUT
    if isinstance(error, QuotaExhaustedError):
        return names.REASON_QUOTA
    if isinstance(error, TaskNotFoundError):
        return names.REASON_NOT_FOUND
    if isinstance(error, TaskFailedError | InvalidRequestError):
        if "banned" in error.message.lower():
            return names.REASON_BANNED
        return names.REASON_FAILED if isinstance(error, TaskFailedError) else names.REASON_REJECTED
    return names.REASON_ERROR


def report_failure(metrics: Metrics, error: LotImageError) -> None:
    """Count a task that ended without a picture, by :func:`reason_of`."""
    metrics.incr(names.TASK_FAILED, tags={names.TAG_REASON: reason_of(error)})


def paced(limiter: RateLimiter, metrics: Metrics, endpoint: str) -> float:
    """Wait for the key's limiter (as ``limiter.acquire``), timing the wait; return the slot."""
    started = time.monotonic()
    slot = limiter.acquire()
    metrics.timing(names.LIMITER_WAIT, time.monotonic() - started, tags={names.TAG_ENDPOINT: endpoint})
    return slot


async def apaced(limiter: RateLimiter, metrics: Metrics, endpoint: str) -> float:
    """:func:`paced` without blocking the event loop."""
    started = time.monotonic()
    slot = await limiter.acquire_async()
    metrics.timing(names.LIMITER_WAIT, time.monotonic() - started, tags={names.TAG_ENDPOINT: endpoint})
    return slot
