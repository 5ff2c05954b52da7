"""Webhook completion's tokens and deliveries: what a webhook URL holds and what a delivery says.

The service POSTs a finished (or failed) task's ``task/progress`` body to the ``webhook`` URL given
at submission. Deliveries carry no signature and may be late, duplicated or lost (the contract),
so the URL itself is the credential: it ends with a token of :data:`TOKEN_BYTES` random bytes,
minted per paid task. Only the token's SHA-256 (:func:`token_key`) is ever stored or handed on
(Redis keys, the trigger's arguments): whoever reads them cannot rebuild the URL. A delivery is
only a hint that the task is worth reading now; the wait confirms it with one read.

Airflow-free: the operators mint, the api-server's route checks, the trigger waits; all three use
these functions.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlencode

from airflow_provider_lotimage.client.validation import validate_task_id
from airflow_provider_lotimage.exceptions import LotImageInputError

#: Random bytes in a token: 256 bits, beyond guessing at any rate a route can be called.
TOKEN_BYTES = 32
#: What a token looks like (URL-safe base64 of :data:`TOKEN_BYTES`, no padding). Anything else is
#: refused before any lookup.
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_-]{43}")
#: Where the api-server plugin's webhook app is mounted; a webhook URL is the api-server's public
#: address, this prefix, :data:`DELIVERY_ROUTE` and the token.
WEBHOOK_PREFIX = "/lotimage-webhooks"
#: The route under :data:`WEBHOOK_PREFIX` that takes deliveries.
DELIVERY_ROUTE = "/deliveries"
#: The largest delivery body read: a ``task/progress`` body is well under 4 KiB.
MAX_DELIVERY_BYTES = 64 * 1024


def mint_token() -> str:
    """Return a fresh unguessable token for one paid task's webhook URL."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def well_formed(token: str) -> bool:
    """Whether ``token`` could be one :func:`mint_token` made (checked before any lookup)."""
    return TOKEN_PATTERN.fullmatch(token) is not None


def token_key(token: str) -> str:
    """Return the token's SHA-256 (hex): the only form stored, looked up and passed on."""
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def webhook_url(base_url: str, token: str) -> str:
    """Return the URL the service POSTs to: ``base_url`` (the api-server's public address) + route.

    The token is a query parameter named ``token``: Airflow's access log (3.3) shows the values of
    parameters with such names as ``***``, where a path would be logged as it is.
    """
    return f"{base_url.rstrip('/')}{WEBHOOK_PREFIX}{DELIVERY_ROUTE}?{urlencode({'token': token})}"


@dataclass(frozen=True)
class Delivery:
    """One delivery as recorded by the route: which LotImage task, and when it arrived.

    :param lotimage_task_id: the ``taskId`` the body named.
    :param received_at: epoch seconds when the route recorded it (a later one is a new hint).
    """

    lotimage_task_id: str
    received_at: float

    def to_json(self) -> str:
        """Return the record as stored."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes | None) -> Delivery | None:
        """Rebuild a stored record; ``None`` for nothing or anything malformed."""
        if not text:
            return None
        try:
            data: Any = json.loads(text)
            return cls(str(data["lotimage_task_id"]), float(data["received_at"]))
        except (ValueError, TypeError, KeyError):
            return None


def delivered_task_id(body: bytes) -> str | None:
    """Return the ``taskId`` a delivery body names, or ``None`` when it names none usable."""
    try:
        data: Any = json.loads(body)
        return validate_task_id(data["taskId"]) if isinstance(data, dict) else None
    except (ValueError, TypeError, KeyError, LotImageInputError):
        return None
