"""Process control: each service in a session of its own, killed as a unit, never outliving its caller.

Task runners call ``setpgid(0, 0)`` and so leave their service's process group, but not its
session: the session (``setsid``) is what holds a whole service together, so that is what is
scanned and signalled. Whatever happens to the caller – an exception, ``exit()``, SIGTERM or
SIGHUP – the safety net at the bottom stops every deployment still running.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

import psutil

_PR_SET_PDEATHSIG = 1


def free_port(host: str = "127.0.0.1") -> int:
    """An unused TCP port on ``host`` (racy by nature, good enough for a private test box)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


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


def alive(procs: Sequence[psutil.Process]) -> list[psutil.Process]:
    """The processes of ``procs`` still running: a zombie needs no signal, only its parent's wait."""
    found = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def signal_all(procs: Sequence[psutil.Process], sig: int) -> None:
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


@dataclass
class Service:
    """One service: its command line, its log file, and the process started last.

    ``run_as`` holds ``subprocess`` credential arguments (``user``, ``group``, ``extra_groups``)
    for programs that refuse to run as root (PostgreSQL). ``log_offset`` is the size of the log
    when the process was started last: what it wrote since is past that offset.
    """

    name: str
    argv: list[str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None
    started_at: datetime | None = None
    run_as: Mapping[str, Any] = field(default_factory=dict)
    log_offset: int = 0

    @property
    def pid(self) -> int | None:
        """Pid of the top process, which is also its session id."""
        return self.popen.pid if self.popen is not None else None

    def running(self) -> bool:
        """Whether the top process has not exited (its children may outlive it)."""
        return self.popen is not None and self.popen.poll() is None

    def start(self, cwd: Path, env: Mapping[str, str]) -> None:
        """Start in a new session, appending stdout and stderr to the log after a banner line.

        ``started_at`` lies a second early: clock rounding must not make a job row written by the
        new process look older than the start, which would make it look like a leftover.
        """
        in_main = threading.current_thread() is threading.main_thread()
        with open(self.log_path, "ab") as log:
            self.log_offset = log.tell()
            stamp = datetime.now(UTC).isoformat()
            log.write(
                f"\n=== airflow-deployment: starting {self.name} at {stamp}: {' '.join(self.argv)}\n".encode()
            )
            log.flush()
            self.started_at = datetime.now(UTC) - timedelta(seconds=1)
            self.popen = subprocess.Popen(
                self.argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                # Only the main thread outlives the harness; PDEATHSIG follows the spawning thread.
                # It runs after the switch to ``run_as`` (which would clear it), so it survives.
                preexec_fn=pdeathsig_preexec if in_main and sys.platform == "linux" else None,
                **self.run_as,
            )

    def output_since_start(self) -> str:
        """What the process started last has written to its log (banner included)."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(self.log_offset)
                return log.read().decode(errors="replace")
        except OSError:
            return ""

    def processes(self) -> list[psutil.Process]:
        """Every live process of the service: its session plus any descendant that left it."""
        if self.pid is None:
            return []
        procs = {p.pid: p for p in session_processes(self.pid)}
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(self.pid)
            procs.setdefault(root.pid, root)
            for child in root.children(recursive=True):
                procs.setdefault(child.pid, child)
        return alive(list(procs.values()))

    def kill(self) -> list[int]:
        """SIGKILL every process at once, i.e. a crash; return their pids."""
        procs = self.processes()
        signal_all(procs, signal.SIGKILL)
        psutil.wait_procs(procs, timeout=10)
        self.reap()
        return [p.pid for p in procs]

    def reap(self, timeout: float = 5) -> None:
        """Collect the top process's exit status, so that it does not linger as a zombie."""
        if self.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=timeout)


def terminate(services: Sequence[Service], grace: float) -> None:
    """Stop services: SIGTERM to each top process, SIGKILL what is left after ``grace``.

    SIGTERM goes to the top process only – it winds its own children down, and Airflow
    services read a second signal as "force exit". Task runners (their own process groups)
    get SIGKILL at once: on SIGTERM they only call ``on_kill`` and leave the killing to their
    supervisor, so the scheduler would otherwise wait for running tasks to finish.
    """
    procs: list[psutil.Process] = []
    roots: list[int] = []
    for svc in services:
        with contextlib.suppress(Exception):
            procs.extend(svc.processes())
        if svc.running() and svc.pid is not None:
            roots.append(svc.pid)
    if not procs:
        return
    left = procs
    if grace > 0:
        _kill_task_groups(procs, roots)
        for pid in roots:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGTERM)
        _, left = psutil.wait_procs(procs, timeout=grace)
        for svc in services:  # a dying service may have forked since the first scan
            with contextlib.suppress(Exception):
                left.extend(svc.processes())
    left = alive(left)
    if left:
        signal_all(left, signal.SIGKILL)
        psutil.wait_procs(left, timeout=5)
    # A zombie is reaped by its parent, or by init once orphaned, a moment later: wait for that, so
    # that nothing of the services is left in the process table when this returns.
    psutil.wait_procs(procs, timeout=5)


def _kill_task_groups(procs: Sequence[psutil.Process], roots: Sequence[int]) -> None:
    """SIGKILL every process group of ``procs`` but the services' own (whose leaders are ``roots``)."""
    task_groups: set[int] = set()
    for proc in procs:
        with contextlib.suppress(OSError):
            task_groups.add(os.getpgid(proc.pid))
    for pgid in task_groups - set(roots):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)


# --- safety net: whatever happens to the caller, the services must not outlive it ---------------


class _Stoppable(Protocol):
    def stop(self) -> None: ...


_LIVE: set[_Stoppable] = set()
_LIVE_LOCK = threading.Lock()
_AFTER_TEARDOWN: list[Callable[[], None]] = []
_NET_INSTALLED = False


def track(deployment: _Stoppable) -> None:
    """Have the safety net stop ``deployment`` if the caller goes away without doing so."""
    with _LIVE_LOCK:
        _LIVE.add(deployment)


def untrack(deployment: _Stoppable) -> None:
    """``deployment`` stopped by itself: the safety net can forget it."""
    with _LIVE_LOCK:
        _LIVE.discard(deployment)


def after_teardown(cleanup: Callable[[], None]) -> None:
    """Run ``cleanup`` once the safety net has stopped every deployment (e.g. remove shared files)."""
    _AFTER_TEARDOWN.append(cleanup)


def _stop_all_live() -> None:
    with _LIVE_LOCK:
        live = list(_LIVE)
    for deployment in live:
        with contextlib.suppress(Exception):
            deployment.stop()
    for cleanup in _AFTER_TEARDOWN:
        cleanup()


def _on_fatal_signal(signum: int, frame: FrameType | None) -> None:
    _stop_all_live()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def install_safety_net() -> None:
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
