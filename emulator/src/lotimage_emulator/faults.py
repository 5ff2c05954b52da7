"""Fault injection: rules that make the emulator misbehave the way the real service (or a proxy) can.

A rule has a ``kind``, an optional ``endpoint`` filter and a ``count`` (how many requests, tasks,
answers or deliveries it spoils before it is used up; ``None`` means forever), or a
``for_seconds`` window (it spoils every matching call for that long from the first one: an outage
of a given length, whatever the client's pace). Rules are consumed
at one of five points, which is why each kind belongs to one :data:`STAGES` entry:

* ``request``: the HTTP answer of a matching API call is replaced or delayed
  (``http_429``, ``http_status``, ``malformed_json``, ``drop_connection``, ``delay``); with
  ``after_processing`` the call is handled first (a task IS created) and only the answer is spoilt,
  which is the ambiguous case a client must not blindly resend.
* ``task``: a task created by a matching ``imagine``/``button`` call goes wrong
  (``fail_task``, ``stall``, ``no_image_url``).
* ``progress``: a ``task/progress`` answer is reshaped (``progress_format``, ``preview_url``).
* ``webhook``: a webhook delivery of a task made by a matching ``imagine``/``button`` call is
  swallowed (``drop_webhooks``), sent ``seconds`` late (``delay_webhooks``: other deliveries are not
  held up, so an earlier task's delivery can arrive after a later one's) or sent ``copies`` times,
  ``seconds`` apart (``duplicate_webhooks``). The contract says deliveries "may be late, duplicated
  or lost"; these are the three.
* ``image``: a picture link's body is sent slowly, spread over ``seconds`` (``slow_body``), as by a
  congested CDN: a client can be stopped (or killed) in the middle of a download. No endpoint.

Any rule may also pick a prompt: with ``prompt_contains`` it applies only to calls and tasks whose
prompt holds that substring (case-sensitive). The prompt is the one the call is about: an
``imagine``'s own, the parent's for ``button`` (a button task inherits its parent's prompt), the
task's for ``task/progress``, webhooks and picture links. A batch test can then say "reject this
prompt, fail that one while rendering, stall a third" however its tasks are ordered; ``count``,
``share`` and ``for_seconds`` count the matching calls only.

Rules travel as JSON over the admin endpoint, so :meth:`FaultRule.from_dict` validates strictly:
a typo in a test's fault must fail loudly rather than silently inject nothing.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from lotimage_emulator.contract import (
    MSG_INTERNAL,
    MSG_INVALID,
    MSG_KEY,
    MSG_NOT_FOUND,
    MSG_QUEUE_FULL,
    MSG_QUOTA,
    MSG_RATE,
)

ENDPOINTS: tuple[str, ...] = ("imagine", "progress", "button")

#: Which consumption point each fault kind belongs to.
STAGES: dict[str, str] = {
    "http_429": "request",
    "http_status": "request",
    "malformed_json": "request",
    "drop_connection": "request",
    "delay": "request",
    "fail_task": "task",
    "stall": "task",
    "no_image_url": "task",
    "progress_format": "progress",
    "preview_url": "progress",
    "drop_webhooks": "webhook",
    "delay_webhooks": "webhook",
    "duplicate_webhooks": "webhook",
    "slow_body": "image",
}
#: Kinds that are "modes" rather than one-shot accidents: unlimited unless a count is given.
_UNLIMITED_BY_DEFAULT = frozenset({"progress_format", "preview_url", "drop_webhooks"})
PROGRESS_FORMATS: tuple[str, ...] = ("int", "float", "percent_string")
#: The ``errMessage`` of an ``http_status``/``http_429`` answer without ``err_message``: the
#: contract's text for that status, so a fault looks like the service's own refusal.
DEFAULT_ERR_MESSAGES: dict[int, str] = {
    400: MSG_INVALID,
    401: MSG_KEY,
    403: MSG_QUOTA,
    404: MSG_NOT_FOUND,
    429: MSG_RATE,
    500: MSG_INTERNAL,
    502: "Bad gateway",
    503: MSG_QUEUE_FULL,
    504: "Gateway timeout",
}
_PARAMS = (
    "status",
    "retry_after",
    "html",
    "body_only",
    "after_processing",
    "seconds",
    "progress",
    "err_message",
    "format",
    "body",
    "share",
    "for_seconds",
    "copies",
    "prompt_contains",
)
#: Most copies a ``duplicate_webhooks`` rule may send of one delivery: bounds the work of one rule.
MAX_COPIES = 100
_ids = itertools.count(1)


class FaultError(ValueError):
    """A fault rule that cannot be honoured (unknown kind, bad parameter)."""


class _Unset:
    """Marker for "use the kind's default count" (``None`` already means unlimited)."""

    def __repr__(self) -> str:
        return "DEFAULT_COUNT"


DEFAULT_COUNT: Any = _Unset()


@dataclass
class FaultRule:
    """One fault. Parameters not used by a kind are ignored but still validated for type.

    ``status``: body/HTTP status of ``http_status`` (400..599, default 503) or body status of a
    ``fail_task`` answer (default 400). ``retry_after``: seconds in the ``Retry-After`` header of
    ``http_429`` (``None``: no header). ``html``: ``http_status`` answers an HTML page, not JSON.
    ``body_only``: answer HTTP 200 and put the error only in the body; ``False`` (the default): the
    HTTP status is the error's; ``None``: as the emulator answers its own errors
    (``mirror_http_status``), so a fault's 400 is indistinguishable from a refusal of the service.
    ``after_processing``: handle the call first, then spoil the answer. ``seconds``: ``delay`` and
    ``delay_webhooks`` length, the time a ``slow_body`` takes from its first to its last byte, or the
    spacing of ``duplicate_webhooks`` copies (default 0 there, 1 elsewhere). ``copies``: how many
    times ``duplicate_webhooks`` sends a delivery (2..:data:`MAX_COPIES`, default 2).
    ``progress``: where ``fail_task``/``stall`` stop. ``err_message``: ``fail_task``/``http_status``
    message (default: the contract's text for the status). ``format``: ``progress_format`` style.
    ``body``: exact broken body of ``malformed_json``.
    ``share``: fire on that share of the matching calls, spread evenly (0.2: every fifth), for
    load tests that want a fault rate all along a run; ``count`` still caps the firings.
    ``for_seconds``: fire on every matching call for that many seconds from the first firing
    (``opened_at``, epoch seconds), then be used up: an outage of that length. Without a ``count``
    it is unlimited within the window. ``prompt_contains``: apply only to calls and tasks whose
    prompt holds this substring (case-sensitive; see the module docstring for which prompt).
    """

    kind: str
    endpoint: str | None = None
    count: int | None = 1
    status: int | None = None
    retry_after: float | None = 1.0
    html: bool = False
    body_only: bool | None = False
    after_processing: bool = False
    seconds: float = 1.0
    progress: int | None = None
    err_message: str | None = None
    format: str = "int"
    body: str | None = None
    share: float | None = None
    for_seconds: float | None = None
    copies: int | None = None
    prompt_contains: str | None = None
    id: str = field(default_factory=lambda: f"fault-{next(_ids)}")
    used: int = 0
    seen: int = 0
    opened_at: float | None = None

    def __post_init__(self) -> None:
        self._validate()

    @property
    def stage(self) -> str:
        """The consumption point of this rule's kind."""
        return STAGES[self.kind]

    @property
    def remaining(self) -> int | None:
        """How many more times the rule applies; ``None`` for unlimited."""
        if self.window_closed():
            return 0
        return None if self.count is None else max(0, self.count - self.used)

    @property
    def exhausted(self) -> bool:
        """Used up (its count spent, or its window over): kept in :meth:`FaultBook.rules` history only."""
        return (self.count is not None and self.used >= self.count) or self.window_closed()

    def window_closed(self, now: float | None = None) -> bool:
        """Whether the ``for_seconds`` window opened and has passed (never, without a window)."""
        if self.for_seconds is None or self.opened_at is None:
            return False
        return (time.time() if now is None else now) - self.opened_at >= self.for_seconds

    def fire(self) -> None:
        """Count one firing; the first opens the ``for_seconds`` window. Called under the book's lock."""
        if self.opened_at is None:
            self.opened_at = time.time()
        self.used += 1

    def hits_its_share(self) -> bool:
        """Count one matching call; whether the rule fires on it (always, without ``share``).

        With ``share`` the rule fires on the matching calls ``n`` where ``floor(n * share)`` steps
        up (every fifth for 0.2): spread evenly over a run, and the same on every run, unlike a
        random draw. Called under the book's lock.
        """
        if self.share is None:
            return True
        self.seen += 1
        return int(self.seen * self.share) != int((self.seen - 1) * self.share)

    def matches(self, endpoint: str | None, prompt: str | None = None) -> bool:
        """Whether the rule applies to a call of ``endpoint`` about ``prompt``.

        ``endpoint`` ``None`` means the point of consumption has no endpoint context. A rule with a
        ``prompt_contains`` never applies where no prompt is known (a call naming no task).
        """
        if self.endpoint is not None and endpoint is not None and self.endpoint != endpoint:
            return False
        if self.prompt_contains is None:
            return True
        return isinstance(prompt, str) and self.prompt_contains in prompt

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON shape of the rule, as accepted by :meth:`from_dict` plus bookkeeping."""
        data = asdict(self)
        data["remaining"] = self.remaining
        data["stage"] = self.stage
        return data

    @classmethod
    def build(
        cls, kind: str, *, endpoint: str | None = None, count: Any = DEFAULT_COUNT, **params: Any
    ) -> FaultRule:
        """Create a rule, filling the kind's defaults (count, status, progress, errMessage)."""
        unknown = set(params) - set(_PARAMS)
        if unknown:
            raise FaultError(f"unknown fault parameter(s): {', '.join(sorted(unknown))}")
        if kind not in STAGES:
            raise FaultError(f"unknown fault kind {kind!r}; known: {', '.join(STAGES)}")
        if isinstance(count, _Unset):
            unlimited = kind in _UNLIMITED_BY_DEFAULT or params.get("for_seconds") is not None
            count = None if unlimited else 1
        if endpoint in ("any", "", "*"):
            endpoint = None
        if kind == "duplicate_webhooks":
            params.setdefault("seconds", 0.0)  # copies arrive together unless spacing is asked for
        return cls(kind=kind, endpoint=endpoint, count=count, **params)

    @classmethod
    def from_dict(cls, data: Any) -> FaultRule:
        """Build a rule from its JSON form; ``count`` absent means the kind's default."""
        if not isinstance(data, dict):
            raise FaultError("a fault rule must be a JSON object")
        data = dict(data)
        for bookkeeping in ("id", "used", "seen", "remaining", "stage", "opened_at"):
            data.pop(bookkeeping, None)
        kind = data.pop("kind", None)
        if not isinstance(kind, str):
            raise FaultError("a fault rule needs a string 'kind'")
        endpoint = data.pop("endpoint", None)
        count = data.pop("count") if "count" in data else DEFAULT_COUNT
        return cls.build(kind, endpoint=endpoint, count=count, **data)

    def _validate(self) -> None:
        """Check everything a rule holds, so a typo in a test fails loudly instead of injecting nothing."""
        self._validate_scope()
        self._validate_types()
        self._validate_kind()

    def _validate_scope(self) -> None:
        """Check that the kind exists and that the endpoint filter makes sense at its stage."""
        if self.kind not in STAGES:
            raise FaultError(f"unknown fault kind {self.kind!r}")
        if self.endpoint is not None and self.endpoint not in ENDPOINTS:
            raise FaultError(f"endpoint must be one of {ENDPOINTS} or null, not {self.endpoint!r}")
        if self.stage in ("task", "webhook") and self.endpoint == "progress":
            raise FaultError(f"{self.kind} applies to tasks made by imagine or button, not progress")
        if self.stage == "progress" and self.endpoint not in (None, "progress"):
            raise FaultError(f"{self.kind} applies to task/progress answers only")
        if self.stage == "image" and self.endpoint is not None:
            raise FaultError(f"{self.kind} applies to picture links, which have no API endpoint")

    def _validate_types(self) -> None:
        """Check every parameter's type and range, whether the kind uses it or not."""
        if self.count is not None and (not _is_integer(self.count) or self.count < 0):
            raise FaultError("count must be a non-negative integer or null (unlimited)")
        for name in ("html", "after_processing"):
            if not isinstance(getattr(self, name), bool):
                raise FaultError(f"{name} must be a boolean")
        if self.body_only is not None and not isinstance(self.body_only, bool):
            raise FaultError("body_only must be a boolean or null (as mirror_http_status says)")
        if not _is_number(self.seconds) or self.seconds < 0:
            raise FaultError("seconds must be a non-negative number")
        if self.retry_after is not None and (not _is_number(self.retry_after) or self.retry_after < 0):
            raise FaultError("retry_after must be a non-negative number or null")
        if self.format not in PROGRESS_FORMATS:
            raise FaultError(f"format must be one of {PROGRESS_FORMATS}")
        for name in ("err_message", "body"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), str):
                raise FaultError(f"{name} must be a string")
        if self.share is not None and (not _is_number(self.share) or not 0 < self.share <= 1):
            raise FaultError("share must be a number in (0, 1] or null (every matching call)")
        if self.for_seconds is not None and (not _is_number(self.for_seconds) or self.for_seconds <= 0):
            raise FaultError("for_seconds must be a positive number of seconds or null (no window)")
        if self.copies is not None and (not _is_integer(self.copies) or not 2 <= self.copies <= MAX_COPIES):
            raise FaultError(f"copies must be an integer from 2 to {MAX_COPIES}")
        if self.prompt_contains is not None and (
            not isinstance(self.prompt_contains, str) or not self.prompt_contains
        ):
            raise FaultError("prompt_contains must be a non-empty string or null (any prompt)")

    def _validate_kind(self) -> None:
        """Fill the defaults that depend on the kind and check the parameters it needs."""
        if self.kind == "http_status":
            self.status = 503 if self.status is None else self.status
            if not _is_integer(self.status) or not 400 <= self.status <= 599:
                raise FaultError("http_status needs a status between 400 and 599")
        if self.kind == "fail_task":
            self.status = 400 if self.status is None else self.status
            if not _is_integer(self.status) or self.status == 200:
                raise FaultError("fail_task needs an integer status other than 200")
            if self.err_message is None:
                self.err_message = "Task timeout"
        if self.kind == "duplicate_webhooks" and self.copies is None:
            self.copies = 2
        if self.kind in ("fail_task", "stall"):
            if self.progress is None:
                self.progress = 62 if self.kind == "fail_task" else 93
            if not _is_integer(self.progress) or not 0 <= self.progress <= 99:
                raise FaultError(f"{self.kind} needs progress between 0 and 99")


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class FaultBook:
    """The emulator's active fault rules, shared by the server thread and the test thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []

    def add(self, rule: FaultRule) -> FaultRule:
        """Append a rule; older rules of the same kind take precedence until used up."""
        with self._lock:
            self._rules.append(rule)
        return rule

    def remove(self, rule_id: str) -> bool:
        """Drop one rule by id; ``False`` if there was none."""
        with self._lock:
            before = len(self._rules)
            self._rules = [rule for rule in self._rules if rule.id != rule_id]
            return len(self._rules) != before

    def clear(self) -> None:
        """Remove every rule."""
        with self._lock:
            self._rules.clear()

    def rules(self) -> list[dict[str, Any]]:
        """Snapshot of all rules (used-up ones too, so a test can see what fired)."""
        with self._lock:
            return [rule.to_dict() for rule in self._rules]

    def take(
        self,
        stage: str,
        endpoint: str | None,
        *,
        kinds: tuple[str, ...] | None = None,
        after_processing: bool | None = None,
        prompt: str | None = None,
    ) -> FaultRule | None:
        """Consume one use of the first live rule of ``stage`` that fits; ``None`` if none does.

        ``prompt`` is the prompt the call or task is about (``None``: unknown), for the rules that
        pick one; a rule that does not match is not counted, so its ``share`` and ``count`` see
        matching calls only. Consuming under the lock means two concurrent requests never both take
        the last use.
        """
        with self._lock:
            for rule in self._rules:
                if rule.stage != stage or rule.exhausted or not rule.matches(endpoint, prompt):
                    continue
                if kinds is not None and rule.kind not in kinds:
                    continue
                if after_processing is not None and rule.after_processing != after_processing:
                    continue
                if not rule.hits_its_share():
                    continue
                rule.fire()
                return rule
        return None
