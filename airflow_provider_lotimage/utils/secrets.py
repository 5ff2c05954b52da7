"""Airflow's secrets masker and this provider: what it is told about the key, and asked about a text.

The API key is registered with the masker in every form it takes (:func:`register_secret`), as
soon as the hook reads it; and a prompt or a webhook, which leave in a paid call, is refused if it
holds a secret the masker knows (:func:`validate_prompt`, :func:`validate_webhook`): what leaves is
stored by the service and comes back unmasked in every result (XCom, sidecars, the gallery).
The forms of a secret, and how a text is searched for them, are the client's
(:mod:`airflow_provider_lotimage.client.redaction`), which runs without Airflow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_lotimage.client.redaction import secret_forms
from airflow_provider_lotimage.client.validation import check_prompt, check_webhook
from airflow_provider_lotimage.exceptions import LotImageInputError

if TYPE_CHECKING:
    from pydantic import JsonValue


def register_secret(secret: str) -> None:
    """Tell Airflow's masker every form of ``secret``, in this process and (in a task) its supervisor.

    Airflow registers a connection's password as it was stored; a key read with its whitespace
    stripped, and the header built from it, are forms only this provider knows.
    """
    from airflow.providers.common.compat.sdk import mask_secret

    forms: list[JsonValue] = [*secret_forms(secret)]
    mask_secret(forms)


async def aregister_secret(secret: str) -> None:
    """:func:`register_secret` from an event loop (a trigger), without blocking it."""
    from airflow_provider_lotimage.version_compat import amask_secret

    forms: list[JsonValue] = [*secret_forms(secret)]
    await amask_secret(forms)


def mask_known_secrets(text: str) -> str:
    """Return ``text`` with every secret Airflow's masker knows in this process shown as ``***``.

    The masker knows the passwords and extras of the connections read in this process (by a
    template such as ``{{ conn.x.password }}`` too), the Variables with a sensitive name, and what
    was registered with ``mask_secret``. ``redact`` is its public way to ask.
    """
    from airflow.providers.common.compat.sdk import redact

    masked = redact(text)
    return masked if isinstance(masked, str) else str(masked)


def refuse_known_secrets(text: str, *, name: str) -> str:
    """Refuse ``text`` if it holds a secret Airflow's masker knows; the error shows it as ``***``.

    A prompt or webhook leaves in a paid call, is stored by the service and comes back unmasked in
    the result (XCom, sidecars, the gallery): a template such as ``{{ conn.x.password }}`` in text
    read from data would send that password away. The masker knows every connection password read
    in this process (by such a template too), sensitive Variables and the API key, registered as
    the hook reads it. Values shorter than ``[logging] min_length_masked_secret`` it ignores.
    """
    masked = mask_known_secrets(text)
    if masked == text:
        return text
    at = max(masked.find("***"), 0)
    excerpt = masked[max(at - 60, 0) : at + 60]
    raise LotImageInputError(
        f"{name} holds a secret that Airflow masks (a connection's password or extra, a sensitive "
        f"Variable, the API key), shown here as ***: ...{excerpt!r}...; nothing was sent. Text read "
        "from data is rendered as a template: wrap it in airflow.sdk.literal() or pass it through XCom"
    )


def validate_prompt(prompt: Any, *, name: str = "prompt") -> str:
    """Return the prompt a paid call may send: well formed (``check_prompt``), holding no secret."""
    return refuse_known_secrets(check_prompt(prompt, name=name), name=name)


def validate_webhook(webhook: Any, *, name: str = "webhook") -> str | None:
    """Return the webhook a paid call may send: ``None``, or a URL (``check_webhook``) holding no secret."""
    url = check_webhook(webhook, name=name)
    return None if url is None else refuse_known_secrets(url, name=name)
