"""A real, local Airflow 3.3 deployment for end-to-end tests and benchmarks.

Unit tests can't show that a deferrable operator really survives the triggerer, the execution API
and the scheduler working together, so this module starts the real services – ``api-server``,
``scheduler`` (LocalExecutor), ``dag-processor`` and ``triggerer`` – on SQLite and loopback only,
each in its own session (``setsid``) so that it, and every task process it forks, can be killed
as a unit.

It deliberately does not import Airflow: the calling process (pytest) has its own AIRFLOW_HOME and
configuration, and the deployment must not share them. It talks to the services over the REST API
v2 and reads the metadata database with ``sqlite3``.

Importable from tests and benchmarks (no pytest imports); also a small CLI (see :func:`main`)::

    with AirflowDeployment(dags_dir, env={"AIRFLOW_CONN_X": "..."}) as af:
        result = af.run_dag("my_dag", conf={...}, timeout=120)   # parse, unpause, trigger, wait
        af.kill_service("triggerer"); af.start_service("triggerer")
        af.worker_slot_seconds("my_dag", result.run_id)          # from the LocalExecutor workers

Things learnt the hard way (Airflow 3.3.2, two cores):

* REST auth: SimpleAuthManager with ``simple_auth_manager_all_admins`` hands out a token on
  ``GET /auth/token``; no password file needed.
* ``task_instance.duration`` includes deferred time (the start date survives the resume). Slot
  time comes from the supervisor's ``Workload finished`` lines (:meth:`AirflowDeployment.workloads`);
  time in ``running`` from the audit ``log`` table (:meth:`AirflowDeployment.running_intervals`).
* A task supervisor often notices its task process has exited only at its next select timeout,
  ``[workers] min_heartbeat_interval`` (5 s), so a slot stays busy that long after a task ends
  or defers. If the trigger fires sooner, the resumed try can be running when the stale executor
  "success" event of the deferral arrives, and the scheduler marks it failed ("state mismatch").
  Deferrals shorter than ~6 s are flaky under LocalExecutor for that reason.
* On SIGTERM a task process only calls ``on_kill``; the scheduler then waits for it. Teardown
  therefore SIGKILLs task process groups and stops the api-server last (supervisors report
  through it).
"""

from __future__ import annotations

import argparse
import atexit
import base64
import contextlib
import ctypes
import json
import os
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import psutil
import requests

__all__ = [
    "SERVICES",
    "AirflowDeployment",
    "DeploymentError",
    "MemorySampler",
    "RunResult",
    "TaskInstanceRecord",
    "TaskStateEvent",
    "Workload",
    "main",
    "pid_alive",
]

#: Services in start order. The dag-processor is its own command in Airflow 3 (the scheduler no
#: longer parses DAG files); the api-server must be up before tasks run (execution API).
SERVICES: tuple[str, ...] = ("api-server", "dag-processor", "scheduler", "triggerer")

#: ``job.job_type`` written by the services that heartbeat into the metadata DB.
JOB_TYPES: dict[str, str] = {
    "scheduler": "SchedulerJob",
    "triggerer": "TriggererJob",
    "dag-processor": "DagProcessorJob",
}

_FINAL_RUN_STATES = frozenset({"success", "failed"})
_SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
_PR_SET_PDEATHSIG = 1
_KV_RE = re.compile(r"(\w+)=(\S+)")

# A migrated metadata DB per Python process, copied into later homes: `airflow db migrate` costs
# several seconds, an identical fresh DB costs a file copy.
_TEMPLATE_LOCK = threading.Lock()
_TEMPLATE_DB: Path | None = None


class DeploymentError(RuntimeError):
    """A service failed to start, died, or the API refused a request."""


@dataclass(frozen=True)
class TaskInstanceRecord:
    """One task_instance (or task_instance_history) row: what a slot-time benchmark needs."""

    task_id: str
    map_index: int
    run_id: str
    state: str | None
    try_number: int
    start_date: datetime | None
    end_date: datetime | None
    duration: float | None
    queued_dttm: datetime | None
    scheduled_dttm: datetime | None
    operator: str | None
    next_method: str | None
    trigger_id: int | None
    pid: int | None

    @property
    def key(self) -> str:
        """``task_id`` or ``task_id[map_index]`` for mapped tasks."""
        return self.task_id if self.map_index < 0 else f"{self.task_id}[{self.map_index}]"


@dataclass(frozen=True)
class TaskStateEvent:
    """One state transition of a task instance, from the audit ``log`` table."""

    at: datetime
    task_id: str
    map_index: int
    run_id: str | None
    try_number: int
    event: str

    @property
    def key(self) -> str:
        """``task_id`` or ``task_id[map_index]``."""
        return self.task_id if self.map_index < 0 else f"{self.task_id}[{self.map_index}]"


@dataclass(frozen=True)
class Workload:
    """One execution of a task by a LocalExecutor worker (``Workload finished`` log line)."""

    ti_id: str
    duration: float
    final_state: str
    exit_code: int
    finished_at: datetime | None


@dataclass
class RunResult:
    """Final state of a DAG run, plus every task state seen while polling (to prove deferral)."""

    dag_id: str
    run_id: str
    state: str
    task_states: dict[str, str | None]
    observed_states: dict[str, list[str | None]] = field(default_factory=dict)
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether the run succeeded."""
        return self.state == "success"

    def saw_state(self, task_key: str, state: str) -> bool:
        """Whether polling ever saw ``task_key`` in ``state`` (e.g. ``deferred``)."""
        return state in self.observed_states.get(task_key, [])


@dataclass
class _Service:
    name: str
    argv: list[str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None
    started_at: datetime | None = None

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen is not None else None

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None


def free_port(host: str = "127.0.0.1") -> int:
    """An unused TCP port on ``host`` (racy by nature, good enough for a private test box)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def parse_db_datetime(value: Any) -> datetime | None:
    """Parse a SQLite UtcDateTime column (naive UTC text) into an aware datetime."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        parsed = value
    else:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def session_processes(sid: int) -> list[psutil.Process]:
    """Every process in session ``sid``.

    Task runners call ``setpgid(0, 0)`` and so leave the service's process group, but not its
    session: the session is what holds a whole service together.
    """
    found: list[psutil.Process] = []
    for proc in psutil.process_iter():
        try:
            if os.getsid(proc.pid) == sid:
                found.append(proc)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return found


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _alive(procs: Sequence[psutil.Process]) -> list[psutil.Process]:
    alive = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
        except psutil.Error:
            continue
    return alive


def _signal_all(procs: Sequence[psutil.Process], sig: int) -> None:
    """Signal each process group once, and directly only processes whose group is unknown.

    Exactly once per process: Airflow services treat a second SIGTERM as "force exit now".
    """
    pgids: set[int] = set()
    loose: list[psutil.Process] = []
    for proc in procs:
        try:
            pgids.add(os.getpgid(proc.pid))
        except OSError:
            loose.append(proc)
    for pgid in pgids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
    for proc in loose:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(sig)


def pdeathsig_preexec() -> None:
    """In the child: get SIGTERM if the parent dies, so a SIGKILLed test run leaves less behind."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _read_peak_rss(pid: int) -> int:
    """VmHWM (peak resident set) of one process in bytes, 0 if unknown."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


class MemorySampler:
    """Sample a service's process tree RSS in a thread; ``peak`` is the largest tree total seen.

    Per-process VmHWM values can't be summed into a tree peak (they peak at different times),
    hence sampling.
    """

    def __init__(self, processes: Callable[[], list[psutil.Process]], interval: float = 0.2) -> None:
        self._processes = processes
        self.interval = interval
        self.peak = 0
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="memory-sampler", daemon=True)

    def sample(self) -> int:
        """Take one sample now and return the tree's total RSS in bytes."""
        total = 0
        for proc in self._processes():
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        self.samples.append((time.monotonic(), total))
        self.peak = max(self.peak, total)
        return total

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def start(self) -> MemorySampler:
        """Start sampling in the background."""
        self._thread.start()
        return self

    def stop(self) -> int:
        """Stop sampling; return the peak in bytes."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        return self.peak

    def __enter__(self) -> MemorySampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- safety net: whatever happens to the caller, the services must not outlive it ---------------

_LIVE: set[AirflowDeployment] = set()
_LIVE_LOCK = threading.Lock()
_NET_INSTALLED = False


def _stop_all_live() -> None:
    with _LIVE_LOCK:
        live = list(_LIVE)
    for deployment in live:
        with contextlib.suppress(Exception):
            deployment.stop()
    if _TEMPLATE_DB is not None:
        shutil.rmtree(_TEMPLATE_DB.parent, ignore_errors=True)


def _on_fatal_signal(signum: int, frame: FrameType | None) -> None:
    _stop_all_live()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _install_safety_net() -> None:
    """atexit always; SIGTERM/SIGHUP only in the main thread and only if nobody else handles them."""
    global _NET_INSTALLED
    if _NET_INSTALLED:
        return
    _NET_INSTALLED = True
    atexit.register(_stop_all_live)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(sig) in (signal.SIG_DFL, None):
                signal.signal(sig, _on_fatal_signal)


class AirflowDeployment:
    """A private Airflow deployment: four services, one SQLite DB, one temporary AIRFLOW_HOME.

    Use as a context manager (``with AirflowDeployment(dags) as af: af.run_dag("x")``); ``stop()``
    is also registered with atexit and SIGTERM/SIGHUP so nothing outlives the caller.
    """

    def __init__(
        self,
        dags_folder: str | os.PathLike[str],
        env: Mapping[str, str] | None = None,
        home: str | os.PathLike[str] | None = None,
        *,
        parallelism: int = 2,
        api_port: int | None = None,
        keep_home: bool | None = None,
        startup_timeout: float = 120.0,
    ) -> None:
        self.dags_folder = Path(dags_folder).resolve()
        if not self.dags_folder.is_dir():
            raise ValueError(f"DAGs folder {self.dags_folder} does not exist")
        self._own_home = home is None
        self.home = Path(home or tempfile.mkdtemp(prefix="airflow-deployment-")).resolve()
        self.home.mkdir(parents=True, exist_ok=True)
        if keep_home is None:
            keep_home = os.environ.get("AIRFLOW_DEPLOYMENT_KEEP_HOME", "") not in ("", "0", "false")
        self.keep_home = keep_home or not self._own_home
        self.parallelism = parallelism
        self.api_port = api_port or free_port()
        self.startup_timeout = startup_timeout
        self.extra_env = dict(env or {})
        self.db_path = self.home / "airflow.db"
        self.service_log_dir = self.home / "service-logs"
        self.service_log_dir.mkdir(exist_ok=True)
        self.task_log_dir = self.home / "logs"
        self.env = self._build_env()
        self._services: dict[str, _Service] = {
            name: _Service(name, self._argv(name), self.service_log_dir / f"{name}.log") for name in SERVICES
        }
        self._http = requests.Session()
        self._token: str | None = None
        self.timings: dict[str, float] = {}

    # --- configuration ---------------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        """Base URL of the api-server (REST API under ``/api/v2``)."""
        return f"http://127.0.0.1:{self.api_port}"

    def _build_env(self) -> dict[str, str]:
        """Services' environment: the caller's minus any inherited Airflow config, plus ours, plus extra."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "_AIRFLOW"))}
        bin_dir = str(Path(sys.executable).parent)
        env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
        fernet_key = base64.urlsafe_b64encode(os.urandom(32)).decode()
        env.update(
            {
                "PYTHONUNBUFFERED": "1",
                "NO_COLOR": "1",
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": str(self.parallelism),
                "AIRFLOW__CORE__FERNET_KEY": fernet_key,
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
                "AIRFLOW__CORE__AUTH_MANAGER": _SIMPLE_AUTH_MANAGER,
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.db_path}",
                "AIRFLOW__DATABASE__LOAD_DEFAULT_CONNECTIONS": "False",
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.api_port),
                "AIRFLOW__API__BASE_URL": f"{self.api_url}/",
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
                # One secret shared by every process: the api-server signs the task JWTs it checks.
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
                "AIRFLOW__LOGGING__COLORED_CONSOLE_LOG": "False",
                "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.task_log_dir),
                # Services run with --skip-serve-logs, but never collide with a default port anyway.
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
                "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "2",
                "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
                "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
                # Runs only when the caller triggers them: no surprise scheduled runs in benchmarks.
                "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10",
                "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
                "AIRFLOW__DAG_PROCESSOR__PRINT_STATS_INTERVAL": "300",
                "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
                # A killed triggerer's triggers go to a new one once it has missed this many seconds.
                "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "10",
            }
        )
        env.update(self.extra_env)
        return env

    def _airflow_cmd(self) -> list[str]:
        script = Path(sys.executable).parent / "airflow"
        return [str(script)] if script.exists() else [sys.executable, "-m", "airflow"]

    def _argv(self, name: str) -> list[str]:
        cmd = self._airflow_cmd()
        if name == "api-server":
            return [*cmd, "api-server", "--host", "127.0.0.1", "--port", str(self.api_port), "--workers", "1"]
        if name in ("scheduler", "triggerer"):
            return [*cmd, name, "--skip-serve-logs"]
        return [*cmd, name]

    # --- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> AirflowDeployment:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is not None and exc_type is not KeyboardInterrupt:
                sys.stderr.write(self.format_log_tails())
        finally:
            self.stop()

    def migrate(self) -> None:
        """Create the metadata DB once per home (copy of a per-process template after the first)."""
        global _TEMPLATE_DB
        marker = self.home / ".migrated"
        if marker.exists() and self.db_path.exists():
            return
        t0 = time.monotonic()
        with _TEMPLATE_LOCK:
            if _TEMPLATE_DB is not None and _TEMPLATE_DB.exists():
                shutil.copyfile(_TEMPLATE_DB, self.db_path)
            else:
                self._run_cli(["db", "migrate"], timeout=300, log_name="db-migrate")
                template_dir = Path(tempfile.mkdtemp(prefix="airflow-deployment-template-"))
                _TEMPLATE_DB = template_dir / "airflow.db"
                shutil.copyfile(self.db_path, _TEMPLATE_DB)
        marker.write_text("ok\n")
        self.timings["migrate"] = time.monotonic() - t0

    def start(self, timeout: float | None = None) -> None:
        """Migrate, start every service and wait until all are healthy."""
        _install_safety_net()
        with _LIVE_LOCK:
            _LIVE.add(self)
        t0 = time.monotonic()
        self.migrate()
        for name in SERVICES:
            self.start_service(name, wait=False)
        self.wait_healthy(timeout=timeout or self.startup_timeout)
        self.timings["start"] = time.monotonic() - t0

    def start_service(self, name: str, *, wait: bool = True, timeout: float | None = None) -> None:
        """Start one service in its own session, appending its output to its log file."""
        svc = self._service(name)
        if svc.running():
            raise DeploymentError(f"{name} is already running (pid {svc.pid})")
        with _LIVE_LOCK:
            _LIVE.add(self)
        in_main = threading.current_thread() is threading.main_thread()
        with open(svc.log_path, "ab") as log:
            stamp = datetime.now(UTC).isoformat()
            log.write(
                f"\n=== airflow-deployment: starting {name} at {stamp}: {' '.join(svc.argv)}\n".encode()
            )
            log.flush()
            # Slack for clock rounding: a job row started "before" this is from an older process.
            svc.started_at = datetime.now(UTC) - timedelta(seconds=1)
            svc.popen = subprocess.Popen(
                svc.argv,
                cwd=self.home,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                # Only the main thread outlives the harness; PDEATHSIG follows the spawning thread.
                preexec_fn=pdeathsig_preexec if in_main and sys.platform == "linux" else None,
            )
        if wait:
            self.wait_healthy(timeout=timeout or self.startup_timeout, services=[name])

    def kill_service(self, name: str) -> list[int]:
        """SIGKILL every process of a service at once, i.e. a crash; return their pids."""
        svc = self._service(name)
        procs = self.service_processes(name)
        _signal_all(procs, signal.SIGKILL)
        psutil.wait_procs(procs, timeout=10)
        if svc.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                svc.popen.wait(timeout=5)
        return [p.pid for p in procs]

    def stop_service(self, name: str, grace: float = 10.0) -> list[int]:
        """Stop a service gracefully (SIGTERM to its top process, SIGKILL after ``grace``)."""
        pids = self.service_pids(name)
        self._terminate([name], grace)
        svc = self._service(name)
        if svc.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                svc.popen.wait(timeout=5)
        return pids

    def restart_service(self, name: str, *, kill: bool = True, timeout: float | None = None) -> None:
        """Kill (or stop) a service, start it again and wait for it to be healthy."""
        if kill:
            self.kill_service(name)
        else:
            self.stop_service(name)
        self.start_service(name, wait=True, timeout=timeout)

    def stop(self, grace: float = 3.0) -> None:
        """Tear everything down; idempotent, safe from ``finally``, atexit or a signal handler.

        Two phases, because a task supervisor still reports its task's end through the execution
        API and hangs retrying if the api-server is already gone: first every other service, then
        the api-server, each SIGTERMed and SIGKILLed after ``grace`` seconds (graceful shutdown
        of the scheduler/triggerer sometimes stalls on a child; nothing here needs it to finish).
        A final rescan SIGKILLs anything forked meanwhile.
        """
        try:
            self._terminate([n for n in SERVICES if n != "api-server"], grace)
            self._http.close()
            self._terminate(["api-server"], grace)
            self._terminate(list(SERVICES), 0)
            for svc in self._services.values():
                if svc.popen is not None:
                    with contextlib.suppress(Exception):
                        svc.popen.wait(timeout=5)
        finally:
            with _LIVE_LOCK:
                _LIVE.discard(self)
            if not self.keep_home:
                shutil.rmtree(self.home, ignore_errors=True)

    def _terminate(self, names: Sequence[str], grace: float) -> None:
        """Stop services: SIGTERM to each top process, SIGKILL what is left after ``grace``.

        SIGTERM goes to the top process only – it winds its own children down, and Airflow
        services read a second signal as "force exit". Task runners (their own process groups)
        get SIGKILL at once: on SIGTERM they only call ``on_kill`` and leave the killing to their
        supervisor, so the scheduler would otherwise wait for running tasks to finish.
        """
        procs: list[psutil.Process] = []
        roots: list[int] = []
        for name in names:
            svc = self._service(name)
            with contextlib.suppress(Exception):
                procs.extend(self.service_processes(name))
            if svc.running() and svc.pid is not None:
                roots.append(svc.pid)
        if not procs:
            return
        alive = procs
        if grace > 0:
            task_groups: set[int] = set()
            for proc in procs:
                with contextlib.suppress(OSError):
                    task_groups.add(os.getpgid(proc.pid))
            for pgid in task_groups - set(roots):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pgid, signal.SIGKILL)
            for pid in roots:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGTERM)
            _, alive = psutil.wait_procs(procs, timeout=grace)
            for name in names:  # a dying service may have forked since the first scan
                with contextlib.suppress(Exception):
                    alive.extend(self.service_processes(name))
        alive = _alive(alive)
        if alive:
            _signal_all(alive, signal.SIGKILL)
            psutil.wait_procs(alive, timeout=5)

    # --- processes and logs ----------------------------------------------------------------------

    def _service(self, name: str) -> _Service:
        try:
            return self._services[name]
        except KeyError:
            raise ValueError(f"unknown service {name!r}; one of {SERVICES}") from None

    def session_ids(self) -> dict[str, int]:
        """Session id (= process group id of the top process) of each started service."""
        return {name: svc.pid for name, svc in self._services.items() if svc.pid is not None}

    def service_processes(self, name: str) -> list[psutil.Process]:
        """Every live process of a service: its session plus any descendant that left it."""
        svc = self._service(name)
        if svc.pid is None:
            return []
        procs = {p.pid: p for p in session_processes(svc.pid)}
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(svc.pid)
            procs.setdefault(root.pid, root)
            for child in root.children(recursive=True):
                procs.setdefault(child.pid, child)
        return _alive(list(procs.values()))

    def service_pids(self, name: str) -> list[int]:
        """Pids of a service's process tree (e.g. the triggerer and its trigger runner)."""
        return sorted(p.pid for p in self.service_processes(name))

    def all_pids(self) -> list[int]:
        """Pids of every process of the deployment still alive."""
        return sorted({pid for name in SERVICES for pid in self.service_pids(name)})

    def rss(self, name: str) -> int:
        """Current total RSS of a service's process tree, in bytes."""
        total = 0
        for proc in self.service_processes(name):
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        return total

    def peak_rss_per_process(self, name: str) -> dict[int, int]:
        """VmHWM (lifetime peak RSS) of each live process of a service, in bytes."""
        return {proc.pid: _read_peak_rss(proc.pid) for proc in self.service_processes(name)}

    def memory_sampler(self, name: str, interval: float = 0.2) -> MemorySampler:
        """A :class:`MemorySampler` over a service's tree; use as ``with af.memory_sampler("triggerer")``."""
        return MemorySampler(lambda: self.service_processes(name), interval=interval)

    def log_paths(self) -> dict[str, Path]:
        """Each service's combined stdout/stderr file (appended across restarts)."""
        paths = {name: svc.log_path for name, svc in self._services.items()}
        migrate_log = self.service_log_dir / "db-migrate.log"
        if migrate_log.exists():
            paths["db-migrate"] = migrate_log
        return paths

    def log_tail(self, name: str, lines: int = 40) -> str:
        """Last ``lines`` lines of a service log."""
        path = self.log_paths().get(name)
        if path is None or not path.exists():
            return ""
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 200 * lines))
            text = fh.read().decode(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def format_log_tails(self, lines: int = 40) -> str:
        """All service log tails, headed by name: what to print when a test fails."""
        parts = []
        for name in self.log_paths():
            parts.append(f"\n----- {name} ({self.log_paths()[name]}), last {lines} lines -----\n")
            parts.append(self.log_tail(name, lines) + "\n")
        return "".join(parts)

    def task_log_files(
        self, dag_id: str, run_id: str | None = None, task_id: str | None = None
    ) -> list[Path]:
        """Task log files (``logs/dag_id=…/run_id=…/task_id=…/attempt=N.log``, JSON lines)."""
        pattern = f"dag_id={dag_id}/run_id={run_id or '*'}/task_id={task_id or '*'}/**/*.log"
        return sorted(self.task_log_dir.glob(pattern))

    def task_log_tail(self, dag_id: str, run_id: str, task_id: str, lines: int = 40) -> str:
        """Last ``lines`` messages of a task's logs (worker and trigger), as ``time level event``."""
        out = []
        for path in self.task_log_files(dag_id, run_id, task_id):
            out.append(f"----- {path.relative_to(self.task_log_dir)} -----")
            for line in path.read_text(errors="replace").splitlines()[-lines:]:
                try:
                    rec = json.loads(line)
                    out.append(f"{rec.get('timestamp')} {rec.get('level')} {rec.get('event')}")
                except ValueError:
                    out.append(line)
        return "\n".join(out)

    def _run_cli(self, args: Sequence[str], timeout: float = 120, log_name: str | None = None) -> str:
        """Run a one-shot ``airflow`` CLI command with the deployment's environment."""
        proc = subprocess.run(
            [*self._airflow_cmd(), *args],
            cwd=self.home,
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            start_new_session=True,
            check=False,
        )
        output = proc.stdout.decode(errors="replace") + proc.stderr.decode(errors="replace")
        if log_name:
            (self.service_log_dir / f"{log_name}.log").write_text(output)
        if proc.returncode != 0:
            raise DeploymentError(f"airflow {' '.join(args)} exited {proc.returncode}:\n{output[-4000:]}")
        return output

    def cli(self, *args: str, timeout: float = 120) -> str:
        """Run ``airflow <args>`` against this deployment and return its output."""
        return self._run_cli(args, timeout=timeout)

    # --- health ----------------------------------------------------------------------------------

    def _check_running(self, names: Sequence[str]) -> None:
        for name in names:
            svc = self._service(name)
            if svc.popen is not None and svc.popen.poll() is not None:
                raise DeploymentError(f"{name} exited with {svc.popen.returncode}\n{self.log_tail(name, 60)}")

    def service_healthy(self, name: str, heartbeat_within: float = 30.0) -> bool:
        """Whether a service answers (api-server) or heartbeats from *this* process (jobs).

        The api-server's own health endpoint reports the most recent job per type, which stays
        "healthy" for a while after a SIGKILL; a job row newer than our start of the service is
        the only proof the new process is alive.
        """
        svc = self._service(name)
        if not svc.running():
            return False
        if name == "api-server":
            try:
                resp = self._http.get(f"{self.api_url}/api/v2/monitor/health", timeout=5)
            except requests.RequestException:
                return False
            return resp.status_code == 200
        rows = self.query(
            "SELECT state, start_date, latest_heartbeat FROM job WHERE job_type = ? ORDER BY id DESC LIMIT 5",
            (JOB_TYPES[name],),
        )
        now = datetime.now(UTC)
        for row in rows:
            started = parse_db_datetime(row["start_date"])
            beat = parse_db_datetime(row["latest_heartbeat"])
            if (
                row["state"] == "running"
                and started is not None
                and svc.started_at is not None
                and started >= svc.started_at
                and beat is not None
                and (now - beat).total_seconds() < heartbeat_within
            ):
                return True
        return False

    def wait_healthy(self, timeout: float = 120.0, services: Sequence[str] | None = None) -> None:
        """Block until the given (default: all) services are healthy; fail fast if one dies."""
        names = list(services or SERVICES)
        deadline = time.monotonic() + timeout
        pending = list(names)
        t0 = time.monotonic()
        while pending:
            self._check_running(names)
            pending = [n for n in pending if not self.service_healthy(n)]
            if not pending:
                break
            if time.monotonic() > deadline:
                raise DeploymentError(
                    f"not healthy after {timeout:.0f}s: {pending}\n{self.format_log_tails(30)}"
                )
            time.sleep(0.5)
        self.timings["wait_healthy"] = time.monotonic() - t0

    # --- metadata DB -----------------------------------------------------------------------------

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Read-only SQL against the metadata DB (plain sqlite3, no Airflow import)."""
        if not self.db_path.exists():
            return []
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=10)
        try:
            conn.row_factory = sqlite3.Row
            return [dict(row) for row in conn.execute(sql, tuple(params)).fetchall()]
        finally:
            conn.close()

    def _ti_records(self, table: str, dag_id: str, run_id: str | None) -> list[TaskInstanceRecord]:
        where, params = "dag_id = ?", [dag_id]
        if run_id is not None:
            where += " AND run_id = ?"
            params.append(run_id)
        if table == "task_instance":
            extra = "next_method, trigger_id"
        else:  # task_instance_history keeps no deferral columns
            extra = "NULL AS next_method, NULL AS trigger_id"
        rows = self.query(
            f"SELECT task_id, map_index, run_id, state, try_number, start_date, end_date, duration, "
            f"queued_dttm, scheduled_dttm, operator, pid, {extra} FROM {table} WHERE {where} "
            f"ORDER BY run_id, task_id, map_index, try_number",
            params,
        )
        return [
            TaskInstanceRecord(
                task_id=r["task_id"],
                map_index=int(r["map_index"]),
                run_id=r["run_id"],
                state=r["state"],
                try_number=int(r["try_number"] or 0),
                start_date=parse_db_datetime(r["start_date"]),
                end_date=parse_db_datetime(r["end_date"]),
                duration=r["duration"],
                queued_dttm=parse_db_datetime(r["queued_dttm"]),
                scheduled_dttm=parse_db_datetime(r["scheduled_dttm"]),
                operator=r["operator"],
                next_method=r["next_method"],
                trigger_id=r["trigger_id"],
                pid=r["pid"],
            )
            for r in rows
        ]

    def task_instances(self, dag_id: str, run_id: str | None = None) -> list[TaskInstanceRecord]:
        """Current task_instance rows (latest try of each task)."""
        return self._ti_records("task_instance", dag_id, run_id)

    def task_instance_history(self, dag_id: str, run_id: str | None = None) -> list[TaskInstanceRecord]:
        """Earlier tries (written on retry/clear); deferral does not add rows here."""
        return self._ti_records("task_instance_history", dag_id, run_id)

    def triggers(self) -> list[dict[str, Any]]:
        """Rows of the trigger table (a trigger lives from deferral until its task resumes)."""
        return self.query("SELECT id, classpath, created_date, triggerer_id FROM trigger ORDER BY id")

    def jobs(self, job_type: str | None = None) -> list[dict[str, Any]]:
        """Rows of the job table: one per scheduler/triggerer/dag-processor process ever started."""
        if job_type is None:
            return self.query("SELECT * FROM job ORDER BY id")
        return self.query("SELECT * FROM job WHERE job_type = ? ORDER BY id", (job_type,))

    def task_state_events(self, dag_id: str, run_id: str | None = None) -> list[TaskStateEvent]:
        """Every task state change, from the audit ``log`` table, oldest first.

        Airflow 3 writes one row per transition reported through the execution API (``running``,
        ``deferred``, ``running`` again on resume, ``success`` …), so this is DB proof that a task
        was deferred and the basis of running time that excludes the deferral.
        """
        where, params = "dag_id = ? AND task_id IS NOT NULL", [dag_id]
        if run_id is not None:
            where += " AND run_id = ?"
            params.append(run_id)
        rows = self.query(
            f"SELECT dttm, task_id, map_index, run_id, try_number, event FROM log WHERE {where} ORDER BY id",
            params,
        )
        return [
            TaskStateEvent(
                at=parse_db_datetime(r["dttm"]) or datetime.min.replace(tzinfo=UTC),
                task_id=r["task_id"],
                map_index=-1 if r["map_index"] is None else int(r["map_index"]),
                run_id=r["run_id"],
                try_number=int(r["try_number"] or 0),
                event=r["event"],
            )
            for r in rows
        ]

    def running_intervals(
        self, dag_id: str, run_id: str | None = None
    ) -> dict[str, list[tuple[datetime, datetime]]]:
        """Per task key, the intervals it spent in ``running`` (deferral excluded), from the audit log.

        An interval runs from a ``running`` event to the next event of the same task instance and
        try (``deferred``, ``success``, ``failed``, ``up_for_retry`` …). It misses the supervisor's
        fork before and its clean-up after; :meth:`workloads` has those.
        """
        intervals: dict[str, list[tuple[datetime, datetime]]] = {}
        open_since: dict[tuple[str, str, int, int], datetime] = {}
        for ev in self.task_state_events(dag_id, run_id):
            ident = (ev.run_id or "", ev.task_id, ev.map_index, ev.try_number)
            began = open_since.pop(ident, None)
            if began is not None:
                intervals.setdefault(ev.key, []).append((began, ev.at))
            if ev.event == "running":
                open_since[ident] = ev.at
        return intervals

    def workloads(self) -> list[Workload]:
        """Every task execution a LocalExecutor worker finished, parsed from the scheduler log.

        The task supervisor logs ``Workload finished`` with the wall time the worker slot was
        busy (fork, task, and the supervisor's wind-down – up to ``[workers]
        min_heartbeat_interval`` seconds after the task itself ended) and the final state
        (``deferred`` for the part before a deferral, then ``success`` …). Summing ``duration``
        gives worker-slot-seconds.
        """
        path = self._service("scheduler").log_path
        if not path.exists():
            return []
        found = []
        for line in path.read_text(errors="replace").splitlines():
            if "Workload finished" not in line:
                continue
            fields: dict[str, Any]
            if line.lstrip().startswith("{"):
                try:
                    fields = json.loads(line)
                except ValueError:
                    continue
            else:
                fields = dict(_KV_RE.findall(line))
                fields["timestamp"] = line.split(" ", 1)[0]
            try:
                found.append(
                    Workload(
                        ti_id=str(fields["workload_id"]).replace("-", ""),
                        duration=float(fields["duration"]),
                        final_state=str(fields.get("final_state")),
                        exit_code=int(fields.get("exit_code", -1)),
                        finished_at=parse_db_datetime(fields.get("timestamp")),
                    )
                )
            except (KeyError, ValueError):
                continue
        return found

    def _ti_keys(self, dag_id: str, run_id: str | None) -> dict[str, str]:
        """Task instance id (every try) -> task key."""
        where, params = "dag_id = ?", [dag_id]
        if run_id is not None:
            where += " AND run_id = ?"
            params.append(run_id)
        keys: dict[str, str] = {}
        for table, id_col in (("task_instance", "id"), ("task_instance_history", "task_instance_id")):
            for r in self.query(
                f"SELECT {id_col} AS ti_id, task_id, map_index FROM {table} WHERE {where}", params
            ):
                index = int(r["map_index"])
                keys[str(r["ti_id"]).replace("-", "")] = (
                    r["task_id"] if index < 0 else f"{r['task_id']}[{index}]"
                )
        return keys

    def run_workloads(self, dag_id: str, run_id: str, timeout: float = 20.0) -> dict[str, list[Workload]]:
        """Workloads per task key of one run, waiting until every execution has reported.

        A supervisor logs its workload only when it exits, which can be seconds after the run is
        already final; one ``running`` audit event per execution says how many to expect.
        """
        expected: dict[str, int] = {}
        for ev in self.task_state_events(dag_id, run_id):
            if ev.event == "running":
                expected[ev.key] = expected.get(ev.key, 0) + 1
        deadline = time.monotonic() + timeout
        while True:
            keys = self._ti_keys(dag_id, run_id)
            found: dict[str, list[Workload]] = {}
            for wl in self.workloads():
                key = keys.get(wl.ti_id)
                if key is not None:
                    found.setdefault(key, []).append(wl)
            if all(len(found.get(k, [])) >= n for k, n in expected.items()) or time.monotonic() > deadline:
                return found
            time.sleep(0.5)

    def worker_slot_seconds(self, dag_id: str, run_id: str, timeout: float = 20.0) -> dict[str, float]:
        """Worker-slot-seconds per task key of a run (all tries and resumes, deferral excluded)."""
        return {
            key: sum(wl.duration for wl in loads)
            for key, loads in self.run_workloads(dag_id, run_id, timeout).items()
        }

    # --- REST API --------------------------------------------------------------------------------

    def token(self, refresh: bool = False) -> str:
        """A JWT for the REST API.

        With ``simple_auth_manager_all_admins`` the SimpleAuthManager hands one out on a plain
        ``GET /auth/token`` (its middleware would even add one to unauthenticated calls; sending
        the token keeps this working if that middleware changes).
        """
        if self._token is None or refresh:
            resp = self._http.get(f"{self.api_url}/auth/token", timeout=10)
            if resp.status_code not in (200, 201):
                raise DeploymentError(f"GET /auth/token -> {resp.status_code}: {resp.text[:500]}")
            self._token = str(resp.json()["access_token"])
        return self._token

    def api(self, method: str, path: str, json_body: Any = None, ok: Sequence[int] = (200,)) -> Any:
        """Call the REST API v2 (``path`` relative to ``/api/v2``); return the decoded JSON."""
        url = f"{self.api_url}/api/v2/{path.lstrip('/')}"
        for attempt in range(2):
            headers = {"Authorization": f"Bearer {self.token(refresh=attempt > 0)}"}
            resp = self._http.request(method, url, json=json_body, headers=headers, timeout=30)
            if resp.status_code != 401:
                break
        if resp.status_code not in ok:
            raise DeploymentError(f"{method} {url} -> {resp.status_code}: {resp.text[:1000]}")
        return resp.json() if resp.content else None

    def wait_for_dag(self, dag_id: str, timeout: float = 90.0) -> dict[str, Any]:
        """Wait until the dag-processor has serialized ``dag_id``; fail early on an import error."""
        deadline = time.monotonic() + timeout
        while True:
            self._check_running(["api-server", "dag-processor"])
            url = f"{self.api_url}/api/v2/dags/{dag_id}"
            resp = self._http.get(url, headers={"Authorization": f"Bearer {self.token()}"}, timeout=10)
            if resp.status_code == 200:
                dag = dict(resp.json())
                # The dag row may briefly exist before its serialized version does.
                details = self._http.get(
                    f"{url}/details", headers={"Authorization": f"Bearer {self.token()}"}, timeout=10
                )
                if details.status_code == 200:
                    return dag
            errors = self.api("GET", "importErrors").get("import_errors", [])
            if errors:
                raise DeploymentError(f"DAG import errors: {json.dumps(errors, indent=1)[:4000]}")
            if time.monotonic() > deadline:
                raise DeploymentError(
                    f"DAG {dag_id} not parsed after {timeout:.0f}s\n{self.log_tail('dag-processor', 40)}"
                )
            time.sleep(0.5)

    def unpause(self, dag_id: str) -> None:
        """Unpause a DAG (new DAGs start paused)."""
        self.api("PATCH", f"dags/{dag_id}", {"is_paused": False})

    def trigger(self, dag_id: str, conf: Mapping[str, Any] | None = None, run_id: str | None = None) -> str:
        """Trigger a manual run now; return its run_id."""
        body: dict[str, Any] = {"logical_date": None, "conf": dict(conf or {})}
        if run_id:
            body["dag_run_id"] = run_id
        run = self.api("POST", f"dags/{dag_id}/dagRuns", body)
        return str(run["dag_run_id"])

    def run_state(self, dag_id: str, run_id: str) -> str:
        """Current state of a DAG run."""
        return str(self.api("GET", f"dags/{dag_id}/dagRuns/{run_id}")["state"])

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        """Current state of each task instance of a run, keyed ``task_id`` or ``task_id[i]``."""
        data = self.api("GET", f"dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=1000")
        states: dict[str, str | None] = {}
        for ti in data["task_instances"]:
            index = ti.get("map_index", -1)
            key = ti["task_id"] if index is None or index < 0 else f"{ti['task_id']}[{index}]"
            states[key] = ti.get("state")
        return states

    def wait_for_task_state(
        self, dag_id: str, run_id: str, task_key: str, states: str | Sequence[str], timeout: float = 60.0
    ) -> str:
        """Wait until a task is in one of ``states`` (e.g. ``deferred``); return that state."""
        wanted = {states} if isinstance(states, str) else set(states)
        deadline = time.monotonic() + timeout
        while True:
            state = self.task_states(dag_id, run_id).get(task_key)
            if state in wanted:
                return str(state)
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{task_key} still {state!r} after {timeout:.0f}s, wanted {sorted(wanted)}"
                )
            time.sleep(0.25)

    def wait_for_run(
        self, dag_id: str, run_id: str, timeout: float = 120.0, poll_interval: float = 0.5
    ) -> RunResult:
        """Poll a run until it is final; record every task state seen on the way.

        Raises ``TimeoutError`` (with the last states) rather than returning a non-final run.
        """
        t0 = time.monotonic()
        observed: dict[str, list[str | None]] = {}
        while True:
            self._check_running(["api-server", "scheduler"])
            state = self.run_state(dag_id, run_id)
            states = self.task_states(dag_id, run_id)
            for key, ti_state in states.items():
                seen = observed.setdefault(key, [])
                if not seen or seen[-1] != ti_state:
                    seen.append(ti_state)
            if state in _FINAL_RUN_STATES:
                return RunResult(dag_id, run_id, state, states, observed, time.monotonic() - t0)
            if time.monotonic() - t0 > timeout:
                raise TimeoutError(f"run {dag_id}/{run_id} still {state} after {timeout:.0f}s: {states}")
            time.sleep(poll_interval)

    def run_dag(
        self,
        dag_id: str,
        conf: Mapping[str, Any] | None = None,
        timeout: float = 120.0,
        parse_timeout: float = 90.0,
    ) -> RunResult:
        """Wait for the DAG to be parsed, unpause it, trigger it and wait for the run to finish."""
        self.wait_for_dag(dag_id, timeout=parse_timeout)
        self.unpause(dag_id)
        run_id = self.trigger(dag_id, conf)
        return self.wait_for_run(dag_id, run_id, timeout=timeout)


# --- CLI ---------------------------------------------------------------------------------------------


def _parse_env(pairs: Sequence[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"--env expects KEY=VALUE, got {pair!r}")
        env[key] = value
    return env


def main(argv: Sequence[str] | None = None) -> int:
    """``airflow-deployment run-dag``: start a deployment, run one DAG, print its result, tear down."""
    parser = argparse.ArgumentParser(prog="airflow-deployment", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run-dag", help="run one DAG in a fresh deployment")
    run.add_argument("--dags-folder", required=True, type=Path)
    run.add_argument("--dag-id", required=True)
    run.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    run.add_argument("--conf", default="{}", help="JSON object passed as the run's conf")
    run.add_argument("--timeout", type=float, default=300.0, help="seconds for the run to finish")
    run.add_argument("--parse-timeout", type=float, default=90.0, help="seconds for the DAG to be parsed")
    run.add_argument("--parallelism", type=int, default=2)
    run.add_argument("--keep-home", action="store_true", help="keep AIRFLOW_HOME (logs, DB) afterwards")
    run.add_argument(
        "--report-slots", action="store_true", help="print worker-slot-seconds per task (waits for workers)"
    )
    run.add_argument("--log-lines", type=int, default=40, help="service log lines printed on failure")
    args = parser.parse_args(argv)

    try:
        conf = json.loads(args.conf)
        env = _parse_env(args.env)
    except (ValueError, argparse.ArgumentTypeError) as exc:
        parser.error(str(exc))
    deployment = AirflowDeployment(
        args.dags_folder, env=env, parallelism=args.parallelism, keep_home=args.keep_home
    )
    print(f"AIRFLOW_HOME={deployment.home} api={deployment.api_url}", flush=True)
    try:
        with deployment:
            print(f"started in {deployment.timings.get('start', 0):.1f}s", flush=True)
            result = deployment.run_dag(
                args.dag_id, conf=conf, timeout=args.timeout, parse_timeout=args.parse_timeout
            )
            if not result.ok:
                print(deployment.format_log_tails(args.log_lines), file=sys.stderr)
                for key, state in result.task_states.items():
                    if state in ("failed", "up_for_retry"):
                        task_id = key.split("[", 1)[0]
                        print(deployment.task_log_tail(args.dag_id, result.run_id, task_id), file=sys.stderr)
            slots = deployment.worker_slot_seconds(args.dag_id, result.run_id) if args.report_slots else {}
    except (DeploymentError, TimeoutError) as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    print(f"dag_id={result.dag_id} run_id={result.run_id} state={result.state} elapsed={result.elapsed:.1f}s")
    for key, state in sorted(result.task_states.items()):
        seen = " -> ".join(str(s) for s in result.observed_states.get(key, []))
        slot = f", worker-slot-seconds {slots[key]:.2f}" if key in slots else ""
        print(f"  {key}: {state} (seen: {seen}{slot})")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
