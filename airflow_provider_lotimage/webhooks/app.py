"""The webhook route, mounted by the plugin on the api-server under ``/lotimage-webhooks``.

``POST /lotimage-webhooks/deliveries?token=<token>`` is where the service delivers a finished
task. The service cannot log in, so Airflow's auth does not apply here: the token in the URL is the credential
(:mod:`airflow_provider_lotimage.client.webhook`). What a request can cause is bounded, cheapest
refusal first, and none of it touches the metadata database:

1. a token that is not well formed: 404, nothing looked up;
2. an unknown, expired or forgotten token (its wait ended): 404 after one Redis ``GET`` of the
   token's SHA-256. The token itself is never compared: its hash is the lookup key, so how long a
   lookup takes says nothing about the token (finding a token from its hash is finding a
   SHA-256 preimage);
3. a body larger than :data:`~airflow_provider_lotimage.client.webhook.MAX_DELIVERY_BYTES`: 413,
   read no further; a body that names no task: 400;
4. a body naming another LotImage task than the one the token was bound to (compared with
   :func:`hmac.compare_digest`): 404;
5. otherwise the delivery is recorded (one ``SET``) and answered 204. Recording it again (a
   duplicate) only moves its time: the trigger reads at most once per delivery it sees.

A Redis that does not answer: 503 (the service may deliver again; polling covers a loss).
"""

from __future__ import annotations

import hmac
import logging
import time
from typing import Any

from fastapi import FastAPI, Request, Response, status

from airflow_provider_lotimage import config
from airflow_provider_lotimage.client.webhook import (
    DELIVERY_ROUTE,
    MAX_DELIVERY_BYTES,
    Delivery,
    delivered_task_id,
    token_key,
    well_formed,
)
from airflow_provider_lotimage.webhooks.redis_store import WebhookStore, astore_for

log = logging.getLogger(__name__)

_NO_STORE = {"Cache-Control": "no-store"}


class _TooLarge(Exception):
    """The body is longer than a delivery can be."""


async def _bounded_body(request: Request) -> bytes:
    """Read the body, giving up past :data:`MAX_DELIVERY_BYTES` (a declared length is checked first)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_DELIVERY_BYTES:
        raise _TooLarge
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_DELIVERY_BYTES:
            raise _TooLarge
    return bytes(body)


def _answer(code: int) -> Response:
    return Response(status_code=code, headers=_NO_STORE)


class Deliveries:
    """The route's state: the store, found once per process (reading its connection once)."""

    def __init__(self) -> None:
        self._store: WebhookStore | None = None

    async def store(self) -> WebhookStore:
        """Return the store of ``[lotimage] webhook_redis_conn_id``, found on the first delivery."""
        if self._store is None:
            self._store = await astore_for(config.webhook_redis_conn_id(server=True))
        return self._store

    async def accept(self, token: str, request: Request) -> Response:
        """Check one delivery, cheapest refusal first (see the module doc), and record it."""
        if not well_formed(token):
            return _answer(status.HTTP_404_NOT_FOUND)
        key = token_key(token)
        try:
            store = await self.store()
            async with store.connected() as client:
                return await self._record(store, client, key, request)
        except _TooLarge:
            return _answer(status.HTTP_413_CONTENT_TOO_LARGE)
        except Exception as exc:  # Redis away or its connection unusable: the service may retry
            log.warning("Webhook delivery not recorded: %s", type(exc).__name__)
            return _answer(status.HTTP_503_SERVICE_UNAVAILABLE)

    async def _record(self, store: WebhookStore, client: Any, key: str, request: Request) -> Response:
        owner = await store.registration(client, key)
        if owner is None:
            return _answer(status.HTTP_404_NOT_FOUND)
        task_id = delivered_task_id(await _bounded_body(request))
        if task_id is None:
            return _answer(status.HTTP_400_BAD_REQUEST)
        bound = owner.lotimage_task_id
        if bound is not None and not hmac.compare_digest(bound.encode(), task_id.encode()):
            return _answer(status.HTTP_404_NOT_FOUND)
        await store.record(client, key, Delivery(task_id, time.time()))
        return _answer(status.HTTP_204_NO_CONTENT)


def create_app() -> FastAPI:
    """Build the webhook app (no docs, no OpenAPI: one route for the service, nothing to browse)."""
    app = FastAPI(title="LotImage webhooks", openapi_url=None, docs_url=None, redoc_url=None)
    deliveries = Deliveries()

    @app.post(DELIVERY_ROUTE)
    async def deliver(request: Request, token: str = "") -> Response:
        """Record one delivery of a finished LotImage task (see the module doc)."""
        return await deliveries.accept(token, request)

    return app
