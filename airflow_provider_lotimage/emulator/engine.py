"""The emulator's brain: configuration, keys, limits, tasks, buttons, pictures and statistics.

Everything here is plain Python guarded by one re-entrant lock, so the aiohttp handlers (server
thread) and a test's calls such as :meth:`Engine.stats` (test thread) can share it safely. Task
progress is computed from the clock rather than driven by timers: :meth:`Engine.advance` replays
what happened since the last look (slots freed, queued tasks started, tasks finished), so results
do not depend on how often anybody polls, and a time scale shrinks a 45 s job to a second.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import secrets
import string
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from airflow_provider_lotimage.api import (
    GRID_BUTTONS,
    MAX_PROMPT_LENGTH,
    REROLL_BUTTON,
    UPSCALE_BUTTONS,
    UPSCALED_BUTTONS,
    VARIATION_BUTTONS,
    VARY_BUTTONS,
    ZOOM_BUTTONS,
)
from airflow_provider_lotimage.emulator.faults import FaultBook

#: The progress values a running task shows, one per seventh of its duration, then 100.
PROGRESS_STEPS: tuple[int, ...] = (0, 15, 31, 46, 62, 78, 93, 100)
TASK_STATES: tuple[str, ...] = ("queued", "running", "finished", "failed", "stalled")

MSG_KEY = "Key verification failed, please check whether the key is correct"
MSG_PROMPT_REQUIRED = "prompt is required"
MSG_INVALID = "Invalid parameter"
MSG_BANNED = "Banned prompt detected"
MSG_BUTTON_NOT_FOUND = "Button not found"
MSG_ALREADY_UPSCALED = "Already requested upscale"
MSG_NOT_FINISHED = "Task is not finished"
MSG_QUOTA = "Daily request limit reached"
MSG_NOT_FOUND = "Task not found"
MSG_RATE = "Too many requests"

#: Config fields that only make sense at start-up.
_STARTUP_ONLY = frozenset({"host", "port"})


@dataclass(frozen=True)
class EmulatorConfig:
    """Every knob of the emulator. Durations are the real service's; ``time_scale`` shrinks them.

    ``keys``: accepted API keys (``None`` or empty: any non-empty key). ``rate_limit``: calls a
    second per key over a sliding 1 s window (``None``/0: off). ``daily_quota``: calls a UTC day per
    key, all endpoints (``None``: off). ``max_running``: tasks a key runs at once; the rest queue at
    progress 0. ``image_ttl_seconds`` is real time (not scaled). ``mirror_http_status``: HTTP status
    equals the body ``status`` instead of the sibling services' "HTTP 200, error in body".
    ``public_url`` overrides the base of picture URLs (default: the Host the client used).
    """

    host: str = "127.0.0.1"
    port: int = 0
    keys: tuple[str, ...] | None = None
    rate_limit: float | None = 3.0
    daily_quota: int | None = None
    max_running: int = 3
    time_scale: float = 1.0
    imagine_seconds: float = 45.0
    variation_seconds: float = 45.0
    upscale_seconds: float = 10.0
    grid_size: int = 2048
    image_ttl_seconds: float = 86400.0
    mirror_http_status: bool = False
    banned_words: tuple[str, ...] = ("nsfw",)
    webhook_timeout: float = 5.0
    public_url: str | None = None
    render_cache_entries: int = 64
    png_compress_level: int = 1

    def __post_init__(self) -> None:
        # Accept lists from JSON/CLI but store tuples so the config stays hashable and immutable.
        if self.keys is not None:
            object.__setattr__(self, "keys", tuple(str(key) for key in self.keys))
        object.__setattr__(self, "banned_words", tuple(str(word).lower() for word in self.banned_words))
        if self.grid_size < 16 or self.grid_size % 2:
            raise ValueError("grid_size must be an even number of at least 16")
        if self.max_running < 1:
            raise ValueError("max_running must be at least 1")
        if self.time_scale < 0:
            raise ValueError("time_scale must not be negative")
        if self.rate_limit is not None and self.rate_limit < 0:
            raise ValueError("rate_limit must not be negative")
        if self.daily_quota is not None and self.daily_quota < 0:
            raise ValueError("daily_quota must not be negative")
        if not 0 <= self.png_compress_level <= 9:
            raise ValueError("png_compress_level must be 0..9")

    def public_dict(self) -> dict[str, Any]:
        """The config as JSON, with keys replaced by their fingerprints (never echo secrets)."""
        data = dataclasses.asdict(self)
        data["keys"] = None if self.keys is None else [key_id(key) for key in self.keys]
        data["banned_words"] = list(self.banned_words)
        return data


def key_id(key: str) -> str:
    """A stable, non-secret label for a key, used in statistics instead of the key itself."""
    return "key-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:10]


def new_task_id() -> str:
    """An id shaped like the service's (``0o2f4ja2a1-ka2e-ow1c-br93-9al9ad2``)."""
    alphabet = string.ascii_lowercase + string.digits
    return "-".join("".join(secrets.choice(alphabet) for _ in range(n)) for n in (10, 4, 4, 4, 7))


def iso_z(moment: datetime) -> str:
    """``2023-08-01T14:03:01.817Z``: milliseconds and a Z, like the vendor's sample."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_bool(value: Any) -> bool | None:
    """``cutting`` as a JSON boolean or the strings true/false (any case); ``None`` if neither."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


@dataclass
class Answer:
    """What an API call answers, before the HTTP layer applies the status style and faults."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    task_id: str | None = None


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
        """The integer progress the service would show at ``now``."""
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


@dataclass
class _KeyState:
    """Per-key queue, limiter windows and quota counter."""

    queue: deque[str] = field(default_factory=deque)
    running: set[str] = field(default_factory=set)
    window: deque[float] = field(default_factory=deque)  # accepted calls, last second
    seen: deque[float] = field(default_factory=deque)  # every call, last second (for the peak)
    peak: int = 0
    calls: int = 0
    quota_day: str = ""
    quota_used: int = 0


class Engine:
    """Task store and rules of the service. All public methods are thread-safe."""

    def __init__(
        self,
        config: EmulatorConfig,
        faults: FaultBook | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lock = threading.RLock()
        self.initial_config = config
        self.config = config
        self.faults = faults if faults is not None else FaultBook()
        self.clock = clock
        self._reset_state()

    # ----------------------------------------------------------------- state and configuration
    def _reset_state(self) -> None:
        self.tasks: dict[str, Task] = {}
        self.images: dict[str, ImageRef] = {}
        self._keys: dict[str, _KeyState] = {}
        self._webhooks: list[tuple[str, dict[str, Any]]] = []
        self.requests: Counter[str] = Counter()
        self.submissions: Counter[str] = Counter()
        self.answers: Counter[str] = Counter()
        self.http_statuses: Counter[str] = Counter()
        self.answers_by_endpoint: dict[str, Counter[str]] = {}
        self.events: Counter[str] = Counter()
        self.webhook_stats: Counter[str] = Counter()
        #: Wall-clock (epoch) seconds of the first/last paid submission and picture served.
        self.timeline: dict[str, float] = {}

    def reset(self) -> None:
        """Forget tasks, counters, pictures and faults; restore the start-up config."""
        with self._lock:
            self._reset_state()
            self.config = self.initial_config
            self.faults.clear()

    def set_config(self, **changes: Any) -> EmulatorConfig:
        """Change runtime knobs; new durations apply to tasks created afterwards."""
        bad = set(changes) & _STARTUP_ONLY
        if bad:
            raise ValueError(f"cannot change {', '.join(sorted(bad))} while running")
        unknown = set(changes) - {f.name for f in dataclasses.fields(EmulatorConfig)}
        if unknown:
            raise ValueError(f"unknown config field(s): {', '.join(sorted(unknown))}")
        for name, value in changes.items():
            _check_type(name, value)
        with self._lock:
            self.config = dataclasses.replace(self.config, **changes)
            return self.config

    def _key(self, key: str) -> _KeyState:
        state = self._keys.get(key)
        if state is None:
            state = self._keys[key] = _KeyState()
        return state

    # ------------------------------------------------------------------------------- gatekeeping
    @staticmethod
    def bearer(header: str | None) -> str | None:
        """The key of an ``Authorization: Bearer <key>`` header, or ``None``."""
        if not header:
            return None
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return None
        return value.strip()

    def note_request(self, endpoint: str, key: str | None) -> None:
        """Count a call as it arrives (before any fault), for ``requests`` and the per-key peak."""
        with self._lock:
            self.requests[endpoint] += 1
            if key is None:
                return
            state = self._key(key)
            now = self.clock()
            state.calls += 1
            state.seen.append(now)
            while state.seen and state.seen[0] <= now - 1.0:
                state.seen.popleft()
            state.peak = max(state.peak, len(state.seen))

    def note_answer(self, endpoint: str, label: str, http_status: int | None) -> None:
        """Count what was answered: body status (or ``dropped``/``malformed``) and HTTP status."""
        with self._lock:
            self.answers[label] += 1
            self.answers_by_endpoint.setdefault(endpoint, Counter())[label] += 1
            if http_status is not None:
                self.http_statuses[str(http_status)] += 1

    def note_event(self, name: str) -> None:
        """Count a fault-related event (``dropped_connections``, ``delays``...)."""
        with self._lock:
            self.events[name] += 1

    def _gate(self, key: str | None) -> Answer | None:
        """Auth, then rate limit, then daily quota: the order a gateway would check them in."""
        config = self.config
        if key is None or (config.keys and key not in config.keys):
            return _error(401, MSG_KEY)
        state = self._key(key)
        now = self.clock()
        if config.rate_limit:
            while state.window and state.window[0] <= now - 1.0:
                state.window.popleft()
            if len(state.window) >= config.rate_limit:
                wait = max(1, math.ceil(state.window[0] + 1.0 - now))
                self.events["rate_limited_by_limiter"] += 1
                return _error(429, MSG_RATE, headers={"Retry-After": str(wait)})
            state.window.append(now)
        if config.daily_quota is not None:
            today = datetime.now(UTC).date().isoformat()
            if state.quota_day != today:
                state.quota_day, state.quota_used = today, 0
            if state.quota_used >= config.daily_quota:
                return _error(403, MSG_QUOTA)
            state.quota_used += 1
        return None

    # -------------------------------------------------------------------------------- endpoints
    def call(self, endpoint: str, key: str | None, params: dict[str, Any] | None, base_url: str) -> Answer:
        """Handle one API call whose body was decoded to ``params`` (``None``: undecodable)."""
        with self._lock:
            gate = self._gate(key)
            if gate is not None:
                return gate
            assert key is not None
            if params is None:
                return _error(400, MSG_INVALID)
            self.advance()
            if endpoint == "imagine":
                return self._imagine(key, params, base_url)
            if endpoint == "progress":
                return self._progress(key, params)
            if endpoint == "button":
                return self._button(key, params, base_url)
            raise ValueError(f"unknown endpoint {endpoint!r}")

    def _imagine(self, key: str, params: dict[str, Any], base_url: str) -> Answer:
        prompt = params.get("prompt")
        if prompt is None or (isinstance(prompt, str) and not prompt.strip()):
            return _error(400, MSG_PROMPT_REQUIRED)
        if not isinstance(prompt, str) or len(prompt) > MAX_PROMPT_LENGTH:
            return _error(400, MSG_INVALID)
        options = _options(params)
        if options is None:
            return _error(400, MSG_INVALID)
        lowered = prompt.lower()
        if any(word and word in lowered for word in self.config.banned_words):
            return _error(400, MSG_BANNED)
        task = self._create(key, "imagine", prompt, *options, base_url=base_url, endpoint="imagine")
        return Answer(200, {"status": 200, "taskId": task.id}, task_id=task.id)

    def _progress(self, key: str, params: dict[str, Any]) -> Answer:
        task_id = params.get("taskId")
        if not isinstance(task_id, str) or not task_id.strip():
            return _error(400, MSG_INVALID)
        task = self.tasks.get(task_id.strip())
        if task is None or task.key != key:
            return _error(404, MSG_NOT_FOUND)
        body = self._progress_body(task, shaped=True)
        return Answer(int(body["status"]), body, task_id=task.id)

    def _button(self, key: str, params: dict[str, Any], base_url: str) -> Answer:
        task_id, label = params.get("taskId"), params.get("button")
        if not isinstance(task_id, str) or not task_id.strip() or not isinstance(label, str) or not label:
            return _error(400, MSG_INVALID)
        options = _options(params)
        if options is None:
            return _error(400, MSG_INVALID)
        parent = self.tasks.get(task_id.strip())
        if parent is None or parent.key != key:
            return _error(404, MSG_NOT_FOUND)
        if parent.state != "finished":
            return _error(400, MSG_NOT_FINISHED)
        if label not in _buttons_of(parent):
            return _error(400, MSG_BUTTON_NOT_FOUND)
        quadrant: int | None = None
        if label in UPSCALE_BUTTONS:
            quadrant = UPSCALE_BUTTONS.index(label) + 1
            if quadrant in parent.used_upscales:
                return _error(400, MSG_ALREADY_UPSCALED)
            parent.used_upscales.add(quadrant)
            kind = "upscale"
        elif label in VARIATION_BUTTONS:
            quadrant, kind = VARIATION_BUTTONS.index(label) + 1, "variation"
        elif label == REROLL_BUTTON:
            kind = "reroll"
        elif label in ZOOM_BUTTONS:
            kind = "zoom"
        elif label in VARY_BUTTONS:
            kind = "vary"
        else:  # pragma: no cover - _buttons_of only yields the labels above
            return _error(400, MSG_BUTTON_NOT_FOUND)
        task = self._create(
            key,
            kind,
            parent.prompt,
            *options,
            base_url=base_url,
            endpoint="button",
            parent=parent,
            button=label,
            quadrant=quadrant,
        )
        return Answer(200, {"status": 200, "taskId": task.id}, task_id=task.id)

    def _create(
        self,
        key: str,
        kind: str,
        prompt: str,
        cutting: bool,
        webhook: str | None,
        *,
        base_url: str,
        endpoint: str,
        parent: Task | None = None,
        button: str | None = None,
        quadrant: int | None = None,
    ) -> Task:
        config = self.config
        base = (
            config.upscale_seconds
            if kind == "upscale"
            else (config.imagine_seconds if kind == "imagine" else config.variation_seconds)
        )
        task = Task(
            id=new_task_id(),
            key=key,
            kind=kind,
            prompt=prompt,
            cutting=cutting,
            webhook=webhook,
            base_url=(config.public_url or base_url).rstrip("/"),
            created_at=datetime.now(UTC),
            submitted=self.clock(),
            duration=base * config.time_scale,
            parent_id=parent.id if parent else None,
            button=button,
            quadrant=quadrant,
        )
        rule = self.faults.take("task", endpoint, kinds=("fail_task", "stall"))
        if rule is not None:
            task.end_state = "failed" if rule.kind == "fail_task" else "stalled"
            task.end_progress = int(rule.progress or 0)
            task.fail_status = int(rule.status or 400)
            task.fail_message = rule.err_message or ""
        if self.faults.take("task", endpoint, kinds=("no_image_url",)) is not None:
            task.no_image_url = True
        self.tasks[task.id] = task
        self.submissions[endpoint] += 1
        self._mark("submit")
        state = self._key(key)
        if len(state.running) < config.max_running:
            self._start(state, task, task.submitted)
        else:
            state.queue.append(task.id)
        self.advance()
        return task

    # ----------------------------------------------------------------------------- simulation
    def _start(self, state: _KeyState, task: Task, at: float) -> None:
        task.state, task.started = "running", at
        state.running.add(task.id)

    def advance(self) -> None:
        """Replay every slot release and task end up to now, in time order, per key."""
        with self._lock:
            now = self.clock()
            for state in self._keys.values():
                self._advance_key(state, now)

    def _advance_key(self, state: _KeyState, now: float) -> None:
        while state.queue and len(state.running) < self.config.max_running:
            self._start(state, self.tasks[state.queue.popleft()], now)
        while state.running:
            end, task = min(
                ((self.tasks[i].end_time(), self.tasks[i]) for i in state.running), key=lambda item: item[0]
            )
            if end > now:
                return
            state.running.discard(task.id)
            self._end(task, end)
            if state.queue and len(state.running) < self.config.max_running:
                queued = self.tasks[state.queue.popleft()]
                self._start(state, queued, max(end, queued.submitted))

    def _end(self, task: Task, at: float) -> None:
        task.state, task.ended = task.end_state, at
        if task.state == "finished" and not task.no_image_url:
            variants = ["grid"] if task.is_grid else ["upscale"]
            if task.cutting and task.is_grid:
                variants += ["q1", "q2", "q3", "q4"]
            for variant in variants:
                task.images[variant] = self._issue(task, variant, at)
        if task.webhook and task.state in ("finished", "failed"):
            self._webhooks.append((task.webhook, self._progress_body(task, shaped=False)))

    def _issue(self, task: Task, variant: str, at: float) -> str:
        token = secrets.token_urlsafe(18)
        self.images[token] = ImageRef(task.id, variant, at)
        return token

    def _url(self, task: Task, token: str) -> str:
        return f"{task.base_url}/_emulator/images/{token}.png"

    def _progress_body(self, task: Task, *, shaped: bool) -> dict[str, Any]:
        """The ``task/progress`` body; ``shaped`` applies the progress faults (not for webhooks)."""
        now = self.clock()
        progress = task.progress_at(now)
        image_url = ""
        if task.state == "finished" and task.images:
            image_url = self._url(task, task.images["grid" if task.is_grid else "upscale"])
        body: dict[str, Any] = {
            "taskId": task.id,
            "prompt": task.prompt,
            "imageUrl": image_url,
            "progress": progress,
            "createdAt": iso_z(task.created_at),
            "buttons": list(_buttons_of(task)),
            "originatingMessageId": task.parent_id or "",
            "ref": "",
            "status": 200,
        }
        if task.state == "finished" and task.cutting and "q1" in task.images:
            body["imageUrls"] = [self._url(task, task.images[f"q{n}"]) for n in range(1, 5)]
        if task.state == "failed":
            body["status"] = task.fail_status
            body["errMessage"] = task.fail_message
        if not shaped:
            return body
        if task.state in ("queued", "running", "stalled") and self.faults.take(
            "progress", "progress", kinds=("preview_url",)
        ):
            token = task.images.get("preview")
            if token is None:
                token = task.images["preview"] = self._issue(task, "preview", now)
            body["imageUrl"] = self._url(task, token)
        rule = self.faults.take("progress", "progress", kinds=("progress_format",))
        if rule is not None:
            body["progress"] = format_progress(progress, rule.format)
        return body

    def drain_webhooks(self) -> list[tuple[str, dict[str, Any]]]:
        """Advance time and hand over the webhook deliveries that became due."""
        with self._lock:
            self.advance()
            pending, self._webhooks = self._webhooks, []
            return pending

    def note_webhook(self, outcome: str) -> None:
        """Count a webhook outcome: attempted, succeeded, failed or suppressed."""
        with self._lock:
            self.webhook_stats[outcome] += 1

    # ---------------------------------------------------------------------------------- images
    def image(self, token: str, ttl: float | None = None) -> tuple[str, Task | None, ImageRef | None]:
        """Look a picture link up: ``("ok", task, ref)``, ``("expired", ...)`` or ``("missing", ...)``."""
        with self._lock:
            self.events["image_requests"] += 1
            ref = self.images.get(token)
            task = self.tasks.get(ref.task_id) if ref else None
            if ref is None or task is None:
                return "missing", None, None
            limit = self.config.image_ttl_seconds if ttl is None else ttl
            if self.clock() - ref.issued >= limit:
                self.events["image_expired"] += 1
                return "expired", task, ref
            self.events["images_served"] += 1
            self._mark("image")
            return "ok", task, ref

    def _mark(self, what: str) -> None:
        """Record the wall-clock time of the first and the latest ``what`` (caller holds the lock)."""
        now = time.time()
        self.timeline.setdefault(f"first_{what}", now)
        self.timeline[f"last_{what}"] = now

    # -------------------------------------------------------------------------------- snapshots
    def task_list(self) -> list[dict[str, Any]]:
        """Every task with its state and lineage, for tests that count duplicates."""
        with self._lock:
            self.advance()
            now = self.clock()
            return [
                {
                    "taskId": task.id,
                    "key": key_id(task.key),
                    "kind": task.kind,
                    "state": task.state,
                    "progress": task.progress_at(now),
                    "prompt": task.prompt,
                    "button": task.button,
                    "parentId": task.parent_id,
                    "cutting": task.cutting,
                    "webhook": task.webhook,
                    "createdAt": iso_z(task.created_at),
                }
                for task in self.tasks.values()
            ]

    def stats(self) -> dict[str, Any]:
        """A JSON-ready snapshot of counters (shape documented in the package docstring)."""
        with self._lock:
            self.advance()
            states = Counter(task.state for task in self.tasks.values())
            peaks = {key_id(key): state.peak for key, state in self._keys.items()}
            return {
                "requests": {name: self.requests[name] for name in ("imagine", "progress", "button")},
                "submissions": {name: self.submissions[name] for name in ("imagine", "button")},
                "answers": dict(self.answers),
                "answers_by_endpoint": {name: dict(c) for name, c in self.answers_by_endpoint.items()},
                "http_statuses": dict(self.http_statuses),
                "rate_limited": self.answers["429"],
                "rate_limited_by_limiter": self.events["rate_limited_by_limiter"],
                "peak_calls_per_second": peaks,
                "max_calls_per_second": max(peaks.values(), default=0),
                "calls_by_key": {key_id(key): state.calls for key, state in self._keys.items()},
                "quota_used": {key_id(key): state.quota_used for key, state in self._keys.items()},
                "webhooks": {
                    name: self.webhook_stats[name]
                    for name in ("attempted", "succeeded", "failed", "suppressed")
                },
                "tasks": {name: states[name] for name in TASK_STATES} | {"total": len(self.tasks)},
                "events": dict(self.events),
                "faults": self.faults.rules(),
                "config": self.config.public_dict(),
                "timeline": dict(self.timeline),
            }


def format_progress(progress: int, style: str) -> int | float | str:
    """Render progress as the service variants do: ``46``, ``46.5`` or ``"46%"``."""
    if style == "float":
        return float(progress) if progress in (0, 100) else progress + 0.5
    if style == "percent_string":
        return f"{progress}%"
    return progress


def _buttons_of(task: Task) -> tuple[str, ...]:
    """Buttons appear only on a finished task: a grid's 13, or an upscale's 4."""
    if task.state != "finished":
        return ()
    return GRID_BUTTONS if task.is_grid else UPSCALED_BUTTONS


def _options(params: dict[str, Any]) -> tuple[bool, str | None] | None:
    """The optional ``cutting`` and ``webhook`` of imagine/button, or ``None`` when invalid."""
    raw_cutting = params.get("cutting")
    cutting = False if raw_cutting is None or raw_cutting == "" else parse_bool(raw_cutting)
    if cutting is None:
        return None
    webhook = params.get("webhook")
    if webhook is None or webhook == "":
        return cutting, None
    if not isinstance(webhook, str) or not webhook.startswith(("http://", "https://")):
        return None
    return cutting, webhook


_NUMBERS = frozenset(
    {
        "time_scale",
        "imagine_seconds",
        "variation_seconds",
        "upscale_seconds",
        "image_ttl_seconds",
        "webhook_timeout",
    }
)
_INTS = frozenset({"max_running", "grid_size", "render_cache_entries", "png_compress_level", "port"})


def _check_type(name: str, value: Any) -> None:
    """Reject JSON values of the wrong type before they reach the frozen config."""

    def number(v: Any) -> bool:
        return isinstance(v, int | float) and not isinstance(v, bool)

    ok = True
    if name in _NUMBERS:
        ok = number(value)
    elif name in _INTS:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif name == "rate_limit":
        ok = value is None or number(value)
    elif name == "daily_quota":
        ok = value is None or (isinstance(value, int) and not isinstance(value, bool))
    elif name == "mirror_http_status":
        ok = isinstance(value, bool)
    elif name in ("keys", "banned_words"):
        ok = (value is None and name == "keys") or (
            isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)
        )
    elif name in ("public_url", "host"):
        ok = value is None or isinstance(value, str)
    if not ok:
        raise TypeError(f"bad value for {name}: {value!r}")


def _error(status: int, message: str, *, headers: dict[str, str] | None = None) -> Answer:
    return Answer(status, {"status": status, "errMessage": message}, headers=dict(headers or {}))
