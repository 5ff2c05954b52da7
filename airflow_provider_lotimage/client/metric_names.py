"""Every metric this provider emits, and the tags and tag values each may carry: the one list.

``docs/metrics.md`` documents each name here (a test keeps the two equal). Tags are low-cardinality
by design: an endpoint, an outcome, a kind, a reason, a storage scheme. Never a prompt, a taskId, a
URL or the key: a metrics backend is read by more people than the task logs, and keeps a series per
tag value.
"""

from __future__ import annotations

PREFIX = "lotimage."

#: Counter, one per HTTP attempt of a call; tags ``endpoint``, ``outcome``.
API_CALLS = PREFIX + "api.calls"
#: Counter, one per 429 answer; tag ``endpoint``.
API_RATE_LIMITED = PREFIX + "api.rate_limited"
#: Timing, the seconds a 429's ``Retry-After`` (or the back-off) held the key back; tag ``endpoint``.
API_HELD_BACK_SECONDS = PREFIX + "api.held_back_seconds"
#: Timing, the seconds a call waited for the key's rate limiter before it was sent; tag ``endpoint``.
LIMITER_WAIT = PREFIX + "limiter.wait"
#: Counter, one per paid task the service accepted (what the key pays for); tag ``kind``.
PAID_TASKS = PREFIX + "paid_tasks"
#: Timing, the seconds from the start of a wait to the task seen finished; tag ``kind``.
TASK_DURATION = PREFIX + "task.duration"
#: Counter, one per paid call or wait that ended without a picture; tag ``reason``.
TASK_FAILED = PREFIX + "task.failed"
#: Counter, one per picture stored (picture and sidecar written); tag ``storage``.
PICTURES_STORED = PREFIX + "pictures.stored"
#: Counter, the bytes of the pictures stored; tag ``storage``.
PICTURES_BYTES = PREFIX + "pictures.bytes"

#: Every name above, for the documentation test and the adapter's check.
ALL_NAMES: frozenset[str] = frozenset(
    {
        API_CALLS,
        API_RATE_LIMITED,
        API_HELD_BACK_SECONDS,
        LIMITER_WAIT,
        PAID_TASKS,
        TASK_DURATION,
        TASK_FAILED,
        PICTURES_STORED,
        PICTURES_BYTES,
    }
)

# -- tags and their values ------------------------------------------------------------------------

TAG_ENDPOINT = "endpoint"
TAG_OUTCOME = "outcome"
TAG_KIND = "kind"
TAG_REASON = "reason"
TAG_STORAGE = "storage"

#: ``outcome`` of one attempt: answered with success, a 4xx (429 apart), a 5xx, a 429, no
#: connection (refused, proxy, TLS), or no answer in time or a connection broken mid-answer.
OUTCOME_OK = "ok"
OUTCOME_HTTP_4XX = "http_4xx"
OUTCOME_HTTP_5XX = "http_5xx"
OUTCOME_RATE_LIMITED = "429"
OUTCOME_CONNECTION = "connection"
OUTCOME_TIMEOUT = "timeout"
OUTCOMES = (
    OUTCOME_OK,
    OUTCOME_HTTP_4XX,
    OUTCOME_HTTP_5XX,
    OUTCOME_RATE_LIMITED,
    OUTCOME_CONNECTION,
    OUTCOME_TIMEOUT,
)

#: ``kind`` of an unknown task (a sensor following a taskId it did not submit).
KIND_UNKNOWN = "unknown"

#: ``reason`` a task ended without a picture: the service failed the task, or banned its prompt;
#: no progress for the stall timeout; not done within the wait's timeout; the key's daily quota
#: spent; the service refused the paid call for another reason; the service does not know the
#: task; anything else that stopped the wait or the paid call.
REASON_FAILED = "failed"
REASON_BANNED = "banned"
REASON_REJECTED = "rejected"
REASON_STALLED = "stalled"
REASON_TIMEOUT = "timeout"
REASON_QUOTA = "quota"
REASON_NOT_FOUND = "not_found"
REASON_ERROR = "error"
REASONS = (
    REASON_FAILED,
    REASON_BANNED,
    REASON_STALLED,
    REASON_TIMEOUT,
    REASON_QUOTA,
    REASON_REJECTED,
    REASON_NOT_FOUND,
    REASON_ERROR,
)
