"""LotImageHook: every call this provider makes to LotImage, sync (HttpHook) and async (aiohttp)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp
import requests
from airflow.providers.common.compat.connection import get_async_connection, get_async_extra_dejson
from airflow.providers.http.hooks.http import HttpHook
from requests.auth import AuthBase

from airflow_provider_lotimage import api
from airflow_provider_lotimage.api import TaskProgress
from airflow_provider_lotimage.exceptions import (
    AuthError,
    InvalidRequestError,
    LotImageError,
    RateLimitedError,
    ServiceUnreachableError,
    TaskNotFoundError,
    TransientError,
)
from airflow_provider_lotimage.ratelimit import SlidingWindowLimiter, key_identity, limiter_for
from airflow_provider_lotimage.retry import RetryPolicy
from airflow_provider_lotimage.validation import (
    validate_button,
    validate_cutting,
    validate_prompt,
    validate_task_id,
    validate_webhook,
)
from airflow_provider_lotimage.waiting import DEFAULT_STALL_TIMEOUT, ProgressWatch

if TYPE_CHECKING:
    from airflow.sdk import Connection

T = TypeVar("T")

#: Connection extras that configure this hook; they must not leak into HTTP headers, which is
#: where HttpHook puts any extra it does not know.
LOTIMAGE_EXTRAS = ("rate_limit", "rate_limit_scope", "timeout")
DEFAULT_TIMEOUT = 30.0
#: The taskId used by ``test_connection``: a read of an unknown task checks the key for free.
CONNECTION_PROBE_TASK_ID = "airflow-connection-test"


class _BearerAuth(AuthBase):
    """Adds ``Authorization: Bearer``; its repr never shows the key."""

    def __init__(self, api_key: str) -> None:
        self._api_key = api_key

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._api_key}"
        return request

    def __repr__(self) -> str:
        return "<BearerAuth ***>"


@dataclass(frozen=True)
class _Settings:
    """What a LotImage connection says, read once per hook."""

    base_url: str
    api_key: str
    rate_limit: float
    rate_limit_scope: str
    timeout: float

    @property
    def limiter(self) -> SlidingWindowLimiter:
        return limiter_for(key_identity(self.base_url, self.api_key), self.rate_limit, self.rate_limit_scope)

    def __repr__(self) -> str:
        return f"_Settings(base_url={self.base_url!r}, rate_limit={self.rate_limit}, timeout={self.timeout})"


def _base_url(host: str | None, port: int | None) -> str:
    host = (host or api.DEFAULT_BASE_URL).strip().rstrip("/")
    if "://" not in host:
        host = f"https://{host}"
    if port and f":{port}" not in host.split("://", 1)[1]:
        host = f"{host}:{port}"
    return host


def _settings(conn: Connection, extra: dict[str, Any]) -> _Settings:
    if not conn.password:
        raise AuthError(
            f"Connection {conn.conn_id!r} has no API key: put the LotImage key in its password field"
        )
    try:
        rate = float(extra.get("rate_limit") or api.DEFAULT_RATE_LIMIT_PER_SECOND)
        timeout = float(extra.get("timeout") or DEFAULT_TIMEOUT)
    except (TypeError, ValueError) as err:
        raise InvalidRequestError(
            f"Connection {conn.conn_id!r}: rate_limit and timeout must be numbers"
        ) from err
    return _Settings(
        base_url=_base_url(conn.host, conn.port),
        api_key=conn.password,
        rate_limit=rate,
        rate_limit_scope=str(extra.get("rate_limit_scope") or "host"),
        timeout=timeout,
    )


def _requests_error(exc: requests.RequestException) -> LotImageError:
    """Map a ``requests`` failure, telling "never sent" apart from "sent, answer lost"."""
    if isinstance(exc, requests.ConnectTimeout):
        return ServiceUnreachableError(f"could not connect to LotImage: {type(exc).__name__}")
    if isinstance(exc, requests.ConnectionError):
        cause = exc.args[0] if exc.args else None
        reason = getattr(cause, "reason", cause)
        text = f"{type(reason).__name__}: {reason}"
        if "NewConnectionError" in text or "ConnectionRefused" in text or "NameResolution" in text:
            return ServiceUnreachableError(
                "could not connect to LotImage (connection refused or host unknown)"
            )
        return TransientError(
            f"the connection to LotImage broke before an answer came ({type(reason).__name__})"
        )
    if isinstance(exc, requests.Timeout):
        return TransientError("LotImage did not answer in time (read timeout)")
    return TransientError(f"HTTP failure talking to LotImage: {type(exc).__name__}")


def _aiohttp_error(exc: BaseException) -> LotImageError:
    if isinstance(exc, aiohttp.ClientConnectorError):
        return ServiceUnreachableError("could not connect to LotImage (connection refused or host unknown)")
    if isinstance(exc, asyncio.TimeoutError):
        return TransientError("LotImage did not answer in time (read timeout)")
    return TransientError(f"the connection to LotImage broke before an answer came ({type(exc).__name__})")


@dataclass(frozen=True)
class _LimitedRequest:
    limiter: SlidingWindowLimiter
    slot: float


class _SharedSessions:
    """One aiohttp session per event loop, shared by every trigger on that loop.

    Reference-counted: the session closes when its last user leaves, so short-lived loops (tests,
    ``dag.test()``) close it cleanly while a triggerer's long-lived loop keeps one open.
    """

    def __init__(self) -> None:
        self._sessions: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[aiohttp.ClientSession, int]
        ]
        self._sessions = weakref.WeakKeyDictionary()
        #: Sessions ever opened and callers ever served (for tests and benchmarks).
        self.opened = 0
        self.entered = 0

    @contextlib.asynccontextmanager
    async def use(self) -> AsyncIterator[aiohttp.ClientSession]:
        loop = asyncio.get_running_loop()
        session, users = self._sessions.get(loop, (None, 0))
        if session is None or session.closed:
            session, users = aiohttp.ClientSession(trace_configs=[_send_time_trace()]), 0
            self.opened += 1
        self._sessions[loop] = (session, users + 1)
        self.entered += 1
        try:
            yield session
        finally:
            session, users = self._sessions[loop]
            if users <= 1:
                del self._sessions[loop]
                await session.close()
            else:
                self._sessions[loop] = (session, users - 1)

    def count(self) -> int:
        """How many sessions are open (for tests and benchmarks)."""
        return len(self._sessions)

    def users(self) -> int:
        """How many callers are using a shared session right now."""
        return sum(users for _, users in self._sessions.values())


shared_sessions = _SharedSessions()


def _send_time_trace() -> aiohttp.TraceConfig:
    """Tell the rate limiter the moment a request's headers really left.

    The limiter needs the moment of sending, not of permission: on a busy event loop the two can
    be a second apart. The request's ``trace_request_ctx`` carries its limiter and slot.
    """

    async def on_headers_sent(session: Any, context: Any, params: Any) -> None:
        request = context.trace_request_ctx
        if isinstance(request, _LimitedRequest):
            request.limiter.sent(request.slot, time.time())

    trace = aiohttp.TraceConfig()
    trace.on_request_headers_sent.append(on_headers_sent)
    return trace


class LotImageHook(HttpHook):
    """Talks to LotImage with a connection's API key, within the key's rate and the retry rules.

    The connection's host is the API's base URL (default ``https://api.lotimage.com``; it may carry
    scheme and port, e.g. an emulator at ``http://127.0.0.1:8765``) and its password is the key.
    Extras: ``rate_limit`` (calls/s, default 3), ``rate_limit_scope`` (``host`` shares the budget
    between processes of a machine, ``process`` does not) and ``timeout`` (seconds per call).

    :param lotimage_conn_id: the Airflow connection to use.
    :param retry_policy: how many times and how long to wait before resending a call.
    """

    conn_name_attr = "lotimage_conn_id"
    default_conn_name = "lotimage_default"
    conn_type = "lotimage"
    hook_name = "LotImage"
    default_host = api.DEFAULT_BASE_URL

    def __init__(
        self, lotimage_conn_id: str = default_conn_name, *, retry_policy: RetryPolicy | None = None
    ) -> None:
        # No TCP keep-alive adapter: calls are short, and a trigger's hook stays light (a thousand
        # triggers each holding a requests adapter and pool would cost far more than they wait).
        super().__init__(method="POST", http_conn_id=lotimage_conn_id, tcp_keep_alive=False)
        self.lotimage_conn_id = lotimage_conn_id
        self.retry_policy = retry_policy or RetryPolicy()
        self._session: requests.Session | None = None
        self._sync_settings: _Settings | None = None
        self._async_settings: _Settings | None = None

    # -- HttpHook extension points ---------------------------------------------------------------

    def _set_base_url(self, connection: Any) -> None:
        self.base_url = _base_url(connection.host, connection.port)
        self._base_url_initialized = True

    def _extract_auth(self, connection: Any) -> AuthBase | None:
        return _BearerAuth(connection.password) if connection.password else None

    def get_conn(self, headers: dict[Any, Any] | None = None, extra_options: dict[str, Any] | None = None):
        """A requests session with the key's Bearer auth, the connection's TLS/proxy settings."""
        session = super().get_conn(headers, extra_options)
        for name in LOTIMAGE_EXTRAS:
            session.headers.pop(name, None)
        return session

    # -- settings ----------------------------------------------------------------------------------

    @property
    def settings(self) -> _Settings:
        if self._sync_settings is None:
            conn = self.get_connection(self.lotimage_conn_id)
            self._sync_settings = _settings(conn, conn.extra_dejson)
        return self._sync_settings

    async def asettings(self) -> _Settings:
        if self._async_settings is None:
            conn = await get_async_connection(self.lotimage_conn_id, hook=self)
            self._async_settings = _settings(conn, await get_async_extra_dejson(conn))
        return self._async_settings

    # -- the sync calls --------------------------------------------------------------------------

    def imagine(self, prompt: str, *, cutting: bool = False, webhook: str | None = None) -> str:
        """Submit a prompt (a paid task) and return its taskId."""
        body = _submit_body(prompt=validate_prompt(prompt), cutting=cutting, webhook=webhook)
        return self._call(api.IMAGINE_PATH, body, _parse_submit, paid=True, call="imagine")

    def press_button(
        self, lotimage_task_id: str, button: str, *, cutting: bool = False, webhook: str | None = None
    ) -> str:
        """Press a button (U1..U4, V1..V4, reroll, zoom, vary) of a finished task; a paid task."""
        body = _submit_body(
            taskId=validate_task_id(lotimage_task_id),
            button=validate_button(button),
            cutting=cutting,
            webhook=webhook,
        )
        return self._call(api.BUTTON_PATH, body, _parse_submit, paid=True, call="button")

    def get_task_progress(self, lotimage_task_id: str) -> TaskProgress:
        """Read a task's progress; raises TaskFailedError when the task failed."""
        task_id = validate_task_id(lotimage_task_id)
        return self._call(
            api.PROGRESS_PATH,
            {"taskId": task_id},
            lambda status, text, retry_after: api.parse_progress(
                status, text, task_id=task_id, retry_after=retry_after
            ),
            paid=False,
            call="task/progress",
        )

    def wait_for_task(
        self,
        lotimage_task_id: str,
        *,
        poll_interval: float = 10.0,
        timeout: float | None = 3600.0,
        stall_timeout: float | None = DEFAULT_STALL_TIMEOUT,
        on_progress: Callable[[int], None] | None = None,
    ) -> TaskProgress:
        """Poll until the task is finished; raise on failure, stall or timeout."""
        watch = ProgressWatch.start(lotimage_task_id, timeout=timeout, stall_timeout=stall_timeout)
        while (done := watch.step(self.poll_once(lotimage_task_id))) is None:
            if watch.moved and on_progress is not None:
                on_progress(watch.last_progress)
            time.sleep(watch.next_poll_in(poll_interval))
        return done

    def poll_once(self, lotimage_task_id: str) -> TaskProgress | TransientError:
        """One read of progress, with a read failure that outlived the retries returned, not raised.

        Waiting loops treat such a failure as "no progress": the stall and overall timeouts bound it.
        """
        try:
            return self.get_task_progress(lotimage_task_id)
        except TransientError as err:
            return err

    def test_connection(self) -> tuple[bool, str]:
        """Check the URL and key with one read of an unknown task: no paid task is spent."""
        try:
            self.get_task_progress(CONNECTION_PROBE_TASK_ID)
        except TaskNotFoundError:
            return True, "LotImage accepted the API key"
        except AuthError as err:
            return False, f"LotImage refused the API key: {err}"
        except LotImageError as err:
            return False, f"LotImage answered with an error: {err}"
        except Exception as err:
            return False, f"Could not reach LotImage: {type(err).__name__}"
        return True, "LotImage accepted the API key"

    def get_download_session(self) -> requests.Session:
        """A session for picture downloads: the connection's proxy/TLS settings, never the key."""
        session = self.get_conn()
        session.auth = None
        session.headers.pop("Authorization", None)
        return session

    def _call(
        self,
        path: str,
        body: dict[str, Any],
        parse: Callable[[int, bytes, float | None], T],
        *,
        paid: bool,
        call: str,
    ) -> T:
        settings = self.settings
        attempt = 0
        while True:
            attempt += 1
            settings.limiter.acquire()
            try:
                status, content, retry_after = self._post(path, body, settings.timeout)
                return parse(status, content, retry_after)
            except requests.RequestException as exc:
                error: LotImageError = _requests_error(exc)
            except LotImageError as exc:
                error = exc
            delay = self.retry_policy.next_delay(error, attempt, paid=paid, call=call)
            if isinstance(error, RateLimitedError):
                settings.limiter.block_for(delay)
            self.log.warning("LotImage %s failed (%s); retrying in %.1f s", call, error, delay)
            time.sleep(delay)

    def _post(self, path: str, body: dict[str, Any], timeout: float) -> tuple[int, bytes, float | None]:
        if self._session is None:
            self._session = self.get_conn()
        request = requests.Request("POST", self.url_from_endpoint(path), json=body)
        response = self.run_and_check(
            self._session,
            self._session.prepare_request(request),
            {"timeout": timeout, "check_response": False, "allow_redirects": False},
        )
        return (
            response.status_code,
            response.content,
            api.parse_retry_after(response.headers.get("Retry-After")),
        )

    # -- the async calls (triggers) ------------------------------------------------------------

    async def apoll_once(self, lotimage_task_id: str) -> TaskProgress | TransientError:
        """Async :meth:`poll_once`."""
        try:
            return await self.aget_task_progress(lotimage_task_id)
        except TransientError as err:
            return err

    async def aget_task_progress(self, lotimage_task_id: str) -> TaskProgress:
        """Async :meth:`get_task_progress`: shared session per loop, shared limiter per key."""
        task_id = validate_task_id(lotimage_task_id)
        settings = await self.asettings()
        url = f"{settings.base_url}{api.PROGRESS_PATH}"
        headers = {"Authorization": f"Bearer {settings.api_key}"}
        attempt = 0
        async with shared_sessions.use() as session:
            while True:
                attempt += 1
                slot = await settings.limiter.acquire_async()
                try:
                    async with session.post(
                        url,
                        json={"taskId": task_id},
                        headers=headers,
                        timeout=aiohttp.ClientTimeout(total=settings.timeout),
                        allow_redirects=False,
                        trace_request_ctx=_LimitedRequest(settings.limiter, slot),
                    ) as response:
                        content = await response.read()
                        retry_after = api.parse_retry_after(response.headers.get("Retry-After"))
                    return api.parse_progress(
                        response.status, content, task_id=task_id, retry_after=retry_after
                    )
                except (TimeoutError, aiohttp.ClientError) as exc:
                    error: LotImageError = _aiohttp_error(exc)
                except LotImageError as exc:
                    error = exc
                delay = self.retry_policy.next_delay(error, attempt, paid=False, call="task/progress")
                if isinstance(error, RateLimitedError):
                    settings.limiter.block_for(delay)
                self.log.warning("LotImage task/progress failed (%s); retrying in %.1f s", error, delay)
                await asyncio.sleep(delay)


def _submit_body(*, cutting: bool, webhook: str | None, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {**fields, "cutting": validate_cutting(cutting)}
    if webhook is not None:
        body["webhook"] = validate_webhook(webhook)
    return body


def _parse_submit(status: int, content: bytes, retry_after: float | None) -> str:
    return api.parse_submit(status, content, retry_after=retry_after)
