"""What may be shown of a URL or an error text: never a key, a password or a signed query.

Signed CDN links carry their signature in the query string, and proxy URLs may carry a password in
their user part; logs, exceptions and XComs name URLs only through these two functions.
"""

from __future__ import annotations

import re
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
