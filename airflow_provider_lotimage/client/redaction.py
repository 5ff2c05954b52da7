"""What may be shown of a URL, an error text or a secret: never a key, a password or a signed query.

Signed CDN links carry their signature in the query string, and proxy URLs may carry a password in
their user part; logs, exceptions and XComs name URLs only through :func:`redact_url` and
:func:`scrub`.

Every form a secret takes in text (:func:`secret_forms`) is what Airflow's secrets masker is told
about the API key and what an error is searched for; telling and asking the masker is
:mod:`airflow_provider_lotimage.utils.secrets`, since only it imports Airflow.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

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


# -- secrets: the forms they take, and where they show ----------------------------------------


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
