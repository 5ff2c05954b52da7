"""The emulator's engine: one lock around the tasks, the keys and the clock.

Everything here is plain Python guarded by one re-entrant lock, so the aiohttp handlers (server
thread) and a test's calls such as :meth:`Engine.stats` (test thread) can share it safely. Task
progress is computed from the clock rather than driven by timers: :meth:`Engine.advance` replays
what happened since the last look (slots freed, queued tasks started, tasks finished), so results
do not depend on how often anybody polls, and a time scale shrinks a 45 s job to a second.

The engine only orchestrates: what a request means and which refusal it earns is in
:mod:`.rules`, the settings and their validation in :mod:`.config`, the records in :mod:`.models`
and the tallies in :mod:`.stats`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from lotimage_emulator import rules
from lotimage_emulator.config import EmulatorConfig
from lotimage_emulator.faults import FaultBook
from lotimage_emulator.links import PictureLinks
from lotimage_emulator.models import (
    Answer,
    Delivery,
    ImageRef,
    KeyState,
    Task,
    format_progress,
    new_task_id,
)
from lotimage_emulator.stats import Counters, task_rows


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
        """Start from nothing: used at creation and by :meth:`reset`, so both agree."""
        self.tasks: dict[str, Task] = {}
        self.links = PictureLinks()
        self._keys: dict[str, KeyState] = {}
        self._webhooks: list[Delivery] = []
        self.counters = Counters()
        #: Days added to today's UTC date for the daily quota (:meth:`next_day`).
        self._day_offset = 0

    def reset(self) -> None:
        """Forget tasks, counters, pictures and faults; restore the start-up config."""
        with self._lock:
            self._reset_state()
            self.config = self.initial_config
            self.faults.clear()

    def set_config(self, **changes: Any) -> EmulatorConfig:
        """Change runtime knobs; new durations apply to tasks created afterwards.

        Validation is :meth:`EmulatorConfig.changed`'s (the config's own); the lock only makes the
        swap atomic for requests in flight.
        """
        with self._lock:
            self.config = self.config.changed(**changes)
            return self.config

    def _key(self, key: str) -> KeyState:
        """Return the state of ``key``, created on first sight (a key is tracked once it calls)."""
        state = self._keys.get(key)
        if state is None:
            state = self._keys[key] = KeyState()
        return state

    # ---------------------------------------------------------------------------------- counting
    def note_request(self, endpoint: str, key: str | None) -> None:
        """Count a call as it arrives (before any fault), for ``requests`` and the per-key peak."""
        with self._lock:
            self.counters.requests[endpoint] += 1
            if key is not None:
                self._key(key).note_call(self.clock())

    def note_answer(self, endpoint: str, label: str, http_status: int | None) -> None:
        """Count what was answered: body status (or ``dropped``/``malformed``) and HTTP status."""
        with self._lock:
            self.counters.answer(endpoint, label, http_status)

    def note_event(self, name: str) -> None:
        """Count a fault-related event (``dropped_connections``, ``delays``...)."""
        with self._lock:
            self.counters.events[name] += 1

    def note_webhook(self, outcome: str, times: int = 1) -> None:
        """Count a webhook event: attempted, succeeded, failed, suppressed, delayed or duplicated."""
        with self._lock:
            self.counters.webhooks[outcome] += times

    def note_delivery(self, record: dict[str, Any]) -> None:
        """Record one webhook POST that was answered or failed, and count its outcome."""
        with self._lock:
            self.counters.deliveries.append(record)
            self.counters.webhooks[record["outcome"]] += 1

    def webhook_log(self) -> list[dict[str, Any]]:
        """Every webhook POST recorded (oldest first; the latest :data:`~.stats.DELIVERY_LOG_SIZE`)."""
        with self._lock:
            return [dict(record) for record in self.counters.deliveries]

    def prompt_of(self, endpoint: str, params: dict[str, Any] | None) -> str | None:
        """Return the prompt an API call is about, for fault rules that pick a prompt.

        An ``imagine``'s own prompt; for ``button`` and ``task/progress`` the prompt of the task the
        call names (a button task inherits its parent's). ``None`` when there is none to know:
        undecodable body, no such task.
        """
        if params is None:
            return None
        if endpoint == "imagine":
            prompt = params.get("prompt")
            return prompt if isinstance(prompt, str) else None
        task_id = params.get("taskId")
        if not isinstance(task_id, str):
            return None
        with self._lock:
            task = self.tasks.get(task_id.strip())
            return task.prompt if task is not None else None

    # -------------------------------------------------------------------------------- endpoints
    def _gate(self, key: str | None) -> Answer | None:
        """Auth, then rate limit, then daily quota: the order a gateway would check them in."""
        config = self.config
        refusal = rules.key_refusal(config, key)
        if refusal is not None:
            return refusal
        assert key is not None
        state = self._key(key)
        refusal = rules.rate_refusal(state, self.clock(), config.rate_limit)
        if refusal is not None:
            self.counters.events["rate_limited_by_limiter"] += 1
            return refusal
        return rules.quota_refusal(state, self.quota_day(), config.daily_quota)

    # ---------------------------------------------------------------------------------- quota day
    def quota_day(self) -> str:
        """Return the UTC day (``YYYY-MM-DD``) the daily quota is counted in.

        Today's date at UTC, moved on by :meth:`next_day`: a quota that resets at midnight UTC
        cannot be tested by waiting for midnight.
        """
        with self._lock:
            return (datetime.now(UTC) + timedelta(days=self._day_offset)).date().isoformat()

    def next_day(self, days: int = 1) -> str:
        """Start a later quota day now, as midnight UTC would: every key's daily count starts again.

        Only the quota's day moves; task times, ``createdAt`` and picture links keep the real clock,
        so tasks created before keep running and can be read on the new day.

        :param days: how many days to move on (at least 1).
        :return: the new quota day.
        """
        if not isinstance(days, int) or isinstance(days, bool) or days < 1:
            raise ValueError(f"days must be a whole number of at least 1, got {days!r}")
        with self._lock:
            self._day_offset += days
            today = self.quota_day()
            for state in self._keys.values():
                state.quota_day, state.quota_used = today, 0
            return today

    def call(self, endpoint: str, key: str | None, params: dict[str, Any] | None, base_url: str) -> Answer:
        """Handle one API call whose body was decoded to ``params`` (``None``: undecodable)."""
        with self._lock:
            gate = self._gate(key)
            if gate is not None:
                return gate
            assert key is not None
            if params is None:
                return rules.error(400, rules.MSG_INVALID)
            self.advance()
            if endpoint == "imagine":
                return self._imagine(key, params, base_url)
            if endpoint == "progress":
                return self._progress(key, params)
            if endpoint == "button":
                return self._button(key, params, base_url)
            raise ValueError(f"unknown endpoint {endpoint!r}")

    def _imagine(self, key: str, params: dict[str, Any], base_url: str) -> Answer:
        """Create an imagine task if the request passes the rules."""
        request = rules.imagine_request(params, self.config.banned_words)
        if isinstance(request, Answer):
            return request
        task = self._create(key, "imagine", *request, base_url=base_url, endpoint="imagine")
        return _accepted(task)

    def _progress(self, key: str, params: dict[str, Any]) -> Answer:
        """Show a task of ``key`` as it is now; the body's status is the answer's."""
        task_id = rules.progress_request(params)
        if isinstance(task_id, Answer):
            return task_id
        task = rules.owned(self.tasks.get(task_id), key)
        if isinstance(task, Answer):
            return task
        body = self._progress_body(task, shaped=True)
        task.reads.append(self.clock())
        if task.ended is not None and task.end_seen is None:
            task.end_seen = task.reads[-1]
        return Answer(int(body["status"]), body, task_id=task.id)

    def _button(self, key: str, params: dict[str, Any], base_url: str) -> Answer:
        """Press a button on a finished task of ``key``, creating the task it asks for."""
        request = rules.button_request(params)
        if isinstance(request, Answer):
            return request
        task_id, label, cutting, webhook = request
        parent = rules.owned(self.tasks.get(task_id), key)
        if isinstance(parent, Answer):
            return parent
        meaning = rules.press(parent, label)
        if isinstance(meaning, Answer):
            return meaning
        kind, quadrant = meaning
        task = self._create(
            key,
            kind,
            parent.prompt,
            cutting,
            webhook,
            base_url=base_url,
            endpoint="button",
            parent=parent,
            button=label,
            quadrant=quadrant,
        )
        return _accepted(task)

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
        """Store a new paid task and give it a running slot, or queue it behind the key's others."""
        config = self.config
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
            duration=config.task_seconds(kind),
            parent_id=parent.id if parent else None,
            button=button,
            quadrant=quadrant,
        )
        self._doom(task, endpoint)
        self.tasks[task.id] = task
        self.counters.submissions[endpoint] += 1
        self.counters.mark("submit")
        state = self._key(key)
        if len(state.running) < config.max_running:
            state.start(task, task.submitted)
        else:
            state.queue.append(task.id)
        self.advance()
        return task

    def _doom(self, task: Task, endpoint: str) -> None:
        """Apply the task faults, decided at creation so the outcome is fixed however one polls."""
        rule = self.faults.take("task", endpoint, kinds=("fail_task", "stall"), prompt=task.prompt)
        if rule is not None:
            task.end_state = "failed" if rule.kind == "fail_task" else "stalled"
            task.end_progress = int(rule.progress or 0)
            task.fail_status = int(rule.status or 400)
            task.fail_message = rule.err_message or ""
        if self.faults.take("task", endpoint, kinds=("no_image_url",), prompt=task.prompt) is not None:
            task.no_image_url = True

    # ----------------------------------------------------------------------------- simulation
    def advance(self) -> None:
        """Replay every slot release and task end up to now, in time order, per key."""
        with self._lock:
            now = self.clock()
            for state in self._keys.values():
                self._advance_key(state, now)

    def _advance_key(self, state: KeyState, now: float) -> None:
        """Free slots as tasks end and start queued ones at the moment a slot freed, not now."""
        while state.queue and len(state.running) < self.config.max_running:
            state.start(self.tasks[state.queue.popleft()], now)
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
                state.start(queued, max(end, queued.submitted))

    def _end(self, task: Task, at: float) -> None:
        """Finish, fail or stall ``task``: issue its picture links and queue its webhook."""
        task.state, task.ended = task.end_state, at
        if task.state == "finished" and not task.no_image_url:
            for variant in task.picture_variants:
                self.links.issue(task, variant, at)
        if task.webhook and task.state in ("finished", "failed"):
            body = self._progress_body(task, shaped=False)
            self._webhooks.append(Delivery(task.webhook, body, task.id, task.endpoint, task.prompt))

    def _progress_body(self, task: Task, *, shaped: bool) -> dict[str, Any]:
        """Build the ``task/progress`` body of ``task`` as it is now.

        ``shaped`` (an API read, not a webhook) renews expired links and applies the progress faults.
        """
        now = self.clock()
        if shaped:
            renewed = self.links.renew(task, now, self.config.image_ttl_seconds)
            if renewed:  # counted once it happens, like every event
                self.counters.events["links_renewed"] += renewed
        progress = task.progress_at(now)
        body = rules.progress_body(task, progress)
        if not shaped:
            return body
        if task.state in ("queued", "running", "stalled") and self.faults.take(
            "progress", "progress", kinds=("preview_url",), prompt=task.prompt
        ):
            token = task.images.get("preview") or self.links.issue(task, "preview", now)
            body["imageUrl"] = task.url(token)
        rule = self.faults.take("progress", "progress", kinds=("progress_format",), prompt=task.prompt)
        if rule is not None:
            body["progress"] = format_progress(progress, rule.format)
        return body

    def drain_webhooks(self) -> list[Delivery]:
        """Advance time and hand over the webhook deliveries that became due."""
        with self._lock:
            self.advance()
            pending, self._webhooks = self._webhooks, []
            return pending

    # ---------------------------------------------------------------------------------- images
    def image(self, token: str, ttl: float | None = None) -> tuple[str, Task | None, ImageRef | None]:
        """Look a picture link up: ``("ok", task, ref)``, ``("expired", ...)`` or ``("missing", ...)``."""
        with self._lock:
            events = self.counters.events
            events["image_requests"] += 1
            ref = self.links.find(token)
            task = self.tasks.get(ref.task_id) if ref else None
            if ref is None or task is None:
                return "missing", None, None
            limit = self.config.image_ttl_seconds if ttl is None else ttl
            if self.links.expired(ref, self.clock(), limit):
                events["image_expired"] += 1
                return "expired", task, ref
            events["images_served"] += 1
            self.counters.mark("image")
            return "ok", task, ref

    # -------------------------------------------------------------------------------- snapshots
    def task_list(self) -> list[dict[str, Any]]:
        """Every task with its state and lineage, for tests that count duplicates."""
        with self._lock:
            self.advance()
            return task_rows(self.tasks, self.clock())

    def stats(self) -> dict[str, Any]:
        """Return a JSON-ready snapshot of counters (shape documented in the package docstring)."""
        with self._lock:
            self.advance()
            return self.counters.snapshot(self.tasks, self._keys, self.faults.rules(), self.config)


def _accepted(task: Task) -> Answer:
    """Return the answer to a paid call that created ``task``: just its id, as the service does."""
    return Answer(200, {"status": 200, "taskId": task.id}, task_id=task.id)
