"""The LotImage API contract in code: paths, button labels, limits and the one response parser.

Everything that reads a LotImage response goes through :func:`parse_submit` or
:func:`parse_progress`, so the sync hook, the async hook, the sensor and the trigger agree on what
"done", "failed" and "keep waiting" mean. This module imports nothing of Airflow: the emulator and
the parser's fuzz tests use it without an Airflow installation being configured.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any

from airflow_provider_lotimage.client.results import LotImageResult
from airflow_provider_lotimage.exceptions import (
    AuthError,
    InvalidRequestError,
    LotImageError,
    MalformedResponseError,
    QuotaExhaustedError,
    RateLimitedError,
    TaskFailedError,
    TaskNotFoundError,
    TransientError,
)

DEFAULT_BASE_URL = "https://api.lotimage.com"
IMAGINE_PATH = "/midjourney/v1/imagine"
PROGRESS_PATH = "/midjourney/v1/task/progress"
BUTTON_PATH = "/midjourney/v1/button"

#: Documented trial rate: three calls a second per key.
DEFAULT_RATE_LIMIT_PER_SECOND = 3.0
#: Our chosen bound on prompt length (Midjourney itself rejects very long prompts; the vendor is
#: silent). Checked before any call so a bad prompt never spends the budget.
MAX_PROMPT_LENGTH = 4000

UPSCALE_BUTTONS: tuple[str, ...] = ("U1", "U2", "U3", "U4")
VARIATION_BUTTONS: tuple[str, ...] = ("V1", "V2", "V3", "V4")
REROLL_BUTTON = "\U0001f504"
ZOOM_BUTTONS: tuple[str, ...] = ("Zoom Out 2x", "Zoom Out 1.5x")
VARY_BUTTONS: tuple[str, ...] = ("Vary (Strong)", "Vary (Subtle)")
#: The buttons of a finished 2x2 grid, in the service's order.
GRID_BUTTONS: tuple[str, ...] = (
    *UPSCALE_BUTTONS,
    REROLL_BUTTON,
    *VARIATION_BUTTONS,
    *ZOOM_BUTTONS,
    *VARY_BUTTONS,
)
#: The buttons of a finished upscale (a single picture).
UPSCALED_BUTTONS: tuple[str, ...] = (*VARY_BUTTONS, *ZOOM_BUTTONS)
ALL_BUTTONS: frozenset[str] = frozenset(GRID_BUTTONS)

#: Body ``status`` values (and HTTP statuses) that mean "try again later".
TRANSIENT_STATUSES = frozenset({500, 502, 503, 504})
#: Answers after which a paid call (imagine, button) certainly did not create a task.
SUBMIT_SAFE_RETRY_STATUSES = frozenset({429, 503})

_PERCENT = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*%?\s*$")

#: When a spent daily quota comes back. LotImage's 403 says only "Daily request limit reached" (no
#: time, no header), and its documentation says "10 calls a day"; the contract reads that as a UTC
#: day, so the quota is taken to reset at midnight UTC.
QUOTA_RESETS_AT = "00:00 UTC"


@dataclass(frozen=True)
class TaskProgress:
    """One normalised ``task/progress`` answer."""

    task_id: str
    progress: int
    image_url: str | None = None
    image_urls: tuple[str, ...] = ()
    prompt: str | None = None
    buttons: tuple[str, ...] = ()
    created_at: str | None = None
    originating_task_id: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def is_finished(self) -> bool:
        """Finished means 100 % and a picture: a preview URL below 100 % is not a result."""
        return self.progress >= 100 and bool(self.image_url)

    def to_result(self) -> LotImageResult:
        """Return the JSON-serialisable dict that sensors and operators push to XCom."""
        return {
            "lotimage_task_id": self.task_id,
            "prompt": self.prompt,
            "image_url": self.image_url,
            "image_urls": list(self.image_urls),
            "progress": self.progress,
            "buttons": list(self.buttons),
            "created_at": self.created_at,
            "originating_task_id": self.originating_task_id,
        }


def normalise_progress(value: Any) -> int:
    """Turn ``45``, ``45.7``, ``"45%"`` or ``"45"`` into an int in 0..100; reject anything else."""
    if isinstance(value, bool):
        raise MalformedResponseError(f"progress is not a number: {value!r}")
    number: float
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str) and (match := _PERCENT.match(value)):
        number = float(match.group(1))
    elif value is None or value == "":
        return 0
    else:
        raise MalformedResponseError(f"progress is not a number: {value!r}")
    if math.isnan(number) or math.isinf(number):
        raise MalformedResponseError(f"progress is not a number: {value!r}")
    return max(0, min(100, int(number)))


def decode_body(http_status: int, text: str | bytes) -> dict[str, Any]:
    """Decode a response body, mapping unreadable bodies to the right exception.

    A body that is not a JSON object is transient on a 5xx answer (a proxy page), and otherwise a
    malformed answer; both are :class:`~airflow_provider_lotimage.exceptions.TransientError`.
    """
    try:
        body = json.loads(text) if text else None
    except (ValueError, UnicodeDecodeError):
        body = None
    if isinstance(body, dict):
        return body
    if http_status == 429:
        raise RateLimitedError("Too many requests", http_status=http_status, status=429)
    if http_status >= 500:
        raise TransientError(
            f"LotImage answered HTTP {http_status} without a JSON body", http_status=http_status
        )
    raise MalformedResponseError(
        f"LotImage answered HTTP {http_status} with a body that is not a JSON object"
    )


def _body_status(body: Mapping[str, Any]) -> int | None:
    status = body.get("status")
    if status is None or isinstance(status, bool):
        return None
    try:
        return int(status)
    except (TypeError, ValueError):
        return None


def _err_message(body: Mapping[str, Any]) -> str:
    message = body.get("errMessage") or body.get("message") or body.get("error")
    return str(message) if message else "no errMessage given"


def raise_for_error(
    http_status: int,
    body: Mapping[str, Any],
    *,
    retry_after: float | None = None,
    task_id: str | None = None,
) -> None:
    """Raise the exception that an error answer (HTTP status or body ``status``) stands for.

    The service may signal an error in the HTTP status, in the body, or both; whichever is not
    success wins, with the body's status preferred as the more specific one.
    """
    body_status = _body_status(body)
    if body_status in (None, 200) and 200 <= http_status < 300:
        return
    status = body_status if body_status not in (None, 200) else http_status
    message = _err_message(body)
    kwargs: dict[str, Any] = {"http_status": http_status, "status": status}
    if status == 401:
        raise AuthError(message, **kwargs)
    if status == 403:
        raise QuotaExhaustedError(quota_spent_message(message), **kwargs)
    if status == 404:
        raise TaskNotFoundError(message, task_id=task_id, **kwargs)
    if status == 429:
        raise RateLimitedError(message, retry_after=retry_after, **kwargs)
    if status in TRANSIENT_STATUSES or status >= 500:
        raise TransientError(message, **kwargs)
    if 400 <= status < 500:
        raise InvalidRequestError(message, **kwargs)
    raise LotImageError(f"unexpected status {status}: {message}", **kwargs)


def next_quota_reset(now: datetime | None = None) -> datetime:
    """Return when a daily quota spent at ``now`` comes back: the next midnight UTC.

    :param now: an aware time (default: the current time).
    """
    now = (now or datetime.now(UTC)).astimezone(UTC)
    return datetime.combine(now.date() + timedelta(days=1), time(0), tzinfo=UTC)


def quota_spent_message(err_message: str, *, now: datetime | None = None) -> str:
    """Say that the key's daily quota is spent and when it resets, after the service's own words.

    Nothing the service answers says when (see :data:`QUOTA_RESETS_AT`), so the reset is the
    contract's midnight UTC, given as a time and as a delay from ``now``.

    :param err_message: the service's ``errMessage``.
    :param now: the time the answer came (default: the current time).
    """
    now = (now or datetime.now(UTC)).astimezone(UTC)
    reset = next_quota_reset(now)
    return (
        f"{err_message}: the key's daily quota of LotImage calls is spent; it resets at "
        f"{QUOTA_RESETS_AT} ({reset:%Y-%m-%d %H:%M} UTC, in {_delay(reset - now)}; LotImage does "
        "not say when, so midnight UTC is assumed)"
    )


def _delay(delay: timedelta) -> str:
    minutes = math.ceil(delay.total_seconds() / 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"


def parse_submit(http_status: int, text: str | bytes, *, retry_after: float | None = None) -> str:
    """Parse the answer of ``imagine`` or ``button``: the new taskId, or the matching exception."""
    body = decode_body(http_status, text)
    raise_for_error(http_status, body, retry_after=retry_after)
    task_id = body.get("taskId")
    if not isinstance(task_id, str) or not task_id.strip():
        raise MalformedResponseError("LotImage accepted the request but returned no taskId")
    return task_id


def parse_progress(
    http_status: int, text: str | bytes, *, task_id: str | None = None, retry_after: float | None = None
) -> TaskProgress:
    """Parse a ``task/progress`` answer into :class:`TaskProgress`.

    Raises :class:`TaskFailedError` when the task itself failed (a failure status with
    ``errMessage`` in a well-formed task body, or 100 % with no picture), and the transport
    exceptions of :func:`raise_for_error` otherwise.
    """
    body = decode_body(http_status, text)
    body_status = _body_status(body)
    reported_id = body.get("taskId")
    if not isinstance(reported_id, str) or not reported_id:
        reported_id = task_id
    looks_like_task = "progress" in body or "imageUrl" in body or "prompt" in body
    # A failed task answers its own body with a failure status; the 5xx/429/401/404 family keeps
    # its transport meaning even then.
    if (
        body_status not in (None, 200)
        and looks_like_task
        and body_status not in TRANSIENT_STATUSES
        and body_status not in (401, 403, 404, 429)
    ):
        raise TaskFailedError(
            _err_message(body), task_id=reported_id, http_status=http_status, status=body_status
        )
    raise_for_error(http_status, body, retry_after=retry_after, task_id=reported_id)
    if not reported_id:
        raise MalformedResponseError("LotImage returned a progress answer without a taskId")

    progress = normalise_progress(body.get("progress"))
    image_url = _optional_str(body.get("imageUrl"))
    image_urls = _str_list(body.get("imageUrls"))
    if progress >= 100 and not image_url:
        raise TaskFailedError(
            "task reports 100% progress but no imageUrl", task_id=reported_id, http_status=http_status
        )
    return TaskProgress(
        task_id=str(reported_id),
        progress=progress,
        image_url=image_url,
        image_urls=tuple(image_urls) if progress >= 100 else (),
        prompt=_optional_str(body.get("prompt")),
        buttons=tuple(_str_list(body.get("buttons"))),
        created_at=_optional_str(body.get("createdAt")),
        originating_task_id=_optional_str(body.get("originatingMessageId")),
        raw=body,
    )


def _optional_str(value: Any) -> str | None:
    if value is None or isinstance(value, dict | list | bool):
        return None
    text = str(value).strip()
    return text or None


def _str_list(value: Any) -> list[str]:
    if not isinstance(value, list):
        return []
    return [str(item) for item in value if isinstance(item, str | int | float) and not isinstance(item, bool)]


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds form only; dates are ignored)."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    if math.isnan(seconds) or seconds < 0:
        return None
    return min(seconds, 300.0)
