"""An offline LotImage emulator: a real HTTP server on loopback that behaves like the contract.

It exists so a LotImage client (such as ``airflow-provider-lotimage``) can be tested end to end
without paying for Midjourney jobs, including the failures the real service and its proxies
produce (rate limits, 5xx, dropped connections after a task was created, stalled or failed tasks,
expiring picture links). Quick use::

    from lotimage_emulator import run_emulator

    with run_emulator(keys=["k"], time_scale=0.02, grid_size=256) as emu:
        requests.post(emu.url + "/midjourney/v1/imagine", json={"prompt": "owl"},
                      headers={"Authorization": "Bearer k"})
        emu.add_fault("http_status", status=503, endpoint="imagine", count=2)
        print(emu.stats()["submissions"])

Admin endpoints (no auth): ``GET /_emulator/health``, ``GET /_emulator/stats``,
``GET /_emulator/tasks``, ``GET /_emulator/webhooks``, ``GET|POST|DELETE /_emulator/faults``,
``DELETE /_emulator/faults/<id>``, ``GET|POST /_emulator/config``, ``POST /_emulator/reset``,
``POST /_emulator/next-day`` (start the next day of the daily quota now; body ``{"days": n}``
optional); pictures at ``GET /_emulator/images/<token>.png``. The emulator imports nothing of
Airflow or of the provider: its view of the API is :mod:`.contract`.

HTTPS: pass ``ssl_context=`` (a server :class:`ssl.SSLContext` holding the certificate and key) to
:class:`Emulator` or :func:`run_emulator`, so clients can be tested against a private CA, mutual
TLS or a proxy tunnelling ``CONNECT``; ``url`` and the picture links then start with ``https://``.

``stats()`` / ``GET /_emulator/stats`` (keys appear only as ``key_id`` fingerprints)::

    {"requests": {"imagine": n, "progress": n, "button": n},        # every call received
     "submissions": {"imagine": n, "button": n},                    # paid tasks created
     "answers": {"200": n, "400": n, "dropped": n, "malformed": n},  # by body status
     "answers_by_endpoint": {"imagine": {...}, ...}, "http_statuses": {"200": n, ...},
     "rate_limited": n, "rate_limited_by_limiter": n,               # all 429s / limiter's only
     "peak_calls_per_second": {"key-...": n}, "max_calls_per_second": n,
     "calls_by_key": {...}, "quota_used": {...},
     "webhooks": {"attempted": n, "succeeded": n, "failed": n, "suppressed": n,  # POSTs / dropped
                  "delayed": n, "duplicated": n},          # these two once a rule of theirs fired
     "tasks": {"queued": n, "running": n, "finished": n, "failed": n, "stalled": n, "total": n},
     "events": {"delays": n, "dropped_connections": n, "image_requests": n, "image_expired": n,
                "images_served": n, "links_renewed": n, "slow_bodies": n},  # each once it happened
     "faults": [<rule>, ...], "config": {...}, "renders": n,
     "timeline": {"first_submit": t, "last_submit": t, "first_image": t, "last_image": t}}  # epoch s

``webhook_log()`` / ``GET /_emulator/webhooks`` (``{"deliveries": [...]}``): one record per
webhook POST, oldest first: ``{"sent_at": epoch s, "url": "http://127.0.0.1:8080/hook", "taskId":
..., "attempt": 1, "status": 200 | null, "error": null | "ClientConnectorError", "outcome":
"succeeded" | "failed"}``. ``status`` is the HTTP status the receiver answered (``null``: none);
``url`` is shown without credentials or query and with its last path segment cut to 4 characters
and ``…``, as in the logs, because a receiver of unsigned deliveries authenticates by a token there.

Fault kinds, by the point where they act (parameters in :class:`~.faults.FaultRule`):

* request: ``http_429``, ``http_status``, ``malformed_json``, ``drop_connection``, ``delay``;
* task: ``fail_task``, ``stall``, ``no_image_url``;
* progress: ``progress_format``, ``preview_url``;
* webhook: ``drop_webhooks``, ``delay_webhooks`` (``seconds``), ``duplicate_webhooks``
  (``copies``, ``seconds`` between them);
* image: ``slow_body``.

A fault rule (``POST /_emulator/faults`` takes one, a list, or ``{"rules": [...], "flags": {...}}``)::

    {"kind": "http_status", "endpoint": "imagine" | "progress" | "button" | null, "count": 1 | null,
     "status": 503, "retry_after": 1.0, "html": false, "body_only": false | true | null,
     "after_processing": false, "seconds": 1.0, "progress": 93, "err_message": null,
     "format": "int", "body": null, "share": null, "for_seconds": null, "copies": null,
     "prompt_contains": null}

answered with ``id``, ``used``, ``remaining``, ``stage`` and ``opened_at`` added. With
``prompt_contains`` a rule acts only on calls and tasks whose prompt holds that text (a button's:
its parent's prompt). See :mod:`.faults`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ssl
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from aiohttp import web

from lotimage_emulator.app import EmulatorApp
from lotimage_emulator.config import EmulatorConfig
from lotimage_emulator.engine import Engine
from lotimage_emulator.faults import DEFAULT_COUNT, FaultBook, FaultRule
from lotimage_emulator.models import key_id

if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import TracebackType

__all__ = ["DEFAULT_COUNT", "Emulator", "EmulatorConfig", "FaultRule", "key_id", "run_emulator"]

_START_TIMEOUT = 30.0
_SHUTDOWN_GRACE = 0.5


class Emulator:
    """The emulator server, run in a background thread with its own event loop.

    Every method may be called from any thread: state lives behind the engine's lock and the
    server thread only touches it through the same methods.
    """

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        *,
        ssl_context: ssl.SSLContext | None = None,
        **overrides: Any,
    ) -> None:
        """Let ``overrides`` replace fields of ``config``; ``ssl_context`` makes the server speak TLS.

        The TLS context is a transport setting fixed for the server's life, not a behaviour knob,
        so it stays out of :class:`EmulatorConfig`, whose fields ``stats()["config"]`` serialises
        and ``set_config``/``reset`` change at runtime. Picture links follow the scheme because
        the app builds them from each request's own scheme and ``Host``.
        """
        config = config or EmulatorConfig()
        if overrides:
            config = dataclasses.replace(config, **overrides)
        self.fault_book = FaultBook()
        self.engine = Engine(config, self.fault_book)
        #: The server TLS context, or ``None`` for plain HTTP.
        self.ssl_context = ssl_context
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._app: EmulatorApp | None = None
        self._port: int | None = None
        self._lifecycle = threading.Lock()

    # ------------------------------------------------------------------------------ lifecycle
    def start(self) -> Emulator:
        """Start serving; returns once the socket listens (raises if it cannot bind)."""
        with self._lifecycle:
            if self._thread is not None:
                return self
            ready = threading.Event()
            failure: list[BaseException] = []
            self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="lotimage-render")
            self._app = EmulatorApp(self.engine, self._executor)
            thread = threading.Thread(
                target=self._serve, args=(ready, failure), name="lotimage-emulator", daemon=True
            )
            thread.start()
            if not ready.wait(_START_TIMEOUT):
                raise RuntimeError("LotImage emulator did not start in time")
            if failure:
                thread.join()
                self._executor.shutdown(wait=True)
                self._executor = None
                raise failure[0]
            self._thread = thread
            return self

    def _serve(self, ready: threading.Event, failure: list[BaseException]) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._run(ready, failure))
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            ready.set()

    async def _run(self, ready: threading.Event, failure: list[BaseException]) -> None:
        assert self._app is not None
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        runner = web.AppRunner(self._app.build(), shutdown_timeout=_SHUTDOWN_GRACE, access_log=None)
        try:
            await runner.setup()
            config = self.engine.config
            site = web.TCPSite(runner, config.host, config.port, ssl_context=self.ssl_context)
            await site.start()
            addresses = runner.addresses
            self._port = int(addresses[0][1])
        except BaseException as exc:
            failure.append(exc)
            await runner.cleanup()
            ready.set()
            return
        ready.set()
        try:
            await self._stop_event.wait()
        finally:
            await runner.cleanup()

    def stop(self) -> None:
        """Stop serving and join the thread; idempotent. In-flight requests get a short grace."""
        with self._lifecycle:
            thread, loop, stop_event = self._thread, self._loop, self._stop_event
            if thread is None:
                return
            if loop is not None and stop_event is not None and not loop.is_closed():
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(stop_event.set)
            thread.join(timeout=10)
            if self._executor is not None:
                self._executor.shutdown(wait=True, cancel_futures=True)
            self._thread = self._loop = self._stop_event = self._executor = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------------------ properties
    @property
    def running(self) -> bool:
        """Whether the server thread is serving."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def config(self) -> EmulatorConfig:
        """The current (runtime) configuration."""
        return self.engine.config

    @property
    def host(self) -> str:
        """The address clients should use (a wildcard bind is reached through loopback)."""
        host = self.engine.config.host
        return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host

    @property
    def port(self) -> int:
        """The bound port (the real one when the config asked for port 0)."""
        if self._port is None:
            raise RuntimeError("the emulator is not started")
        return self._port

    @property
    def scheme(self) -> str:
        """``https`` when served with an ``ssl_context``, else ``http``."""
        return "https" if self.ssl_context is not None else "http"

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8765``; use it as the connection host."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def api_key(self) -> str | None:
        """The first configured key (``None`` when any key is accepted)."""
        keys = self.engine.config.keys
        return keys[0] if keys else None

    # ------------------------------------------------------------------------------- controls
    def add_fault(
        self, kind: str, *, endpoint: str | None = None, count: Any = DEFAULT_COUNT, **params: Any
    ) -> FaultRule:
        """Add a fault rule (see :mod:`.faults` for kinds and parameters); returns the live rule.

        ``endpoint``: ``"imagine"``, ``"progress"``, ``"button"`` or ``None`` (any). ``count``:
        how many times it applies (``None``: forever; default 1, or forever for the modes
        ``progress_format``, ``preview_url`` and ``drop_webhooks``). ``rule.used`` counts firings.
        ``prompt_contains="castle"``: only calls and tasks about a prompt holding "castle".
        """
        return self.fault_book.add(FaultRule.build(kind, endpoint=endpoint, count=count, **params))

    def remove_fault(self, rule_id: str) -> bool:
        """Remove one rule by id."""
        return self.fault_book.remove(rule_id)

    def faults(self) -> list[dict[str, Any]]:
        """Snapshot of the rules, used-up ones included."""
        return self.fault_book.rules()

    def clear_faults(self) -> None:
        """Remove every fault rule (runtime config flags are kept)."""
        self.fault_book.clear()

    def set_config(self, **changes: Any) -> EmulatorConfig:
        """Change runtime knobs (``mirror_http_status``, ``rate_limit``, ``image_ttl_seconds``...)."""
        return self.engine.set_config(**changes)

    def reset(self) -> None:
        """Clear tasks, counters, pictures and faults and restore the start-up config."""
        self.engine.reset()
        if self._app is not None:
            self._app.cache.clear()

    @property
    def quota_day(self) -> str:
        """The UTC day (``YYYY-MM-DD``) the daily quota counts calls in (today, unless moved on)."""
        return self.engine.quota_day()

    def next_day(self, days: int = 1) -> str:
        """Start the next quota day now, as midnight UTC would; return it (``POST /_emulator/next-day``).

        Every key's daily count starts again; tasks, their times and picture links are untouched.
        """
        return self.engine.next_day(days)

    def stats(self) -> dict[str, Any]:
        """Return the same snapshot as ``GET /_emulator/stats``."""
        data = self.engine.stats()
        data["renders"] = self._app.cache.renders if self._app is not None else 0
        return data

    def tasks(self) -> list[dict[str, Any]]:
        """Every task with state, kind and parent, as ``GET /_emulator/tasks``."""
        return self.engine.task_list()

    def webhook_log(self) -> list[dict[str, Any]]:
        """Every webhook POST sent, oldest first, as ``GET /_emulator/webhooks`` (shape above)."""
        return self.engine.webhook_log()

    @staticmethod
    def key_id(key: str) -> str:
        """Return the fingerprint under which ``stats()`` reports a key."""
        return key_id(key)

    def __repr__(self) -> str:
        where = self.url if self._port is not None else "not started"
        return f"<Emulator {where}>"


@contextlib.contextmanager
def run_emulator(
    config: EmulatorConfig | None = None, *, ssl_context: ssl.SSLContext | None = None, **overrides: Any
) -> Iterator[Emulator]:
    """Run an emulator for the duration of a ``with`` block (over TLS when given ``ssl_context``)."""
    emulator = Emulator(config, ssl_context=ssl_context, **overrides).start()
    try:
        yield emulator
    finally:
        emulator.stop()
