"""A real forward HTTP proxy for tests: Debian's ``tinyproxy``, run privately on loopback.

Why a real proxy rather than a mock: the provider's proxy support goes through ``requests``/urllib3
and aiohttp, which speak absolute-form requests (``POST http://host/path``) for plain HTTP and
``CONNECT host:port`` tunnels for HTTPS. Only a real proxy proves both, and its log proves the
traffic really went through it.

Each :class:`TinyProxy` writes its own config in a temporary folder (never the system one: the
Debian service is not used), listens on a free loopback port, allows ``CONNECT`` to any port (no
``ConnectPort`` line), and logs at level ``Info``, which includes every request line. tinyproxy
1.11 writes them as (level name padded to 10 columns, then a syslog-style timestamp and its pid)::

  CONNECT   Nov 21 13:50:12.344 [4335]: Request (file descriptor 5): POST http://127.0.0.1:8765/path HTTP/1.1
  CONNECT   Nov 21 13:50:12.356 [4335]: Request (file descriptor 5): CONNECT 127.0.0.1:8443 HTTP/1.1

:meth:`TinyProxy.requests` parses those lines into :class:`ProxyRequest`. tinyproxy logs the line
as soon as it has read it, before the ``BasicAuth`` check and before it contacts the upstream, so
requests it refused (407) or could not forward (500, 502) appear too.

Mind that tinyproxy answers such errors and closes the connection without reading the request
body: for a POST, ``requests`` then raises ``ChunkedEncodingError`` (connection reset) instead of
returning the 407/500, while aiohttp usually gets the status. A GET gets the status cleanly.
Install tinyproxy with ``scripts/system-packages.sh`` (``apt-get install -y tinyproxy``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from types import TracebackType

INSTALL_HINT = (
    "tinyproxy is not installed; the proxy tests need Debian's tinyproxy binary. Install it with "
    "`bash scripts/system-packages.sh` as root (or `apt-get update && apt-get install -y tinyproxy`)."
)
#: ``Request (file descriptor N): METHOD TARGET HTTP/x.y``, as logged by tinyproxy's reqs.c.
REQUEST_LINE = re.compile(
    r"Request \(file descriptor (?P<fd>\d+)\): (?P<method>\S+) (?P<target>\S+) (?P<version>HTTP/[\d.]+)\s*$"
)
_CANDIDATES = ("/usr/bin/tinyproxy", "/usr/sbin/tinyproxy")
_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 5.0
_PORT_ATTEMPTS = 3


class TinyProxyNotInstalled(RuntimeError):
    """tinyproxy is missing; the message says how to install it."""


class TinyProxyError(RuntimeError):
    """tinyproxy did not start; the message carries its output and log."""


@dataclasses.dataclass(frozen=True)
class ProxyRequest:
    """One request line tinyproxy received: ``method`` ``target`` ``version``.

    ``target`` is an absolute URL for plain HTTP (``http://127.0.0.1:8765/path``) and
    ``host:port`` for a ``CONNECT`` tunnel (HTTPS).
    """

    method: str
    target: str
    version: str
    fd: int

    @property
    def line(self) -> str:
        return f"{self.method} {self.target} {self.version}"


def find_tinyproxy() -> str:
    """Path of the tinyproxy binary; raises :class:`TinyProxyNotInstalled` with the install hint."""
    found = shutil.which("tinyproxy")
    if found:
        return found
    for candidate in _CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    raise TinyProxyNotInstalled(INSTALL_HINT)


def free_port() -> int:
    """A loopback port free right now (tinyproxy binds it itself, so a race is retried)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def parse_requests(log_text: str) -> list[ProxyRequest]:
    """Every request line in a tinyproxy log, in order."""
    found = []
    for line in log_text.splitlines():
        match = REQUEST_LINE.search(line)
        if match:
            found.append(ProxyRequest(match["method"], match["target"], match["version"], int(match["fd"])))
    return found


class TinyProxy:
    """A private tinyproxy on ``127.0.0.1``; use as a context manager (or ``start``/``stop``).

    ``url`` is ``http://127.0.0.1:PORT``. With ``basic_auth=(user, password)`` the proxy answers
    407 without credentials and ``auth_url`` carries them (``http://user:password@127.0.0.1:PORT``).
    """

    def __init__(self, *, basic_auth: tuple[str, str] | None = None, directory: Path | None = None) -> None:
        if basic_auth is not None and not all(re.fullmatch(r"[\w.-]+", part) for part in basic_auth):
            raise ValueError("basic_auth user and password: letters, digits, '_', '.', '-' only")
        self.basic_auth = basic_auth
        self._own_dir = directory is None
        self.directory = Path(tempfile.mkdtemp(prefix="tinyproxy-")) if directory is None else directory
        self.config_path = self.directory / "tinyproxy.conf"
        self.log_path = self.directory / "tinyproxy.log"
        self.output_path = self.directory / "tinyproxy.out"
        self.port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None

    # ------------------------------------------------------------------------------ lifecycle
    def start(self) -> TinyProxy:
        """Start tinyproxy in the foreground (``-d``) in its own session; return once it listens."""
        binary = find_tinyproxy()
        self.directory.mkdir(parents=True, exist_ok=True)
        for _attempt in range(_PORT_ATTEMPTS):  # another process may grab the free port first
            self.port = free_port()
            self.config_path.write_text(self._config(self.port))
            with self.output_path.open("wb") as output:
                self._process = subprocess.Popen(
                    [binary, "-d", "-c", str(self.config_path)],
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            if self._wait_listening():
                return self
            self._kill()
        raise TinyProxyError(f"tinyproxy did not start:\n{self._diagnostics()}")

    def _config(self, port: int) -> str:
        lines = [
            f"Port {port}",
            "Listen 127.0.0.1",
            "Timeout 60",
            "MaxClients 100",
            "Allow 127.0.0.1",
            f'LogFile "{self.log_path}"',
            "LogLevel Info",
            f'PidFile "{self.directory / "tinyproxy.pid"}"',
            # No ConnectPort line: CONNECT is allowed to every port, so HTTPS to an emulator works.
        ]
        if self.basic_auth is not None:
            lines.append("BasicAuth {} {}".format(*self.basic_auth))
        return "\n".join(lines) + "\n"

    def _wait_listening(self) -> bool:
        assert self._process is not None and self.port is not None
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
                return True
            time.sleep(0.02)
        return False

    def _kill(self) -> None:
        """SIGTERM the process group (tinyproxy's own session), SIGKILL if it lingers."""
        process, self._process = self._process, None
        if process is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if process.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(_STOP_TIMEOUT)

    def stop(self) -> None:
        """Stop the proxy; idempotent. A folder made by the proxy itself is removed."""
        self._kill()
        if self._own_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> TinyProxy:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------------------ inspection
    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``, for ``proxies={"http": url, "https": url}`` or ``proxy=url``."""
        if self.port is None:
            raise RuntimeError("the proxy is not started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def auth_url(self) -> str:
        """The URL with the ``basic_auth`` credentials in it (``url`` when there are none)."""
        if self.basic_auth is None:
            return self.url
        user, password = self.basic_auth
        return f"http://{user}:{password}@127.0.0.1:{self.port}"

    def log_text(self) -> str:
        """The whole log so far ('' before tinyproxy wrote any)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def mark(self) -> int:
        """A position in the log: pass it as ``since`` to see only later requests."""
        return len(self.log_text())

    def requests(self, since: int = 0) -> list[ProxyRequest]:
        """Request lines logged after position ``since`` (see :meth:`mark`), in order."""
        return parse_requests(self.log_text()[since:])

    def request_lines(self, since: int = 0) -> list[str]:
        """The same as strings: ``"POST http://127.0.0.1:8765/path HTTP/1.1"``,
        ``"CONNECT 127.0.0.1:8443 HTTP/1.1"``."""
        return [request.line for request in self.requests(since)]

    def wait_for_request(
        self, method: str, target: str, *, since: int = 0, timeout: float = 5.0
    ) -> ProxyRequest:
        """The first logged request with ``method`` whose target starts with ``target``.

        tinyproxy logs the line before it contacts the upstream, so a finished call is normally
        logged already; the short poll only covers a slow disk. Raises ``AssertionError`` with
        the request lines seen when none matches in time.
        """
        deadline = time.monotonic() + timeout
        while True:
            for request in self.requests(since):
                if request.method == method and request.target.startswith(target):
                    return request
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"tinyproxy logged no {method} {target}*; saw {self.request_lines(since)}"
                )
            time.sleep(0.05)

    def _diagnostics(self) -> str:
        try:
            output = self.output_path.read_text(errors="replace")
        except FileNotFoundError:
            output = ""
        return f"--- output ---\n{output}\n--- log ---\n{self.log_text()}"

    def __repr__(self) -> str:
        return f"<TinyProxy {self.url if self.port else 'not started'}>"
