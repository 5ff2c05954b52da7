"""The contract's retry-safety rules, in one place for the sync and the async hook.

Reads (``task/progress``) may be resent after any transient failure. Paid calls (``imagine``,
``button``) have no idempotency key: they are resent only when the service certainly did not
receive them (connection refused, 429, 503). Any other failure of a paid call becomes an
:class:`AmbiguousSubmitError` that says how to find the task instead of paying twice.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime

from airflow_provider_lotimage.api import SUBMIT_SAFE_RETRY_STATUSES
from airflow_provider_lotimage.exceptions import (
    AmbiguousSubmitError,
    LotImageError,
    RateLimitedError,
    ServiceUnreachableError,
)


def certainly_not_received(error: LotImageError) -> bool:
    """Whether the service surely did not act on the request that raised ``error``."""
    if isinstance(error, ServiceUnreachableError):
        return True
    return error.status in SUBMIT_SAFE_RETRY_STATUSES or error.http_status in SUBMIT_SAFE_RETRY_STATUSES


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to wait before resending one call."""

    max_attempts: int = 6
    base_delay: float = 1.0
    max_delay: float = 30.0

    def next_delay(self, error: LotImageError, attempt: int, *, paid: bool, call: str) -> float:
        """Seconds to wait before attempt ``attempt + 1``; raises when the call must not be resent."""
        if paid and error.retryable and not certainly_not_received(error):
            raise AmbiguousSubmitError(
                f"The {call} call may have created a paid LotImage task ({error.message}); it was not "
                "sent again, so as not to pay twice. Before re-running, look for a task created around "
                f"{datetime.now(UTC).isoformat(timespec='seconds')} in your LotImage account (or at the "
                "webhook, if one was set) and follow it with TaskProgressSensor(lotimage_task_id=...).",
                http_status=error.http_status,
                status=error.status,
            ) from error
        if not error.retryable or attempt >= self.max_attempts:
            raise error
        if isinstance(error, RateLimitedError) and error.retry_after is not None:
            return error.retry_after + random.uniform(0.0, 0.25)
        backoff = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return backoff * random.uniform(0.5, 1.0)
