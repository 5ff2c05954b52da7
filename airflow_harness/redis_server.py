"""A private ``redis-server`` on a free loopback port: no persistence, stopped as a unit.

Used for Celery's broker and result backend and for the provider's cluster-wide rate budget, in
the distributed deployment and in the rate-limiter tests. Debian's ``redis-server`` package
provides the program (``scripts/system-packages.sh`` installs it); its system service is never
used.
"""

from __future__ import annotations

import json
import shutil
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

from .errors import DeploymentError
from .processes import Service, free_port, terminate


def redis_server_program() -> str | None:
    """Path of ``redis-server``, or ``None`` when it is not installed."""
    return shutil.which("redis-server") or next(
        (p for p in ("/usr/bin/redis-server", "/usr/sbin/redis-server") if Path(p).exists()), None
    )


def redis_connection(url: str) -> str:
    """An Airflow Redis connection (JSON, for ``AIRFLOW_CONN_*``) for a ``redis://host:port/db`` URL."""
    parts = urlsplit(url)
    db = int(parts.path.lstrip("/") or 0)
    return json.dumps({"conn_type": "redis", "host": parts.hostname, "port": parts.port, "extra": {"db": db}})


class RedisServer:
    """One ``redis-server`` in a session of its own, its log and working folder under ``workdir``.

    :param workdir: a folder of its own (log, and the working folder Redis would save to).
    :param name: names the log file (``<name>.log``), e.g. ``redis-broker``.
    :param port: the port to listen on; a free one when ``None``. Kept across restarts, so clients
        configured with :attr:`url` reconnect after :meth:`start` follows :meth:`stop`.
    :param password: when given, clients must authenticate with it (``--requirepass``); :attr:`url`
        still carries none.
    """

    def __init__(
        self, workdir: Path, name: str = "redis", port: int | None = None, password: str | None = None
    ) -> None:
        program = redis_server_program()
        if program is None:
            raise DeploymentError("redis-server is not installed (Debian package redis-server)")
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.password = password
        # --save "" and --appendonly no: nothing survives a restart, like a fresh cache.
        argv = [
            program, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(self.workdir), "--daemonize", "no", "--protected-mode", "yes",
        ]  # fmt: skip
        if password is not None:
            argv += ["--requirepass", password]
        self.service = Service(name, argv, self.workdir / f"{name}.log")

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        """Start the server and wait until it answers ``PING``."""
        self.service.start(self.workdir, {"PATH": "/usr/bin:/bin"})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ping():
                return self
            if not self.service.running():
                break
            time.sleep(0.05)
        raise DeploymentError(f"redis-server on port {self.port} did not start; see {self.service.log_path}")

    def ping(self) -> bool:
        """Whether the server answers ``PING`` now (plain RESP over a socket, no client library)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                if self.password is not None:
                    sock.sendall(_command(b"AUTH", self.password.encode()))
                    if not sock.recv(64).startswith(b"+OK"):
                        return False
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def running(self) -> bool:
        """Whether the server process is alive."""
        return self.service.running()

    def kill(self) -> list[int]:
        """SIGKILL the server (a crash); return the pids killed."""
        return self.service.kill()

    def stop(self, grace: float = 5.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after ``grace``)."""
        if self.service.popen is not None:
            terminate([self.service], grace)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _command(*parts: bytes) -> bytes:
    """One command in RESP: an array of bulk strings (safe for any bytes, spaces included)."""
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
