"""One description of a LotImage call, and how it travels with ``requests`` (workers).

A :class:`Call` says what to send and how to read the answer; a transport only moves bytes and
turns its own failures into this provider's errors, by exception type. The sync transport here and
the async one (:mod:`.async_transport`) are built from the same
:class:`~airflow_provider_lotimage.client.settings.ConnectionSettings`.

The session is composed from ``requests`` directly rather than borrowed from ``HttpHook``:
``HttpHook`` would send every unknown extra (``rate_limit``...) as an HTTP header, authenticate with
login/password, and has no async twin that honours ``cert`` and ``trust_env``. Composition keeps
the same extras meaning the same thing on both paths without touching another provider's internals.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

import requests
import urllib3.exceptions
from requests.auth import AuthBase

from airflow_provider_lotimage.client import contract
from airflow_provider_lotimage.client.redaction import exception_shows, hide, redact_url, scrub, secret_forms
from airflow_provider_lotimage.client.settings import ConnectionSettings
from airflow_provider_lotimage.exceptions import (
    ConnectionConfigError,
    LotImageError,
    ProxyError,
    ReadTimeoutError,
    ServiceUnreachableError,
    TLSError,
    TransientError,
)

T = TypeVar("T")


@dataclass(frozen=True)
class Reply:
    """What came back: HTTP status, body, and the ``Retry-After`` header in seconds."""

    status: int
    content: bytes
    retry_after: float | None


@dataclass(frozen=True)
class Call(Generic[T]):
    """One LotImage request, whichever transport carries it.

    ``paid`` calls create a task the key pays for; :mod:`.retry` resends them only when the service
    certainly did not receive them. ``kind`` is a paid task's kind (``client.schedule.KIND_*``),
    the tag its cost is counted under (:mod:`airflow_provider_lotimage.client.metrics`).
    """

    name: str
    path: str
    body: Mapping[str, Any]
    paid: bool
    parse: Callable[[Reply], T]
    kind: str | None = None


class BearerAuth(AuthBase):
    """Adds ``Authorization: Bearer``; its repr never shows the key."""

    def __init__(self, api_key: str) -> None:
        self._api_key = api_key

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        """Add the key's ``Authorization`` header to ``request``."""
        request.headers["Authorization"] = f"Bearer {self._api_key}"
        return request

    def __repr__(self) -> str:
        return "<BearerAuth ***>"


class _Session(requests.Session):
    """A session whose own ``verify`` beats ``REQUESTS_CA_BUNDLE``.

    Plain ``requests`` lets that variable override a session's CA bundle whenever ``trust_env`` is
    on (psf/requests#3829), so a connection's ``verify`` path would be ignored on any machine that
    sets it. Handing the session's value in as the request's restores the documented order: an
    explicit bundle wins, and ``verify=True`` still means "the environment's bundle, else certifi".
    """

    def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any) -> Any:
        return super().merge_environment_settings(
            url, proxies, stream, self.verify if verify is None else verify, cert
        )


def requests_session(settings: ConnectionSettings, *, with_key: bool) -> requests.Session:
    """Return a session with the connection's proxies, TLS and ``trust_env``; the key only if asked.

    Picture downloads use ``with_key=False``: CDN links need no credentials and must never see them.
    """
    session = _Session()
    session.proxies.update(settings.proxies)
    session.verify = settings.verify
    session.cert = settings.cert
    session.trust_env = settings.trust_env
    if with_key:
        session.auth = BearerAuth(settings.api_key)
    return session


class SyncTransport:
    """Sends calls with one ``requests`` session per hook."""

    def __init__(self, settings: ConnectionSettings) -> None:
        self.settings = settings
        self.session = requests_session(settings, with_key=True)

    def send(self, call: Call[Any]) -> Reply:
        """Send ``call`` once.

        :return: the raw reply, whatever its status.
        :raises LotImageError: the transport failed (see :func:`requests_failure`), or the request
            could not be built (see :func:`unsendable`); never showing the key (:func:`keyless`).
        """
        failure: LotImageError
        cause: BaseException
        try:
            response = self.session.post(
                self.settings.url(call.path),
                json=dict(call.body),
                timeout=self.settings.timeout,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            failure, cause = requests_failure(exc, self.settings), exc
        except ValueError as exc:  # http.client refusing a header value, an unencodable one...
            failure, cause = unsendable(exc, self.settings), exc
        else:
            with response:
                return Reply(
                    response.status_code,
                    response.content,
                    contract.parse_retry_after(response.headers.get("Retry-After")),
                )
        raise keyless(failure, cause, self.settings)  # outside ``except``: no implicit context

    def __repr__(self) -> str:
        return f"<SyncTransport {self.settings.base_url}>"


def requests_failure(exc: requests.RequestException, settings: ConnectionSettings) -> LotImageError:
    """Classify a ``requests`` failure by type, telling "never sent" apart from "answer lost"."""
    if isinstance(exc, requests.exceptions.SSLError):
        return tls_failure(exc, settings)
    if isinstance(exc, requests.exceptions.ProxyError):
        return proxy_failure(exc, settings)
    reason = _reason(exc)
    if isinstance(exc, requests.ConnectTimeout) or isinstance(reason, urllib3.exceptions.NewConnectionError):
        return unreachable(settings)
    if isinstance(exc, requests.Timeout):
        return ReadTimeoutError("LotImage did not answer in time (read timeout)")
    return TransientError(f"the connection to LotImage broke before an answer came ({type(reason).__name__})")


def unsendable(exc: ValueError, settings: ConnectionSettings) -> ConnectionConfigError:
    """Return the error of a request the HTTP library refused to build: nothing was sent.

    Final: the same connection builds the same request. :func:`~.settings.api_key` refuses the
    keys that cause this, so it is a backstop; the library's message is shown without the key.
    """
    detail = hide(scrub(exc), secret_forms(settings.api_key))[:200]
    return ConnectionConfigError(
        f"could not build the request to LotImage ({type(exc).__name__}: {detail}); nothing was sent. "
        f"Check the host and API key of connection {settings.conn_id!r}"
    )


def keyless(failure: LotImageError, cause: BaseException, settings: ConnectionSettings) -> LotImageError:
    """Return ``failure`` chained to ``cause``, unless the key shows anywhere in ``cause``'s chain.

    ``failure``'s own message is built from exception types and scrubbed texts; should the key
    still be in it, it is replaced by ``***``. Raise the result outside the ``except`` block that
    caught ``cause``, or Python chains ``cause`` back in as the implicit context.
    """
    secrets = secret_forms(settings.api_key)
    failure.__cause__ = None if exception_shows(cause, secrets) else cause
    failure.__suppress_context__ = True
    if any(secret in failure.message for secret in secrets):
        failure.message = hide(failure.message, secrets)
        failure.args = (failure._render(),)
    return failure


def unreachable(settings: ConnectionSettings) -> ServiceUnreachableError:
    """Return the error of a request that never left: safe to resend, even a paid one."""
    return ServiceUnreachableError(
        f"could not connect to LotImage at {settings.base_url} (connection refused or host unknown)"
    )


def tls_failure(exc: BaseException, settings: ConnectionSettings) -> TLSError:
    """Return the error of a failed handshake, with the certificate problem and the extra that fixes it."""
    cause = _find_ssl_error(exc)
    detail = getattr(cause, "verify_message", None) or getattr(cause, "reason", None) or type(exc).__name__
    return TLSError(
        f"TLS handshake with {urlsplit(settings.base_url).netloc} failed ({detail}); connection "
        f"{settings.conn_id!r}: set its extra 'verify' to the CA bundle that signed the server's "
        "certificate (or 'cert' if the server asks for a client certificate)"
    )


def proxy_failure(exc: BaseException, settings: ConnectionSettings, proxy: str | None = None) -> ProxyError:
    """Return the error of an unreachable or non-forwarding proxy, named without credentials."""
    shown = redact_url(proxy) if proxy else _proxy_shown(settings)
    return ProxyError(
        f"could not reach LotImage through the proxy {shown} (connection {settings.conn_id!r}, extra "
        f"'proxies'): {type(_reason(exc)).__name__}: {scrub(_reason(exc))[:200]}"
    )


def _proxy_shown(settings: ConnectionSettings) -> str:
    proxy = requests.utils.select_proxy(settings.base_url, dict(settings.proxies))
    return redact_url(proxy) if proxy else "from the environment (HTTP(S)_PROXY)"


def _reason(exc: BaseException) -> BaseException:
    """Return the underlying failure ``requests`` wrapped (urllib3 keeps it in ``MaxRetryError.reason``)."""
    inner = exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else exc
    reason = getattr(inner, "reason", None)
    return reason if isinstance(reason, BaseException) else inner


def _find_ssl_error(exc: BaseException) -> BaseException | None:
    """Find the ``ssl.SSLError`` somewhere in an exception's arguments, reasons or chain."""
    seen: set[int] = set()
    pending: list[Any] = [exc]
    while pending:
        item = pending.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        if isinstance(item, ssl.SSLError):
            return item
        seen.add(id(item))
        pending.extend([*item.args, getattr(item, "reason", None), item.__cause__, item.__context__])
        pending.append(getattr(item, "certificate_error", None))
    return None
