"""The submitting side of webhook completion: one token per paid task, registered before paying.

When the LotImage connection has a ``webhook_base_url`` and a submitting operator will wait in the
triggerer,
the operator asks :meth:`WebhookCompletion.open` for the webhook URL of the paid call it is about
to make: a fresh token is minted and registered in Redis for this task
instance (the token's SHA-256 only) before the call, so a delivery can never arrive for a token
the route does not know. After the call the registration is bound to the new LotImage task
(:meth:`bind`), the token is masked in the logs, and the trigger is given the SHA-256 to watch.

Webhook completion never costs a paid task: if Redis is away or unusable the call is made without
a webhook and the wait polls as before. A user's own ``webhook`` wins (the service takes one URL),
and so does a wait in the worker, which polls (its slot is held either way).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from airflow_provider_lotimage import config
from airflow_provider_lotimage.client.webhook import mint_token, token_key, webhook_url
from airflow_provider_lotimage.webhooks.redis_store import Registration, WebhookStore, store_for

if TYPE_CHECKING:
    from airflow.sdk import Context

log = logging.getLogger(__name__)

#: Seconds a registration outlives the wait's timeout, for a wait without one: a day, the life of
#: the service's picture links.
DEFAULT_TTL = 86400.0


class WebhookCompletion:
    """The webhook of one paid call of one task try (see the module doc).

    :param base_url: the connection's ``webhook_base_url`` (``None``: off).
    :param wanted: whether this wait would use it (deferrable and waiting).
    :param timeout: the wait's timeout in seconds (``None``: :data:`DEFAULT_TTL`).
    """

    def __init__(self, base_url: str | None, *, wanted: bool, timeout: float | None) -> None:
        self.base_url = base_url if wanted else None
        self.ttl = (timeout or DEFAULT_TTL) + 600.0
        #: The token's SHA-256 once registered (``None``: no webhook for this call).
        self.key: str | None = None
        self._token = ""
        self._store: WebhookStore | None = None

    def open(self, context: Context) -> str | None:
        """Register a new token for this task instance; return its URL (``None``: poll only)."""
        if self.base_url is None:
            return None
        try:
            self._store = store_for(config.webhook_redis_conn_id())
        except Exception as exc:
            log.warning("Webhook completion off for this task (%s); polling instead", exc)
            return None
        token = self._token = mint_token()
        ti = context["ti"]
        owner = Registration(ti.dag_id, ti.task_id, ti.run_id, int(getattr(ti, "map_index", -1)))
        if not self._store.register(token_key(token), owner, self.ttl):
            return None
        self.key = token_key(token)
        return webhook_url(self.base_url, token)

    def bind(self, lotimage_task_id: str) -> None:
        """Tie the registered token to the task the paid call made; mask it in logs from now on.

        Masked only now: the paid call refuses a webhook holding a secret Airflow masks (a
        template could otherwise send a password away), and this URL is the one exception.
        """
        if self._store is not None and self.key is not None:
            _mask(self._token)
            self._store.bind(self.key, lotimage_task_id)


def _mask(token: str) -> None:
    """Register the token with Airflow's masker: the URL holding it is as secret as a password."""
    from airflow.providers.common.compat.sdk import mask_secret

    mask_secret(token)
