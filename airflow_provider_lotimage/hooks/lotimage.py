"""LotImageHook: every call this provider makes to LotImage, sync (workers) and async (triggerer)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

import requests
from airflow.providers.common.compat.connection import get_async_connection, get_async_extra_dejson
from airflow.providers.common.compat.sdk import BaseHook
from asgiref.sync import sync_to_async

from airflow_provider_lotimage.client import contract, queue_place
from airflow_provider_lotimage.client.contract import TaskProgress
from airflow_provider_lotimage.client.metrics import Metrics, apaced, paced
from airflow_provider_lotimage.client.progress import DEFAULT_STALL_TIMEOUT, ProgressWatch
from airflow_provider_lotimage.client.retry import RetryPolicy
from airflow_provider_lotimage.client.schedule import KIND_IMAGINE, kind_of_button
from airflow_provider_lotimage.client.settings import ConnectionSettings, read_settings
from airflow_provider_lotimage.client.transport import Call, Reply, SyncTransport, requests_session
from airflow_provider_lotimage.client.validation import (
    validate_button,
    validate_cutting,
    validate_task_id,
)
from airflow_provider_lotimage.exceptions import AuthError, LotImageError, TaskNotFoundError, TransientError
from airflow_provider_lotimage.ratelimit.registry import durations_of, limiter_of
from airflow_provider_lotimage.utils import connection_form
from airflow_provider_lotimage.utils.metrics import AirflowMetrics
from airflow_provider_lotimage.utils.secrets import (
    aregister_secret,
    register_secret,
    validate_prompt,
    validate_webhook,
)
from airflow_provider_lotimage.version_compat import HAS_DECLARATIVE_CONNECTION_FORM

if TYPE_CHECKING:
    from airflow_provider_lotimage.client.async_transport import AsyncTransport
    from airflow_provider_lotimage.client.durations import DurationBook
    from airflow_provider_lotimage.client.limiter import RateLimiter

T = TypeVar("T")

#: The taskId used by ``test_connection``: a read of an unknown task checks the key for free.
CONNECTION_PROBE_TASK_ID = "airflow-connection-test"


class LotImageHook(BaseHook):
    """Talks to LotImage with a connection's API key, within the key's rate and the retry rules.

    The connection's host is the API's base URL (default ``https://api.lotimage.com``; it may carry
    scheme and port, e.g. an emulator at ``http://127.0.0.1:8765``) and its password is the key.
    Extras: ``rate_limit`` (calls/s, default 3), ``rate_limit_scope`` (``host``, the default: the
    processes of a machine share the key's budget; ``redis``: every machine reaching the Redis of
    ``rate_limit_redis_conn_id``, ``host`` while Redis is away; ``process``), ``timeout`` (seconds per
    call), and ``proxies``, ``verify``, ``cert`` and ``trust_env``, which mean what ``HttpHook``
    documents, for the sync and the async calls alike (:mod:`..client.settings`).

    :param lotimage_conn_id: the Airflow connection to use.
    :param retry_policy: how many times and how long to wait before resending a call.
    """

    conn_name_attr = "lotimage_conn_id"
    default_conn_name = "lotimage_default"
    conn_type = "lotimage"
    hook_name = "LotImage"
    default_host = contract.DEFAULT_BASE_URL
    metrics: Metrics = AirflowMetrics()  # where the client's figures go: Airflow's Stats

    if not HAS_DECLARATIVE_CONNECTION_FORM:  # Airflow 3.1 asks the hook for the connection form
        get_ui_field_behaviour = connection_form.get_ui_field_behaviour
        get_connection_form_widgets = connection_form.get_connection_form_widgets

    def __init__(
        self, lotimage_conn_id: str = default_conn_name, *, retry_policy: RetryPolicy | None = None
    ) -> None:
        super().__init__()
        self.lotimage_conn_id = lotimage_conn_id
        self.retry_policy = retry_policy or RetryPolicy()
        self._settings: ConnectionSettings | None = None
        self._limiter: RateLimiter | None = None
        self._sync: SyncTransport | None = None
        self._async: AsyncTransport | None = None

    # -- settings, limiter and transports --------------------------------------------------------

    @property
    def settings(self) -> ConnectionSettings:
        """The connection, read once (sync); plain data, enough for a picture download's session.

        The key is registered with Airflow's masker as soon as it is read, in every form it takes
        (:func:`~airflow_provider_lotimage.utils.secrets.register_secret`).
        """
        if self._settings is None:
            conn = self.get_connection(self.lotimage_conn_id)
            settings = read_settings(conn, conn.extra_dejson)
            register_secret(settings.api_key)
            self._settings = settings
        return self._settings

    @property
    def limiter(self) -> RateLimiter:
        """The key's rate limiter, looked up once, with the transport (so a mistake fails before a call).

        For scope ``redis`` the lookup (:func:`..ratelimit.registry.limiter_of`) reads the Redis connection.
        """
        if self._limiter is None:
            self._limiter = limiter_of(self.settings)
        return self._limiter

    @property
    def durations(self) -> DurationBook:
        """The durations observed for the key (:func:`..ratelimit.registry.durations_of`): the schedule's."""
        return durations_of(self.settings)

    @property
    def transport(self) -> SyncTransport:
        """The sync transport, built on first use from the connection, with the key's limiter."""
        if self._sync is None:
            _ = self.limiter  # built now: a rate-limit mistake fails before the first call
            self._sync = SyncTransport(self.settings)
        return self._sync

    async def atransport(self) -> AsyncTransport:
        """Return the async transport, reading the connection without blocking the event loop.

        The limiter is looked up in a worker thread: for scope ``redis`` that reads a connection.
        """
        if self._async is None:
            # Imported here: aiohttp is a fifth of a second to import, and only the triggerer
            # needs it; every worker run of a task imports this module.
            from airflow_provider_lotimage.client.async_transport import AsyncTransport

            conn = await get_async_connection(self.lotimage_conn_id, hook=self)
            settings = read_settings(conn, await get_async_extra_dejson(conn))
            await aregister_secret(settings.api_key)
            self._async = AsyncTransport(settings, await sync_to_async(limiter_of)(settings))
        return self._async

    def get_conn(self) -> requests.Session:
        """Return the ``requests`` session the sync calls use (the key, proxies and TLS set)."""
        return self.transport.session

    def get_download_session(self) -> requests.Session:
        """Return a session for picture downloads: the connection's proxy/TLS settings, never the key."""
        return requests_session(self.settings, with_key=False)

    # -- the calls -------------------------------------------------------------------------------

    def imagine(self, prompt: str, *, cutting: bool = False, webhook: str | None = None) -> str:
        """Submit a prompt: a paid task.

        :param prompt: the Midjourney prompt, at most 4000 characters.
        :param cutting: also deliver the four pictures of the grid separately.
        :param webhook: an http(s) URL the service POSTs the finished task to.
        :return: the new task's taskId.
        :raises LotImageInputError: a parameter is unusable, or the prompt or webhook holds a
            secret Airflow masks (the key included); nothing was sent.
        :raises AmbiguousSubmitError: the call failed in a way that may have created the task.
        :raises LotImageError: the service refused the call (see :mod:`..exceptions`).
        """
        _ = self.settings  # the key is read and registered first: the secret check knows it
        body = _submit_body(prompt=validate_prompt(prompt), cutting=cutting, webhook=webhook)
        return self._request(_submit_call("imagine", contract.IMAGINE_PATH, body))

    def press_button(
        self, lotimage_task_id: str, button: str, *, cutting: bool = False, webhook: str | None = None
    ) -> str:
        """Press a button (U1..U4, V1..V4, reroll, zoom, vary) of a finished task: a paid task.

        :param lotimage_task_id: the finished parent task.
        :param button: the button's exact label.
        :param cutting: also deliver the four pictures separately.
        :param webhook: an http(s) URL the service POSTs the finished task to.
        :return: the new task's taskId.
        :raises LotImageInputError: a parameter is unusable, or the webhook holds a secret; nothing was sent.
        :raises AmbiguousSubmitError: the call failed in a way that may have created the task.
        :raises LotImageError: the service refused the call.
        """
        _ = self.settings  # the key is read and registered first: the secret check knows it
        body = _submit_body(
            taskId=validate_task_id(lotimage_task_id),
            button=validate_button(button),
            cutting=cutting,
            webhook=webhook,
        )
        return self._request(_submit_call("button", contract.BUTTON_PATH, body))

    def get_task_progress(self, lotimage_task_id: str) -> TaskProgress:
        """Read a task's progress.

        :param lotimage_task_id: the task to read.
        :return: its normalised progress.
        :raises TaskFailedError: the task failed at the service.
        :raises TaskNotFoundError: the service does not know the taskId.
        :raises TransientError: the read kept failing after the retries.
        """
        return self._request(_progress_call(lotimage_task_id))

    async def aget_task_progress(self, lotimage_task_id: str) -> TaskProgress:
        """Read a task's progress without blocking the event loop; as :meth:`get_task_progress`."""
        return await self._arequest(_progress_call(lotimage_task_id))

    def poll_once(self, lotimage_task_id: str) -> TaskProgress | TransientError:
        """Read progress once for a waiting loop.

        :return: the progress, or the read failure that outlived the retries (waiting loops count
            it as "no progress"; their stall and overall timeouts bound it).
        :raises LotImageError: a failure that is not transient (failed task, refused key, proxy...).
        """
        return self._request(_progress_call(lotimage_task_id), give_back=True)

    async def apoll_once(self, lotimage_task_id: str) -> TaskProgress | TransientError:
        """Read progress once for a waiting trigger; as :meth:`poll_once`."""
        return await self._arequest(_progress_call(lotimage_task_id), give_back=True)

    def wait_for_task(
        self,
        lotimage_task_id: str,
        *,
        poll_interval: float = 10.0,
        timeout: float | None = 3600.0,
        stall_timeout: float | None = DEFAULT_STALL_TIMEOUT,
        on_progress: Callable[[int], None] | None = None,
        kind: str | None = None,
        adaptive: bool = True,
        from_submission: bool = False,
    ) -> TaskProgress:
        """Poll until the task is finished, blocking the calling thread.

        Reads follow :meth:`~airflow_provider_lotimage.client.progress.ProgressWatch.next_poll_in`: an
        adaptive wait reads when the task has likely moved or finished, not every ``poll_interval``.

        :param lotimage_task_id: the task to wait for.
        :param poll_interval: seconds between reads (adaptive: the base of the schedule, whose
            longest gap is :data:`~airflow_provider_lotimage.client.schedule.MAX_POLL_FACTOR` times it).
        :param timeout: seconds the whole wait may take (None: no limit).
        :param stall_timeout: seconds without progress after which the task counts as stalled.
        :param on_progress: called with the percentage whenever it moves.
        :param kind: the kind of a task just submitted (``KIND_IMAGINE``, or ``kind_of_button``): the
            first read then comes near its expected end (:attr:`durations`), not at once, when it
            could only show 0 %. None: unknown, read at once (the task may be long finished).
        :param adaptive: False reads every ``poll_interval``, as a fixed schedule.
        :param from_submission: the task was submitted just now: its duration teaches :attr:`durations`.
        :return: the finished task.
        :raises TaskFailedError: the task failed.
        :raises TaskStalledError: no progress for ``stall_timeout`` seconds.
        :raises TaskTimeoutError: not finished within ``timeout``.
        """
        watch = ProgressWatch.start(
            lotimage_task_id, timeout=timeout, stall_timeout=stall_timeout, kind=kind, adaptive=adaptive
        )
        watch.from_submission = from_submission
        return _wait_blocking(self, watch, poll_interval, on_progress)

    def test_connection(self) -> tuple[bool, str]:
        """Check the URL and key with one read of an unknown task: no paid task is spent.

        :return: whether the key was accepted, and a message for the connection form.
        """
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

    # -- one request, with the retry policy --------------------------------------------------------

    def _request(self, call: Call[T], *, give_back: bool = False) -> Any:
        """Send ``call`` under the retry policy, waiting for the key's rate limiter before each try."""
        transport, limiter, metrics = self.transport, self.limiter, self.metrics

        def attempt() -> T:
            paced(limiter, metrics, call.name)
            return call.parse(transport.send(call))

        return self.retry_policy.run(call, limiter, self.log, attempt, give_back=give_back, metrics=metrics)

    async def _arequest(self, call: Call[T], *, give_back: bool = False) -> Any:
        """Async :meth:`_request`: the shared session of the loop, the real send moment reported."""
        transport = await self.atransport()
        limiter = cast("RateLimiter", transport.limiter)  # atransport gave it the key's
        async with transport.session() as session:

            async def attempt() -> T:
                slot = await apaced(limiter, self.metrics, call.name)
                return call.parse(await transport.send(session, call, slot))

            policy, metrics = self.retry_policy, self.metrics
            return await policy.arun(call, limiter, self.log, attempt, give_back=give_back, metrics=metrics)


def _wait_blocking(
    hook: LotImageHook, watch: ProgressWatch, poll_interval: float, on_progress: Callable[[int], None] | None
) -> TaskProgress:
    """Read on the watch's schedule until the task is finished; the wait's duration goes to the book."""
    watch.expect(book := hook.durations)
    try:
        if watch.kind is not None and watch.adaptive:
            time.sleep(watch.next_poll_in(poll_interval))
        while (
            done := watch.step(hook.poll_once(watch.task_id), metrics=hook.metrics, durations=book)
        ) is None:
            if watch.moved and on_progress is not None:
                on_progress(watch.last_progress)
            time.sleep(watch.next_poll_in(poll_interval))
        return done
    finally:
        queue_place.leave(watch, book)


def _submit_body(*, cutting: bool, webhook: str | None, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {**fields, "cutting": validate_cutting(cutting)}
    if webhook is not None:
        body["webhook"] = validate_webhook(webhook)
    return body


def _submit_call(name: str, path: str, body: dict[str, Any]) -> Call[str]:
    kind = kind_of_button(body["button"]) if "button" in body else KIND_IMAGINE  # the cost's tag
    return Call(name, path, body, paid=True, parse=_parse_submit, kind=kind)


def _parse_submit(reply: Reply) -> str:
    return contract.parse_submit(reply.status, reply.content, retry_after=reply.retry_after)


def _progress_call(lotimage_task_id: str) -> Call[TaskProgress]:
    task_id = validate_task_id(lotimage_task_id)

    def parse(reply: Reply) -> TaskProgress:
        return contract.parse_progress(
            reply.status, reply.content, task_id=task_id, retry_after=reply.retry_after
        )

    return Call("task/progress", contract.PROGRESS_PATH, {"taskId": task_id}, paid=False, parse=parse)
