"""Fixtures of the reliability suite: small DAGs run for real with ``dag.test()`` against the emulator.

* ``make_emulator(key=..., extra=..., **config)`` starts an emulator (the plugin's fast test
  settings: an imagine takes about a second) and points ``lotimage_default`` at it; ``emu`` is one
  with the defaults.
* ``harness`` builds DAGs whose tasks record their failure (``context["exception"]``) through an
  ``on_failure_callback``, runs them the way the DAG processor would (serialised, then
  ``dag.test()``), and answers "which task failed, on which try, with what error".
* ``local_server`` is a tiny HTTP server on loopback: a webhook receiver (POST) and a "CDN" that
  answers whatever status, headers and body a test chooses (GET); it records every request's headers.
* :func:`assert_paid_calls` is the check every matrix row ends with: the emulator received exactly
  the ``imagine``/``button`` calls, and created exactly the paid tasks, that the DAG asked for.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import pytest
from lotimage_emulator.pytest_plugin import TEST_API_KEY

from tests.dag_helpers import run_dag

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from lotimage_emulator import Emulator

#: Seconds between a sensor's pokes: the fixture emulator finishes an imagine in about 1 s.
POKE = 0.2
START = datetime(2026, 1, 1)


@pytest.fixture(autouse=True)
def _db(airflow_db: None) -> None:
    return None


# ------------------------------------------------------------------------------------ emulator
@pytest.fixture
def make_emulator(
    lotimage_emulator_factory: Callable[..., Emulator], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Emulator]:
    """``make(key=TEST_API_KEY, extra=None, conn_key=None, **config)``: a started emulator.

    ``key`` is the key the emulator accepts; ``conn_key`` the one the connection sends (default:
    the same); ``extra`` the connection's extras (e.g. ``{"timeout": 1}``).
    """

    def make(
        *,
        key: str = TEST_API_KEY,
        conn_key: str | None = None,
        extra: dict[str, Any] | None = None,
        **config: Any,
    ) -> Emulator:
        emulator = lotimage_emulator_factory(keys=(key,), **config)
        conn: dict[str, Any] = {"conn_type": "lotimage", "host": emulator.url, "password": conn_key or key}
        if extra:
            conn["extra"] = extra
        monkeypatch.setenv("AIRFLOW_CONN_LOTIMAGE_DEFAULT", json.dumps(conn))
        return emulator

    return make


@pytest.fixture
def emu(make_emulator: Callable[..., Emulator]) -> Emulator:
    """An emulator with the plugin's test defaults, reachable as ``lotimage_default``."""
    return make_emulator()


def assert_paid_calls(
    emulator: Emulator,
    *,
    imagine: int,
    button: int = 0,
    imagine_sent: int | None = None,
    button_sent: int | None = None,
) -> None:
    """The emulator created ``imagine``/``button`` paid tasks and received ``*_sent`` such calls.

    ``*_sent`` defaults to the number of tasks: a call answered 429/400/401 is received but
    creates nothing, so rows with such answers say both numbers.
    """
    stats = emulator.stats()
    assert stats["submissions"] == {"imagine": imagine, "button": button}, stats["submissions"]
    sent = {
        "imagine": imagine if imagine_sent is None else imagine_sent,
        "button": button if button_sent is None else button_sent,
    }
    received = {name: stats["requests"][name] for name in ("imagine", "button")}
    assert received == sent, received


def assert_no_calls(emulator: Emulator) -> None:
    """Not a single API call (nor a picture download) reached the emulator."""
    stats = emulator.stats()
    assert stats["requests"] == {"imagine": 0, "progress": 0, "button": 0}
    assert stats["submissions"] == {"imagine": 0, "button": 0}
    assert stats["events"].get("image_requests", 0) == 0


# ------------------------------------------------------------------------------------ DAG runs
@dataclass
class Failure:
    """One failed try of a task, as its ``on_failure_callback`` saw it."""

    task_id: str
    try_number: int
    exception: BaseException | None


@dataclass
class Harness:
    """Builds DAGs that record failures, runs them, and reads the outcome."""

    prefix: str
    failures: list[Failure] = field(default_factory=list)
    runs: list[Any] = field(default_factory=list)

    def record(self, context: Any) -> None:
        ti = context["ti"]
        self.failures.append(Failure(ti.task_id, ti.try_number, context.get("exception")))

    def dag(self, name: str = "dag", **kwargs: Any) -> Any:
        """A DAG (use as a context manager) whose tasks report failures to this harness."""
        from airflow.sdk import DAG

        default_args = {"on_failure_callback": self.record, **kwargs.pop("default_args", {})}
        return DAG(
            f"{self.prefix}_{name}"[:200],
            schedule=None,
            start_date=START,
            default_args=default_args,
            **kwargs,
        )

    def run(self, dag: Any) -> Any:
        """Serialise the DAG as the DAG processor would, then run it with ``dag.test()``."""
        run = run_dag(dag)
        self.runs.append(run)
        return run

    # -- reading the outcome -------------------------------------------------------------------
    @staticmethod
    def states(run: Any) -> dict[str, str]:
        return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}

    @staticmethod
    def tries(run: Any, task_id: str) -> int:
        return int(run.get_task_instance(task_id).try_number)

    @staticmethod
    def xcom(run: Any, task_id: str, key: str = "return_value") -> Any:
        return run.get_task_instance(task_id).xcom_pull(task_ids=task_id, key=key)

    def failed(self, task_id: str) -> list[Failure]:
        return [failure for failure in self.failures if failure.task_id == task_id]

    def error(self, task_id: str) -> BaseException:
        """The exception of the one failed try of ``task_id``."""
        failures = self.failed(task_id)
        assert len(failures) == 1, f"{task_id}: expected one failed try, got {failures}"
        assert failures[0].exception is not None
        return failures[0].exception

    def assert_failed(self, run: Any, task_id: str, *others_ok: str) -> str:
        """The run failed because ``task_id`` failed (once), ``others_ok`` succeeded; its error text."""
        states = self.states(run)
        assert str(run.state) == "failed", states
        assert states[task_id] == "failed", states
        for other in others_ok:
            assert states[other] == "success", states
        return str(self.error(task_id))

    def assert_succeeded(self, run: Any) -> None:
        states = self.states(run)
        assert str(run.state) == "success", (states, self.failures)
        assert set(states.values()) == {"success"}, states
        assert not self.failures, self.failures


@pytest.fixture
def harness(request: pytest.FixtureRequest) -> Harness:
    """A :class:`Harness` whose DAG ids derive from the test's name (unique per parametrisation)."""
    name = re.sub(r"[^A-Za-z0-9_]+", "_", request.node.name).strip("_")
    return Harness(prefix=f"rel_{name}")


# ------------------------------------------------------------------------------ local server
@dataclass
class Seen:
    """One request the local server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class LocalServer:
    """Records every request; GET answers ``get_status``, ``get_headers`` and ``get_body`` (of
    ``get_type``), POST answers 200."""

    def __init__(self) -> None:
        self.requests: list[Seen] = []
        self.get_body: bytes = b"<html><body>Not a picture</body></html>"
        self.get_type = "text/html; charset=utf-8"
        self.get_status = 200
        self.get_headers: dict[str, str] = {}
        self.arrived = threading.Condition()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _note(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with server.arrived:
                    server.requests.append(Seen(self.command, self.path, dict(self.headers), body))
                    server.arrived.notify_all()

            def do_GET(self) -> None:
                self._note()
                self.send_response(server.get_status)
                for name, value in server.get_headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", server.get_type)
                self.send_header("Content-Length", str(len(server.get_body)))
                self.end_headers()
                self.wfile.write(server.get_body)

            def do_POST(self) -> None:
                self._note()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def seen(self, method: str) -> list[Seen]:
        return [request for request in self.requests if request.method == method]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def local_server() -> Iterator[LocalServer]:
    server = LocalServer()
    yield server
    server.close()
