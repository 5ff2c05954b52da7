"""What the emulator remembers: tasks, picture links, answers and each key's limiter state.

These are plain data holders with the little arithmetic that belongs to them (a task's progress at
a moment, a key's sliding windows), plus pure helpers that shape ids and timestamps like the
vendor's. They know nothing of configuration, locking or HTTP, so the rules and the engine can
share them without import cycles and tests can reason about them in isolation.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import secrets
import string
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

#: The progress values a running task shows, one per seventh of its duration, then 100.
PROGRESS_STEPS: tuple[int, ...] = (0, 15, 31, 46, 62, 78, 93, 100)
TASK_STATES: tuple[str, ...] = ("queued", "running", "finished", "failed", "stalled")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def key_id(key: str) -> str:
    r"""Return a stable, non-secret label for a key, used in statistics instead of the key itself.

    ``surrogatepass`` because a key set through the admin API is decoded JSON, which may hold a
    lone surrogate (``"\ud800"``) that strict UTF-8 refuses to encode. Any other key encodes to
    the same bytes either way, so labels already handed out do not change, and a surrogate's bytes
    are never valid UTF-8, so such a key never shares a label with another.
    """
    return "key-" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:10]


def dumps(body: Any) -> str:
    r"""Serialise JSON as UTF-8 text, escaping only lone surrogates (as ``\ud800``).

    A JSON body may carry a lone surrogate (``"\ud800"`` decodes to one), which UTF-8 cannot
    encode; escaping it as JavaScript's ``JSON.stringify`` does keeps every answer sendable and the
    client reads back the string it sent. Everything else stays as it is (emoji buttons included).
    """
    text = json.dumps(body, ensure_ascii=False)
    return _LONE_SURROGATE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def new_task_id() -> str:
    """Make an id shaped like the service's (``0o2f4ja2a1-ka2e-ow1c-br93-9al9ad2``)."""
    alphabet = string.ascii_lowercase + string.digits
    return "-".join("".join(secrets.choice(alphabet) for _ in range(n)) for n in (10, 4, 4, 4, 7))


def iso_z(moment: datetime) -> str:
    """``2023-08-01T14:03:01.817Z``: milliseconds and a Z, like the vendor's sample."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def format_progress(progress: int, style: str) -> int | float | str:
    """Render progress as the service variants do: ``46``, ``46.5`` or ``"46%"``."""
    if style == "float":
        return float(progress) if progress in (0, 100) else progress + 0.5
    if style == "percent_string":
        return f"{progress}%"
    return progress


@dataclass
class Answer:
    """What an API call answers, before the HTTP layer applies the status style and faults."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    task_id: str | None = None


@dataclass(frozen=True)
class Delivery:
    """A webhook POST the engine owes: the body, where to, and what fault rules may pick it by."""

    url: str
    body: dict[str, Any]
    task_id: str
    endpoint: str  # the call that created the task: imagine or button
    prompt: str


@dataclass
class ImageRef:
    """A served picture: which task and variant it shows, and when its link was issued."""

    task_id: str
    variant: str  # grid, q1..q4, upscale, preview
    issued: float


@dataclass
class Task:
    """One job. Times are monotonic seconds; ``created_at`` is the wall clock for ``createdAt``."""

    id: str
    key: str
    kind: str  # imagine, upscale, variation, reroll, zoom, vary
    prompt: str
    cutting: bool
    webhook: str | None
    base_url: str
    created_at: datetime
    submitted: float
    duration: float
    parent_id: str | None = None
    button: str | None = None
    quadrant: int | None = None
    state: str = "queued"
    started: float | None = None
    ended: float | None = None
    end_progress: int = 100
    end_state: str = "finished"
    fail_status: int = 400
    fail_message: str = ""
    no_image_url: bool = False
    used_upscales: set[int] = field(default_factory=set)
    images: dict[str, str] = field(default_factory=dict)
    #: Progress reads of the task, and when the first one showed it ended (benchmark timings).
    reads: list[float] = field(default_factory=list)
    end_seen: float | None = None

    @property
    def end_fraction(self) -> float:
        """Fraction of the duration after which the task leaves the running slot."""
        if self.end_state == "finished":
            return 1.0
        step = next(i for i, value in enumerate(PROGRESS_STEPS) if value >= self.end_progress)
        return step / 7.0

    def end_time(self) -> float:
        """Monotonic time at which the running task finishes, fails or stalls."""
        assert self.started is not None
        return self.started + self.duration * self.end_fraction

    def progress_at(self, now: float) -> int:
        """Return the integer progress the service would show at ``now``."""
        if self.state == "queued":
            return 0
        if self.state == "finished":
            return 100
        if self.state in ("failed", "stalled"):
            return self.end_progress
        assert self.started is not None
        fraction = 1.0 if self.duration <= 0 else (now - self.started) / self.duration
        return PROGRESS_STEPS[max(0, min(6, int(fraction * 7)))]

    @property
    def is_grid(self) -> bool:
        """Upscales are single pictures; every other kind is a 2x2 grid."""
        return self.kind != "upscale"

    @property
    def picture_variants(self) -> list[str]:
        """The pictures a finished task links to: its main one, plus the quadrants when cut."""
        variants = ["grid"] if self.is_grid else ["upscale"]
        if self.cutting and self.is_grid:
            variants += ["q1", "q2", "q3", "q4"]
        return variants

    @property
    def endpoint(self) -> str:
        """The paid call that created the task: ``imagine``, or ``button`` for every other kind."""
        return "imagine" if self.kind == "imagine" else "button"

    def url(self, token: str) -> str:
        """Return a picture link on the base URL the client used, so it works behind any host name."""
        return f"{self.base_url}/_emulator/images/{token}.png"


def _trim(window: deque[float], now: float) -> None:
    """Drop the calls older than one second: both per-key windows slide over the last second."""
    while window and window[0] <= now - 1.0:
        window.popleft()


@dataclass
class KeyState:
    """Per-key queue, limiter windows and quota counter.

    Every key has its own running slots and limits, as on the real service, so this holds all
    that one key has used; the engine keeps one per key it has seen.
    """

    queue: deque[str] = field(default_factory=deque)
    running: set[str] = field(default_factory=set)
    window: deque[float] = field(default_factory=deque)  # accepted calls, last second
    seen: deque[float] = field(default_factory=deque)  # every call, last second (for the peak)
    peak: int = 0
    calls: int = 0
    quota_day: str = ""
    quota_used: int = 0

    def note_call(self, now: float) -> None:
        """Count a call as it arrives, refused or not, so the peak shows what a client sent."""
        self.calls += 1
        self.seen.append(now)
        _trim(self.seen, now)
        self.peak = max(self.peak, len(self.seen))

    def admit(self, now: float, rate_limit: float) -> int | None:
        """Take a place in the 1 s sliding window; when full, the ``Retry-After`` seconds instead."""
        _trim(self.window, now)
        if len(self.window) >= rate_limit:
            return max(1, math.ceil(self.window[0] + 1.0 - now))
        self.window.append(now)
        return None

    def charge_quota(self, today: str, quota: int) -> bool:
        """Count a call against the UTC day's quota; ``False`` (and nothing counted) once spent."""
        if self.quota_day != today:
            self.quota_day, self.quota_used = today, 0
        if self.quota_used >= quota:
            return False
        self.quota_used += 1
        return True

    def start(self, task: Task, at: float) -> None:
        """Put ``task`` in one of the key's running slots from ``at`` on."""
        task.state, task.started = "running", at
        self.running.add(task.id)
