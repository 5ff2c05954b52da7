"""Counters that tests assert on, and the JSON snapshots built from them.

Kept apart from the rules so that counting can never change an answer: the engine reports what
happened, this module only tallies it and renders the documented shapes of ``stats()`` and
``task_list()`` (see the package docstring). Nothing here locks; the engine calls it under its lock.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from typing import TYPE_CHECKING, Any

from lotimage_emulator.models import TASK_STATES, iso_z, key_id

if TYPE_CHECKING:
    from lotimage_emulator.config import EmulatorConfig
    from lotimage_emulator.models import KeyState, Task

#: Endpoints and webhook outcomes always listed in ``stats()``, even at zero, so tests can index.
_REQUEST_ENDPOINTS = ("imagine", "progress", "button")
_PAID_ENDPOINTS = ("imagine", "button")
_WEBHOOK_OUTCOMES = ("attempted", "succeeded", "failed", "suppressed")
#: Webhook fault tallies, listed once they are not zero: the four outcomes above were the whole
#: ``webhooks`` object before these faults existed, and tests compare it as a whole.
_WEBHOOK_FAULTS = ("delayed", "duplicated")
#: Webhook POSTs kept for ``webhook_log()``: the latest ones, so a long load run stays bounded.
DELIVERY_LOG_SIZE = 10_000


class Counters:
    """Every tally the emulator keeps, reset as a whole by ``Engine.reset``."""

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.submissions: Counter[str] = Counter()
        self.answers: Counter[str] = Counter()
        self.http_statuses: Counter[str] = Counter()
        self.answers_by_endpoint: dict[str, Counter[str]] = {}
        self.events: Counter[str] = Counter()
        self.webhooks: Counter[str] = Counter()
        #: One record per webhook POST (see ``Emulator.webhook_log``), oldest first.
        self.deliveries: deque[dict[str, Any]] = deque(maxlen=DELIVERY_LOG_SIZE)
        #: Wall-clock (epoch) seconds of the first/last paid submission and picture served.
        self.timeline: dict[str, float] = {}

    def answer(self, endpoint: str, label: str, http_status: int | None) -> None:
        """Count what was answered: body status (or ``dropped``/``malformed``) and HTTP status."""
        self.answers[label] += 1
        self.answers_by_endpoint.setdefault(endpoint, Counter())[label] += 1
        if http_status is not None:
            self.http_statuses[str(http_status)] += 1

    def mark(self, what: str) -> None:
        """Record the wall-clock time of the first and the latest ``what``.

        Wall clock rather than the engine's monotonic one, so a benchmark can line these times
        up with its own logs.
        """
        now = time.time()
        self.timeline.setdefault(f"first_{what}", now)
        self.timeline[f"last_{what}"] = now

    def snapshot(
        self,
        tasks: dict[str, Task],
        keys: dict[str, KeyState],
        faults: list[dict[str, Any]],
        config: EmulatorConfig,
    ) -> dict[str, Any]:
        """Return a JSON-ready ``stats()`` of these counters, the tasks, the keys' use, faults and config."""
        states = Counter(task.state for task in tasks.values())
        peaks = {key_id(key): state.peak for key, state in keys.items()}
        return {
            "requests": {name: self.requests[name] for name in _REQUEST_ENDPOINTS},
            "submissions": {name: self.submissions[name] for name in _PAID_ENDPOINTS},
            "answers": dict(self.answers),
            "answers_by_endpoint": {name: dict(c) for name, c in self.answers_by_endpoint.items()},
            "http_statuses": dict(self.http_statuses),
            "rate_limited": self.answers["429"],
            "rate_limited_by_limiter": self.events["rate_limited_by_limiter"],
            "peak_calls_per_second": peaks,
            "max_calls_per_second": max(peaks.values(), default=0),
            "calls_by_key": {key_id(key): state.calls for key, state in keys.items()},
            "quota_used": {key_id(key): state.quota_used for key, state in keys.items()},
            "webhooks": {name: self.webhooks[name] for name in _WEBHOOK_OUTCOMES}
            | {name: self.webhooks[name] for name in _WEBHOOK_FAULTS if self.webhooks[name]},
            "tasks": {name: states[name] for name in TASK_STATES} | {"total": len(tasks)},
            "events": dict(self.events),
            "faults": faults,
            "config": config.public_dict(),
            "timeline": dict(self.timeline),
        }


def task_rows(tasks: dict[str, Task], now: float) -> list[dict[str, Any]]:
    """Every task with its state and lineage at ``now``, for tests that count duplicates."""
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
            "timing": task_timing(task),
        }
        for task in tasks.values()
    ]


def task_timing(task: Task) -> dict[str, Any]:
    """Seconds a task queued and ran, its reads and how late the first read saw its end.

    Read times count from the submission: what polling costs, and what it adds to the wall time.
    """

    def seconds(start: float | None, end: float | None) -> float | None:
        return None if start is None or end is None else round(end - start, 3)

    return {
        "queuedSeconds": seconds(task.submitted, task.started),
        "runSeconds": seconds(task.started, task.ended),
        "readsAt": [round(at - task.submitted, 2) for at in task.reads],
        "endSeenAfterSeconds": seconds(task.ended, task.end_seen),
    }
