"""What may be shown of a URL, an error text or a secret: never a key, a password or a signed query.

Signed CDN links carry their signature in the query string, and proxy URLs may carry a password in
their user part; logs, exceptions and XComs name URLs only through :func:`redact_url` and
:func:`scrub`.

The API key is registered with Airflow's secrets masker in every form it takes
(:func:`register_secret`), and the masker is asked whether a value holds a secret it knows
(:func:`mask_known_secrets`) before that value may leave in a paid call. Airflow is imported only
inside those functions: :mod:`.images` uses this module without a configured Airflow.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from pydantic import JsonValue

# "?" followed by at least one non-separator character: a query string inside an exception text.
_QUERY_IN_TEXT = re.compile(r"\?[^\s'\"<>()\[\]]+")


def redact_url(url: str) -> str:
    """Return ``url`` without user info, query string and fragment: safe for logs and messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def scrub(text: object) -> str:
    """Return ``text`` with query strings dropped, e.g. a ``requests`` error that quotes a URL."""
    return _QUERY_IN_TEXT.sub("?<redacted>", str(text))


# -- secrets: what Airflow's masker is told, and asked ------------------------------------------


def secret_forms(secret: str) -> list[str]:
    """Return every form ``secret`` takes in text: as is, in its ``Authorization`` header, and escaped.

    Airflow's masker looks for exact text, so a key quoted by a library's error as ``repr`` shows
    a str or bytes (``b'Bearer sk-...'``, a backslash doubled) would slip past it.
    """
    plain = [secret, f"Bearer {secret}"]
    escaped = [repr(form)[1:-1] for form in plain] + [
        repr(form.encode("utf-8", "backslashreplace"))[2:-1] for form in plain
    ]
    return list(dict.fromkeys(plain + escaped))


def hide(text: str, secrets: Iterable[str]) -> str:
    """Return ``text`` with each of ``secrets`` replaced by ``***``, longest first."""
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, "***")
    return text


def exception_shows(exc: BaseException, secrets: Iterable[str]) -> bool:
    """Return whether the text, arguments or attributes of ``exc`` or its chain hold one of ``secrets``."""
    wanted = [secret for secret in secrets if secret]
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        texts = (str(current), repr(current), repr(current.args), repr(getattr(current, "__dict__", {})))
        if any(secret in text for text in texts for secret in wanted):
            return True
        pending += [current.__cause__, current.__context__]
    return False


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
