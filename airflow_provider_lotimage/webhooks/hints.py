"""One wait's webhook deliveries: sleeps that a delivery cuts short.

A delivery is a hint, never the result: the contract's deliveries carry no signature, so a body
cannot be trusted, and whoever learnt a token could post anything under it. A delivery only ends
the wait's current sleep; the wait then reads the task once, and that read decides, as every
read does. A delivery's first read finds the task finished and ends the wait, which forgets the
token: duplicates and late deliveries then get 404 and change nothing. An out-of-order or forged
delivery costs at most one read, which finds the task unfinished, and the wait goes on (at most
:data:`MAX_HINTS` of them per wait); a lost one leaves the backed-off polling to find the end.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from airflow_provider_lotimage import config
from airflow_provider_lotimage.webhooks.listener import listener_for
from airflow_provider_lotimage.webhooks.redis_store import WebhookStore, astore_for

log = logging.getLogger(__name__)

#: Deliveries one wait acts on at most. The service delivers a task once (more when it duplicates,
#: which the first read ends); whoever learnt a token could post again and again, and each
#: delivery acted on costs a read of the key's budget: past this many, the wait only polls.
MAX_HINTS = 3


class Hints:
    """The webhook side of one wait for a LotImage task.

    :param key: the SHA-256 of the task's webhook token (``None``: no webhook: plain sleeps).
    :param lotimage_task_id: the task waited for; a delivery naming another is ignored.
    :param logger: where the wait logs (the trigger's).
    """

    def __init__(self, key: str | None, lotimage_task_id: str, logger: Any = log) -> None:
        self.key = key
        self.lotimage_task_id = lotimage_task_id
        self.log = logger
        #: ``received_at`` of the last delivery seen: only a newer one wakes the wait again.
        self.seen_at = 0.0
        #: Deliveries that may still cut a sleep short (:data:`MAX_HINTS`), then plain polling.
        self.hints_left = MAX_HINTS
        self._store: WebhookStore | None = None
        self._unusable = False

    async def pause(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if a delivery for this task comes first."""
        store = await self._get_store()
        if store is None or self.hints_left <= 0:
            await asyncio.sleep(seconds)
            return
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            delivery = await listener_for(store).wait(self.key or "", left, after=self.seen_at)
            if delivery is None:
                return
            self.seen_at = delivery.received_at
            if delivery.lotimage_task_id == self.lotimage_task_id:
                self.hints_left -= 1
                self.log.info("LotImage task %s: webhook delivered, reading it now", self.lotimage_task_id)
                return

    async def close(self) -> None:
        """End the wait's webhook: forget the token, so its URL answers 404 from now on."""
        store = await self._get_store()
        if store is not None and self.key is not None:
            await store.aforget(self.key)

    async def _get_store(self) -> WebhookStore | None:
        """Return the store of ``[lotimage] webhook_redis_conn_id`` (``None``: no key, or no usable Redis)."""
        if self.key is None or self._unusable:
            return None
        if self._store is None:
            try:
                self._store = await astore_for(config.webhook_redis_conn_id())
            except Exception as exc:
                self._unusable = True
                self.log.warning("Webhook completion off for this wait (%s); polling goes on", exc)
                return None
        return self._store
