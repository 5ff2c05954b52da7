"""A private PostgreSQL cluster on a free loopback port: the distributed topology's metadata DB.

Debian's ``postgresql`` package provides the programs (``scripts/system-packages.sh`` installs
it) under ``/usr/lib/postgresql/<major>/bin``, outside ``PATH``; its system service is never
used. The cluster is made with ``initdb`` in a temporary folder and thrown away afterwards, so
it is tuned for speed, not durability (``fsync``, ``full_page_writes`` and synchronous commit off).

Running as root: ``initdb`` and ``postgres`` refuse to, so both are started as ``nobody`` through
``subprocess``'s own ``user=``/``group=`` (no ``sudo``, ``runuser`` or account to create, nothing
changed on the system). The data folder is a temporary folder of its own, chowned to ``nobody``:
the deployment's home is private to root and ``nobody`` could not reach a folder inside it. The
log is written through a file descriptor the harness opened, so it stays in the home. Run by any
other user, both programs simply run as that user.

The server is ``postgres`` itself in the foreground, not ``pg_ctl start``: ``pg_ctl`` detaches the
server from the process that started it, and the harness's rule is one session per service,
killed as a unit and sent SIGTERM by the kernel if the harness dies (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from .errors import DeploymentError
from .processes import Service, free_port, terminate

#: Role and database Airflow uses; authentication is ``trust`` on loopback (a throw-away cluster).
USER = "airflow"
DATABASE = "airflow"
#: The unprivileged account the cluster runs as when the harness runs as root.
UNPRIVILEGED_USER = "nobody"

_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    # No Unix socket: the default folder (/var/run/postgresql) may not exist or not be writable.
    "unix_socket_directories": "",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    # Seven Airflow services with their pools, the task processes' API server sessions, and us.
    "max_connections": "300",
    "log_min_messages": "warning",
}


def postgres_bin_dir() -> Path | None:
    """Folder holding ``initdb`` and ``postgres`` (the newest major installed), or ``None``."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=_major_version)
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("postgres")
    return Path(on_path).parent if on_path and shutil.which("initdb") else None


def _major_version(path: str) -> int:
    try:
        return int(Path(path).parts[-3])
    except ValueError:
        return 0


def _run_as() -> dict[str, Any]:
    """``subprocess`` arguments that drop root to ``nobody``; nothing for any other user."""
    if os.geteuid() != 0:
        return {}
    account = pwd.getpwnam(UNPRIVILEGED_USER)
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


class PostgresServer:
    """One throw-away PostgreSQL cluster: ``initdb`` on :meth:`start`, removed on :meth:`stop`.

    :param log_dir: where ``postgres.log`` (and ``initdb.log``) go.
    :param port: the port to listen on; a free one when ``None``.
    """

    def __init__(self, log_dir: Path, port: int | None = None) -> None:
        bin_dir = postgres_bin_dir()
        if bin_dir is None:
            raise DeploymentError("PostgreSQL is not installed (Debian package postgresql)")
        self.bin_dir = bin_dir
        self.log_dir = Path(log_dir)
        self.port = port or free_port()
        self.workdir: Path | None = None
        self.service: Service | None = None

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the Airflow database (``postgresql+psycopg2://…``)."""
        return f"postgresql+psycopg2://{USER}@127.0.0.1:{self.port}/{DATABASE}"

    def dsn(self, database: str = DATABASE) -> dict[str, Any]:
        """``psycopg2.connect`` keyword arguments for ``database``."""
        return {
            "host": "127.0.0.1",
            "port": self.port,
            "user": USER,
            "dbname": database,
            "connect_timeout": 5,
        }

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> PostgresServer:
        """Create the cluster, start the server, wait until it answers, create the Airflow database."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        data = self._initdb()
        argv = [str(self.bin_dir / "postgres"), "-D", str(data), "-p", str(self.port)]
        for name, value in _SETTINGS.items():
            argv += ["-c", f"{name}={value}"]
        self.service = Service("postgres", argv, self.log_dir / "postgres.log", run_as=_run_as())
        self.service.start(data.parent, {"PATH": "/usr/bin:/bin", "LC_ALL": "C"})
        self._wait_ready(timeout)
        self._create_database()
        return self

    def _initdb(self) -> Path:
        """``initdb`` into a fresh temporary folder owned by the account the server runs as."""
        self.workdir = Path(tempfile.mkdtemp(prefix="airflow-postgres-"))
        run_as = _run_as()
        if run_as:
            os.chown(self.workdir, run_as["user"], run_as["group"])
        data = self.workdir / "data"
        argv = [
            str(self.bin_dir / "initdb"), "-D", str(data), "-U", USER, "--auth=trust",
            "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions",
        ]  # fmt: skip
        with open(self.log_dir / "initdb.log", "wb") as log:
            proc = subprocess.run(
                argv, cwd=self.workdir, env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"},
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, timeout=120,
                start_new_session=True, check=False, **run_as,
            )  # fmt: skip
        if proc.returncode != 0:
            tail = (self.log_dir / "initdb.log").read_text(errors="replace")[-2000:]
            raise DeploymentError(f"initdb exited {proc.returncode}:\n{tail}")
        return data

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ping("postgres"):
                return
            if self.service is None or not self.service.running():
                break
            time.sleep(0.1)
        raise DeploymentError(
            f"PostgreSQL on port {self.port} did not start; see {self.log_dir / 'postgres.log'}"
        )

    def _create_database(self) -> None:
        import psycopg2

        conn = psycopg2.connect(**self.dsn("postgres"))
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE {DATABASE}")
        finally:
            conn.close()

    def ping(self, database: str = DATABASE) -> bool:
        """Whether the server accepts a connection to ``database`` now."""
        import psycopg2

        try:
            psycopg2.connect(**{**self.dsn(database), "connect_timeout": 1}).close()
        except psycopg2.Error:
            return False
        return True

    def running(self) -> bool:
        """Whether the postmaster is alive."""
        return self.service is not None and self.service.running()

    def processes(self) -> list[psutil.Process]:
        """The postmaster and its backends."""
        return self.service.processes() if self.service is not None else []

    def stop(self, grace: float = 5.0) -> None:
        """Fast shutdown (SIGINT: disconnect clients), SIGKILL after ``grace``; remove the cluster.

        Not SIGTERM: that is Postgres's *smart* shutdown, which waits for every client to leave.
        """
        svc = self.service
        if svc is not None and svc.running() and svc.pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(svc.pid, signal.SIGINT)
            svc.reap(timeout=grace)
        if svc is not None:
            terminate([svc], 0)
            svc.reap()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
