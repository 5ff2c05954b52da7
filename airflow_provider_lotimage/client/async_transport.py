"""How a LotImage call travels with ``aiohttp`` (the triggerer), honouring the same extras as ``requests``.

``aiohttp`` spells the connection's settings differently, so they are translated here once:
``proxies`` become a per-request ``proxy`` chosen as ``requests`` chooses it, ``verify`` and ``cert``
an ``ssl.SSLContext`` (cached: loading a CA bundle is slow, and a thousand triggers share a few
contexts), ``trust_env`` the session's own flag. Every trigger of an event loop shares one
``aiohttp`` session per ``trust_env`` value, so a thousand waits hold a handful of sockets.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import os
import ssl
import time
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import requests.utils
import yarl

from airflow_provider_lotimage.client import contract
from airflow_provider_lotimage.client.limiter import RateLimiter
from airflow_provider_lotimage.client.settings import ClientCert, ConnectionSettings
from airflow_provider_lotimage.client.transport import (
    Call,
    Reply,
    keyless,
    proxy_failure,
    tls_failure,
    unreachable,
    unsendable,
)
from airflow_provider_lotimage.exceptions import LotImageError, ReadTimeoutError, TransientError

_CA_BUNDLE_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


@dataclass(frozen=True)
class _LimitedRequest:
    """Rides on a request's trace context so the send-time trace can tell its limiter."""

    limiter: RateLimiter
    slot: float


def _send_time_trace() -> aiohttp.TraceConfig:
    """Tell the rate limiter the moment a request's headers really left.

    The limiter needs the moment of sending, not of permission: on a busy event loop the two can
    be a second apart. It is awaited: a Redis-held budget (scope ``redis``) is told over the network.
    """

    async def on_headers_sent(session: Any, context: Any, params: Any) -> None:
        request = context.trace_request_ctx
        if isinstance(request, _LimitedRequest):
            await request.limiter.asent(request.slot, time.time())

    trace = aiohttp.TraceConfig()
    trace.on_request_headers_sent.append(on_headers_sent)
    return trace


class SharedSessions:
    """One aiohttp session per event loop (and ``trust_env`` value), shared by its triggers.

    Reference-counted: the session closes when its last user leaves, so short-lived loops (tests,
    ``dag.test()``) close it cleanly while a triggerer's long-lived loop keeps one open.
    """

    def __init__(self) -> None:
        self._sessions: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[bool, tuple[aiohttp.ClientSession, int]]
        ] = weakref.WeakKeyDictionary()
        #: Sessions ever opened and callers ever served (for tests and benchmarks).
        self.opened = 0
        self.entered = 0

    @contextlib.asynccontextmanager
    async def use(self, *, trust_env: bool) -> AsyncIterator[aiohttp.ClientSession]:
        """Lend the loop's session for ``trust_env``, opening it if needed."""
        by_env = self._sessions.setdefault(asyncio.get_running_loop(), {})
        session, users = by_env.get(trust_env, (None, 0))
        if session is None or session.closed:
            session = aiohttp.ClientSession(trace_configs=[_send_time_trace()], trust_env=trust_env)
            users = 0
            self.opened += 1
        by_env[trust_env] = (session, users + 1)
        self.entered += 1
        try:
            yield session
        finally:
            session, users = by_env[trust_env]
            if users <= 1:
                del by_env[trust_env]
                await session.close()
            else:
                by_env[trust_env] = (session, users - 1)

    def count(self) -> int:
        """Return how many sessions are open (for tests and benchmarks)."""
        return sum(len(by_env) for by_env in self._sessions.values())

    def users(self) -> int:
        """Return how many callers are using a shared session right now."""
        return sum(users for by_env in self._sessions.values() for _, users in by_env.values())


shared_sessions = SharedSessions()


class AsyncTransport:
    """Sends calls through the loop's shared aiohttp session with the connection's settings.

    It holds the key's limiter because only it sees when a request really leaves: its send-time
    trace reports that moment to the limiter (``None``: a caller that paces nothing, told nothing).
    """

    def __init__(self, settings: ConnectionSettings, limiter: RateLimiter | None = None) -> None:
        self.settings = settings
        self.limiter = limiter
        self._ssl = ssl_for(settings)
        self._headers = {"Authorization": f"Bearer {settings.api_key}"}

    def session(self) -> contextlib.AbstractAsyncContextManager[aiohttp.ClientSession]:
        """Borrow the shared session for a call and its retries."""
        return shared_sessions.use(trust_env=self.settings.trust_env)

    async def send(self, session: aiohttp.ClientSession, call: Call[Any], slot: float) -> Reply:
        """Send ``call`` once, reporting the real send moment of ``slot`` to the limiter.

        :return: the raw reply, whatever its status.
        :raises LotImageError: the transport failed, classified by exception type, or the request
            could not be built; never showing the key (:func:`.transport.keyless`).
        """
        url = self.settings.url(call.path)
        proxy, proxy_login = self._proxy(url)
        # A plain-HTTP request goes to the proxy itself, so its login rides on the request; an
        # HTTPS one tunnels through CONNECT, which carries the login instead.
        tunnelled = url.startswith("https://")
        headers = self._headers if tunnelled or not proxy_login else {**self._headers, **proxy_login}
        failure: LotImageError
        cause: BaseException
        try:
            async with session.post(
                url,
                json=dict(call.body),
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.settings.timeout),
                allow_redirects=False,
                ssl=self._ssl,
                proxy=proxy,
                proxy_headers=proxy_login if tunnelled else None,
                trace_request_ctx=None if self.limiter is None else _LimitedRequest(self.limiter, slot),
            ) as response:
                content = await response.read()
                return Reply(
                    response.status, content, contract.parse_retry_after(response.headers.get("Retry-After"))
                )
        except (TimeoutError, aiohttp.ClientError) as exc:
            failure, cause = self._failure(exc, proxy), exc
        except ValueError as exc:  # aiohttp refusing a header value ("Forbidden control character")
            failure, cause = unsendable(exc, self.settings), exc
        raise keyless(failure, cause, self.settings)  # outside ``except``: no implicit context

    def _proxy(self, url: str) -> tuple[str | None, dict[str, str] | None]:
        """Return the proxy ``requests`` would pick for ``url``, and its login as a header.

        ``requests`` reads a proxy's user and password from its URL; aiohttp wants them as a
        ``Proxy-Authorization`` header (its ``proxy_auth`` argument is deprecated).
        """
        chosen = requests.utils.select_proxy(url, dict(self.settings.proxies))
        if not chosen:
            return None, None
        proxy_url = yarl.URL(chosen)
        if proxy_url.user is None:
            return chosen, None
        token = base64.b64encode(f"{proxy_url.user}:{proxy_url.password or ''}".encode()).decode()
        return str(proxy_url.with_user(None)), {"Proxy-Authorization": f"Basic {token}"}

    def _failure(self, exc: BaseException, proxy: str | None) -> LotImageError:
        """Classify an aiohttp failure by type, as :func:`.transport.requests_failure` does."""
        if isinstance(exc, aiohttp.ClientSSLError):
            return tls_failure(exc, self.settings)
        if isinstance(exc, aiohttp.ClientProxyConnectionError | aiohttp.ClientHttpProxyError):
            return proxy_failure(exc, self.settings, proxy)
        if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
            return unreachable(self.settings)
        if isinstance(exc, TimeoutError):
            return ReadTimeoutError("LotImage did not answer in time (read timeout)")
        return TransientError(
            f"the connection to LotImage broke before an answer came ({type(exc).__name__})"
        )

    def __repr__(self) -> str:
        return f"<AsyncTransport {self.settings.base_url}>"


def ssl_for(settings: ConnectionSettings) -> ssl.SSLContext | bool:
    """Return ``aiohttp``'s ``ssl`` argument for the connection's ``verify`` and ``cert``.

    ``verify=true`` trusts what ``requests`` trusts: ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` when
    ``trust_env`` allows, else the bundle ``requests`` ships.
    """
    verify = settings.verify
    if verify is True:
        from_env = [os.environ.get(name) for name in _CA_BUNDLE_VARIABLES] if settings.trust_env else []
        verify = next((path for path in from_env if path), requests.utils.DEFAULT_CA_BUNDLE_PATH)
    if verify is False and settings.cert is None:
        return False
    return _ssl_context(verify if isinstance(verify, str) else None, settings.cert)


@functools.lru_cache(maxsize=32)
def _ssl_context(ca_path: str | None, cert: ClientCert) -> ssl.SSLContext:
    """Build a client context trusting ``ca_path`` (``None``: verify nothing), presenting ``cert``."""
    if ca_path is None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif os.path.isdir(ca_path):
        context = ssl.create_default_context(capath=ca_path)
    else:
        context = ssl.create_default_context(cafile=ca_path)
    if isinstance(cert, tuple):
        context.load_cert_chain(cert[0], cert[1])
    elif cert:
        context.load_cert_chain(cert)
    return context
