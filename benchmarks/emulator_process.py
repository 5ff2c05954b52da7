"""The emulator as a separate process, so that measurements of the client exclude the server."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

from airflow_harness import pdeathsig_preexec


class EmulatorProcess:
    """A ``lotimage-emulator`` started under its own process group, stopped by that group."""

    def __init__(self, proc: subprocess.Popen[str], url: str) -> None:
        self.proc = proc
        self.url = url

    def admin(self, path: str, payload: dict[str, Any] | None = None, method: str | None = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(
            f"{self.url}/_emulator/{path}",
            data=data,
            method=method or ("GET" if data is None else "POST"),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"null")

    def stats(self) -> dict[str, Any]:
        return self.admin("stats")

    def set_config(self, **changes: Any) -> Any:
        return self.admin("config", changes)


@contextlib.contextmanager
def emulator_process(*args: str, env: dict[str, str] | None = None) -> Iterator[EmulatorProcess]:
    """Start ``python -m lotimage_emulator --port 0 ARGS``; yield once it listens."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lotimage_emulator",
            "--port",
            "0",
            "--log-level",
            "WARNING",
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        # SIGTERM if this process dies without reaching the ``finally`` below (e.g. killed).
        preexec_fn=pdeathsig_preexec,
        env={**os.environ, **(env or {})},
    )
    try:
        url = None
        deadline = time.monotonic() + 30
        assert proc.stdout is not None
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                raise RuntimeError("the emulator exited before it listened")
            if match := re.search(r"listening on (http://\S+)", line):
                url = match.group(1)
        if url is None:
            raise RuntimeError("the emulator did not start within 30 s")
        yield EmulatorProcess(proc, url)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
