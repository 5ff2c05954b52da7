"""Webhook deliveries: whether, when and how often a finished task's progress body is POSTed.

The contract says deliveries carry no signature and "may be late, duplicated or lost". The engine
queues a :class:`~.models.Delivery` when a task with a ``webhook`` finishes or fails; the
:class:`WebhookSender` asks the fault book what becomes of it (``drop_webhooks``,
``delay_webhooks``, ``duplicate_webhooks``), sends every copy from its own asyncio task at its own
time, so a late delivery never holds up another, and records each POST for ``webhook_log()``.

A webhook URL may carry the receiver's secret, since an unsigned delivery can only be
authenticated by its URL: a token in the query or in the last path segment. Logs and delivery
records therefore show :func:`display_url`, never the URL itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aiohttp import ClientError, ClientSession, ClientTimeout

from lotimage_emulator.models import dumps

if TYPE_CHECKING:
    from lotimage_emulator.engine import Engine
    from lotimage_emulator.models import Delivery

log = logging.getLogger("lotimage_emulator")

#: Characters of a URL's last path segment that logs and records keep (see :func:`display_url`).
SHOWN_SEGMENT_CHARS = 4


def display_url(url: str) -> str:
    """Return ``url`` as logs and records show it, with nothing that can hold a secret.

    No credentials, query or fragment, and the last path segment (the last one not empty: a
    trailing slash does not protect it) cut to :data:`SHOWN_SEGMENT_CHARS` characters and ``…``.

    Why the last segment: receivers that authenticate unsigned deliveries put their token in the
    query or at the end of the path (``/hooks/<token>``); routes name themselves before it. Four
    characters tell two receivers apart in a log while a token of the usual 20 or more characters
    keeps 16 or more unseen, too many to guess. Scheme, host and port stay, to say where it went.
    """
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port
    except ValueError:
        return "<unparsable URL>"
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    path = parts.path.rstrip("/")
    trailing = parts.path[len(path) :]
    head, slash, last = path.rpartition("/")
    if len(last) > SHOWN_SEGMENT_CHARS:
        last = last[:SHOWN_SEGMENT_CHARS] + "…"
    return f"{parts.scheme}://{netloc}{head}{slash}{last}{trailing}"


class WebhookSender:
    """Sends the engine's webhook deliveries with their faults; lives as long as the server."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._session: ClientSession | None = None
        self._sending: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Open the HTTP client session (inside the server's event loop)."""
        self._session = ClientSession()

    async def stop(self) -> None:
        """Cancel the deliveries still waiting or in flight, then close the session."""
        pending = list(self._sending)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._session is not None:
            await self._session.close()

    def dispatch(self, delivery: Delivery) -> None:
        """Decide the fate of ``delivery`` now and schedule each of its copies."""
        plan = self._plan(delivery)
        for attempt, wait in enumerate(plan, start=1):
            sending = asyncio.create_task(self._send(delivery, attempt, wait))
            self._sending.add(sending)
            sending.add_done_callback(self._sending.discard)

    def _plan(self, delivery: Delivery) -> list[float]:
        """Return when (seconds from now) each copy is sent: none when dropped, one normally.

        Each kind is taken once per delivery, so a rule's ``count`` counts deliveries; a dropped
        delivery consumes no delay or duplicate rule.
        """
        engine = self.engine

        def take(kind: str) -> Any:
            return engine.faults.take("webhook", delivery.endpoint, kinds=(kind,), prompt=delivery.prompt)

        if take("drop_webhooks") is not None:
            engine.note_webhook("suppressed")
            log.info("webhook of task %s to %s dropped", delivery.task_id, display_url(delivery.url))
            return []
        delay = take("delay_webhooks")
        duplicate = take("duplicate_webhooks")
        start = 0.0 if delay is None else float(delay.seconds)
        if delay is not None:
            engine.note_webhook("delayed")
        copies, spacing = 1, 0.0
        if duplicate is not None:
            copies, spacing = int(duplicate.copies or 2), float(duplicate.seconds)
            engine.note_webhook("duplicated", copies - 1)
        return [start + n * spacing for n in range(copies)]

    async def _send(self, delivery: Delivery, attempt: int, wait: float) -> None:
        """POST one copy after ``wait`` seconds; record it whether it was answered or not."""
        if wait > 0:
            await asyncio.sleep(wait)
        engine = self.engine
        engine.note_webhook("attempted")
        assert self._session is not None
        sent_at, status, error = time.time(), None, None
        try:
            async with self._session.post(
                delivery.url,
                data=dumps(delivery.body).encode("utf-8"),
                timeout=ClientTimeout(total=engine.config.webhook_timeout),
                headers={"Content-Type": "application/json"},
            ) as response:
                await response.read()
                status = response.status
        except (ClientError, TimeoutError, OSError, ValueError) as exc:
            error = type(exc).__name__  # not str(exc): some name the full URL
        ok = status is not None and 200 <= status < 300
        where = display_url(delivery.url)
        if ok:
            log.debug("webhook %d of task %s to %s: %s", attempt, delivery.task_id, where, status)
        else:
            reason = status or error
            log.warning("webhook %d of task %s to %s failed: %s", attempt, delivery.task_id, where, reason)
        engine.note_delivery(
            {
                "sent_at": sent_at,
                "url": where,
                "taskId": delivery.task_id,
                "attempt": attempt,
                "status": status,
                "error": error,
                "outcome": "succeeded" if ok else "failed",
            }
        )
