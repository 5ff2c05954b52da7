"""The headers every answer of the gallery carries, set by one ASGI middleware.

The pages load only their own stylesheet, script and pictures (no inline script or style, nothing
from another origin), so the policy allows only ``'self'``. ``frame-ancestors 'self'`` lets the
Airflow UI show the gallery in its same-origin iframe, and nobody else frame it;
``X-Content-Type-Options: nosniff`` keeps a browser from reading a served file as anything but the
type it is served as (a "picture" that is really HTML stays a picture).
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import MutableHeaders

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'self'"
)

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "SAMEORIGIN",
    "Referrer-Policy": "same-origin",
}


class SecurityHeaders:
    """ASGI middleware: add :data:`SECURITY_HEADERS` to every HTTP answer of the wrapped app."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Pass the call on, adding the headers to the start of the answer."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)
