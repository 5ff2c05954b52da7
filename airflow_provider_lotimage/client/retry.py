"""The contract's retry-safety rules and the one retry loop, for the sync and the async transport.

Reads (``task/progress``) may be resent after any transient failure. Paid calls (``imagine``,
``button``) have no idempotency key: they are resent only when the service certainly did not
receive them (connection refused, 429, 503). Any other failure of a paid call becomes an
:class:`AmbiguousSubmitError` that says how to find the task instead of paying twice.

The loop itself is tenacity's: :meth:`RetryPolicy.retrying` and :meth:`RetryPolicy.aretrying` build
``Retrying``/``AsyncRetrying`` from the same stop, wait and retry rules, so both transports retry
alike; only the body of an attempt differs. :meth:`RetryPolicy.run` and :meth:`RetryPolicy.arun`
drive them in tenacity's callable form, the one that hands back what the loop ends with when the
attempts are spent (the iterator form just stops iterating, and a read meant to be given back to a
waiting loop would be lost).

When the attempts are spent (:func:`_spent`, for both transports): a paid call and a plain read
raise the last error; a waiting loop's read (``give_back``) returns it, and the wait counts it as
"no progress", bounded by its stall and overall timeouts, so an outage longer than one loop is
waited out instead of failing the task.

The loop is also where the calls are counted
(:mod:`airflow_provider_lotimage.client.metrics`): every attempt by endpoint and outcome, each
429 and the seconds it held the key back, each paid task the service accepted, and a paid call
or a waiting read that ends the task without a picture.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

from tenacity import AsyncRetrying, RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from airflow_provider_lotimage.client import metric_names as names
from airflow_provider_lotimage.client.contract import SUBMIT_SAFE_RETRY_STATUSES
from airflow_provider_lotimage.client.limiter import RateLimiter
from airflow_provider_lotimage.client.metrics import NO_METRICS, Metrics, outcome_of, report_failure
from airflow_provider_lotimage.client.transport import Call
from airflow_provider_lotimage.exceptions import (
    AmbiguousSubmitError,
    LotImageError,
    RateLimitedError,
    ServiceUnreachableError,
    TransientError,
)

if TYPE_CHECKING:
    from concurrent.futures import Future

T = TypeVar("T")


def certainly_not_received(error: LotImageError) -> bool:
    """Return whether the service surely did not act on the request that raised ``error``."""
    if isinstance(error, ServiceUnreachableError):
        return True
    return error.status in SUBMIT_SAFE_RETRY_STATUSES or error.http_status in SUBMIT_SAFE_RETRY_STATUSES


def ambiguous(error: LotImageError, call: str) -> AmbiguousSubmitError:
    """Return the error that replaces a paid call's failure when the task may exist."""
    return AmbiguousSubmitError(
        f"The {call} call may have created a paid LotImage task ({error.message}); it was not "
        "sent again, so as not to pay twice. Before re-running, look for a task created around "
        f"{datetime.now(UTC).isoformat(timespec='seconds')} in your LotImage account (or at the "
        "webhook, if one was set) and follow it with TaskProgressSensor(lotimage_task_id=...).",
        http_status=error.http_status,
        status=error.status,
    )


class WarningLog(Protocol):
    """Where a retry is reported: any logger (stdlib or Airflow's structlog) will do."""

    def warning(self, msg: str, /, *args: Any) -> Any:
        """Log ``msg``, %-formatted with ``args``, as a warning."""


def _retryable(error: BaseException) -> bool:
    return isinstance(error, LotImageError) and error.retryable


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to wait before resending one call.

    :param max_attempts: attempts in all, the first included.
    :param base_delay: the first back-off, in seconds; it doubles with each attempt.
    :param max_delay: the longest back-off, in seconds (a ``Retry-After`` may ask for longer).
    """

    max_attempts: int = 6
    base_delay: float = 1.0
    max_delay: float = 30.0

    @contextlib.contextmanager
    def judged(self, call: Call[Any], metrics: Metrics = NO_METRICS) -> Iterator[None]:
        """Let an attempt's error through, unless it is a paid call's that cannot be resent safely.

        Counts the attempt by its outcome (a 429 also as such), and a paid call's success as one
        paid task of its kind.

        :raises AmbiguousSubmitError: a paid call failed in a way that may have created the task.
        """
        endpoint = {names.TAG_ENDPOINT: call.name}
        try:
            yield
        except LotImageError as error:
            outcome = outcome_of(error)
            metrics.incr(names.API_CALLS, tags={**endpoint, names.TAG_OUTCOME: outcome})
            if outcome == names.OUTCOME_RATE_LIMITED:
                metrics.incr(names.API_RATE_LIMITED, tags=endpoint)
            if call.paid and error.retryable and not certainly_not_received(error):
                raise ambiguous(error, call.name) from error
            raise
        metrics.incr(names.API_CALLS, tags={**endpoint, names.TAG_OUTCOME: names.OUTCOME_OK})
        if call.paid:
            metrics.incr(names.PAID_TASKS, tags={names.TAG_KIND: call.kind or names.KIND_UNKNOWN})

    def delay(self, error: BaseException | None, attempt: int) -> float:
        """Return the seconds to wait after failed attempt ``attempt``.

        A 429's ``Retry-After`` wins; otherwise exponential back-off with jitter, so callers that
        failed together do not come back together.
        """
        if isinstance(error, RateLimitedError) and error.retry_after is not None:
            return error.retry_after + random.uniform(0.0, 0.25)
        backoff = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return backoff * random.uniform(0.5, 1.0)

    def run(
        self,
        call: Call[Any],
        limiter: RateLimiter,
        log: WarningLog,
        attempt: Callable[[], T],
        *,
        give_back: bool = False,
        metrics: Metrics = NO_METRICS,
    ) -> T | TransientError:
        """Make ``attempt`` (one send of ``call``) until it succeeds or the policy says stop.

        :param give_back: a waiting loop's read: once the attempts are spent, return the last
            error instead of raising it (see :func:`_spent`). Never for a paid call.
        :param metrics: where the attempts are counted (see the module doc).
        :raises AmbiguousSubmitError: a paid call failed in a way that may have created the task.
        :raises LotImageError: an error that is not retried, or the last one when not given back.
        """

        def judged_attempt() -> T:
            with self.judged(call, metrics):
                return attempt()

        with _task_ending(call, metrics, give_back=give_back):
            return self.retrying(call, limiter, log, give_back=give_back, metrics=metrics)(judged_attempt)

    async def arun(
        self,
        call: Call[Any],
        limiter: RateLimiter,
        log: WarningLog,
        attempt: Callable[[], Awaitable[T]],
        *,
        give_back: bool = False,
        metrics: Metrics = NO_METRICS,
    ) -> T | TransientError:
        """Async :meth:`run`: the same rules, the limiter awaited, ``attempt`` awaited."""

        async def judged_attempt() -> T:
            with self.judged(call, metrics):
                return await attempt()

        loop = self.aretrying(call, limiter, log, give_back=give_back, metrics=metrics)
        with _task_ending(call, metrics, give_back=give_back):
            return cast("T | TransientError", await loop(judged_attempt))

    def retrying(
        self,
        call: Call[Any],
        limiter: RateLimiter,
        log: WarningLog,
        *,
        give_back: bool = False,
        metrics: Metrics = NO_METRICS,
    ) -> Retrying:
        """Return tenacity's loop for one sync call (see :meth:`rules`).

        Call it with the attempt, as :meth:`run` does: iterated, a spent loop that gives back its
        last error just stops, and the error is lost.
        """

        def before_sleep(state: RetryCallState) -> None:
            if seconds := _announce(state, call, log, metrics):
                limiter.block_for(seconds)

        return Retrying(**self.rules(call, log, give_back=give_back), before_sleep=before_sleep)

    def aretrying(
        self,
        call: Call[Any],
        limiter: RateLimiter,
        log: WarningLog,
        *,
        give_back: bool = False,
        metrics: Metrics = NO_METRICS,
    ) -> AsyncRetrying:
        """Return tenacity's loop for one async call, the limiter awaited; call it as :meth:`arun` does."""

        async def before_sleep(state: RetryCallState) -> None:
            if seconds := _announce(state, call, log, metrics):
                await limiter.ablock_for(seconds)

        return AsyncRetrying(**self.rules(call, log, give_back=give_back), before_sleep=before_sleep)

    def rules(self, call: Call[Any], log: WarningLog, *, give_back: bool = False) -> dict[str, Any]:
        """Retry what is retryable, at most ``max_attempts`` times, then end as :func:`_spent` says.

        Before each sleep the retry is logged, and a 429 holds the key's limiter back for
        everybody, not just this caller (the loops add that step, sync or async).

        :param give_back: return the last error instead of raising it once the attempts are spent.
            Waiting loops count such a read failure as "no progress" (their stall and overall
            timeouts bound it); errors that are not retryable are raised all the same.
        :raises ValueError: ``give_back`` for a paid call, whose caller must learn that it failed.
        """
        if give_back and call.paid:
            raise ValueError(f"a paid call ({call.name}) is never given back: its failure must be raised")

        def wait(state: RetryCallState) -> float:
            return self.delay(state.outcome.exception() if state.outcome else None, state.attempt_number)

        def spent(state: RetryCallState) -> TransientError:
            return _spent(state, call, log, give_back=give_back)

        return {
            "retry": retry_if_exception(_retryable),
            "stop": stop_after_attempt(self.max_attempts),
            "wait": wait,
            "retry_error_callback": spent,
        }


def _announce(state: RetryCallState, call: Call[Any], log: WarningLog, metrics: Metrics) -> float:
    """Log the coming retry; return how long to hold the key back (0 unless the service said 429).

    The seconds a 429 holds the key back are counted here, where they are decided.
    """
    error = state.outcome.exception() if state.outcome else None
    seconds = state.next_action.sleep if state.next_action else 0.0
    log.warning("LotImage %s failed (%s); retrying in %.1f s", call.name, error, seconds)
    if not isinstance(error, RateLimitedError):
        return 0.0
    metrics.timing(names.API_HELD_BACK_SECONDS, seconds, tags={names.TAG_ENDPOINT: call.name})
    return seconds


@contextlib.contextmanager
def _task_ending(call: Call[Any], metrics: Metrics, *, give_back: bool) -> Iterator[None]:
    """Count a task that a paid call's or a waiting read's error ends without a picture.

    Only those two: a paid call's error means no task to wait for (or one not to be paid twice),
    a waiting read's error (one not given back) ends the wait. Other reads report nothing here.
    """
    try:
        yield
    except LotImageError as error:
        if call.paid or give_back:
            report_failure(metrics, error)
        raise


def _spent(state: RetryCallState, call: Call[Any], log: WarningLog, *, give_back: bool) -> TransientError:
    """End a loop whose attempts are all spent: the one place that decides it, sync or async.

    Every attempt failed with a retryable error. A waiting loop's read gets the last one back
    (logged, since no exception will say it); anything else raises it, a paid call included, which
    is only ever resent after answers that prove nothing was created.
    """
    outcome = cast("Future[Any]", state.outcome)  # tenacity stops only after a failed attempt
    error = outcome.exception()
    if give_back and isinstance(error, TransientError):
        log.warning(
            "LotImage %s failed %d times in a row (%s); the wait counts it as no progress and goes on",
            call.name,
            state.attempt_number,
            error,
        )
        return error
    return cast("TransientError", outcome.result())  # raises the last error
