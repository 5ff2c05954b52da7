"""The parent's side of the cross-process tests: start workers, let them go together, read results.

Each worker (:mod:`tests.ratelimit.worker`) gets a ``TMPDIR`` of its own, so the ``host`` scope's
lock file is *not* shared between them: whatever budget they share, they share through Redis.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]


def max_in_window(stamps: list[float], window: float) -> int:
    """The most timestamps found in any ``window`` seconds (windows starting at a timestamp)."""
    stamps = sorted(stamps)
    return max(sum(1 for s in stamps if t <= s < t + window) for t in stamps)


class Worker:
    """One worker process and the lines it printed, read by a thread (so reads can time out)."""

    def __init__(self, name: str, popen: subprocess.Popen[str], stderr_path: Path) -> None:
        self.name = name
        self.popen = popen
        self.stderr_path = stderr_path
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def expect(self, tag: str, timeout: float) -> str:
        """Wait for the worker's next ``@@<tag>`` line and return what follows the tag."""
        while True:
            try:
                line = self._lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(
                    f"worker {self.name}: no @@{tag} within {timeout} s{self._tail()}"
                ) from None
            if line is None:
                raise AssertionError(f"worker {self.name} exited before @@{tag}{self._tail()}")
            if line.startswith(f"@@{tag}"):
                return line[len(tag) + 2 :].strip()

    def go(self, **order: Any) -> None:
        """Send the worker its next order (see :mod:`tests.ratelimit.worker`)."""
        assert self.popen.stdin is not None
        self.popen.stdin.write(json.dumps(order) + "\n")
        self.popen.stdin.flush()

    def result(self, timeout: float = 30) -> dict[str, Any]:
        return json.loads(self.expect("result", timeout))

    def run(self, timeout: float = 30, **order: Any) -> dict[str, Any]:
        """Give one order and wait for its result."""
        self.go(**order)
        return self.result(timeout)

    def _tail(self) -> str:
        try:
            return "\n--- stderr ---\n" + self.stderr_path.read_text()[-3000:]
        except OSError:
            return ""


class Workers:
    """Starts workers under ``folder``; every one has its own ``TMPDIR`` there."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.started: list[Worker] = []

    def start(self, name: str, job: str, **spec: Any) -> Worker:
        tmpdir = self.folder / name / "tmp"
        tmpdir.mkdir(parents=True)
        stderr_path = self.folder / name / "stderr.log"
        env = {**os.environ, "TMPDIR": str(tmpdir), "PYTHONPATH": str(REPO_ROOT)}
        with open(stderr_path, "w") as stderr:  # the child keeps its own descriptor
            popen = subprocess.Popen(
                [sys.executable, "-m", "tests.ratelimit.worker", job, json.dumps(spec)],
                cwd=REPO_ROOT,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
        worker = Worker(name, popen, stderr_path)
        self.started.append(worker)
        return worker

    def start_ready(self, names: list[str], job: str, **spec: Any) -> list[Worker]:
        """Start a worker of ``job`` per name, and wait until every one is ready for orders."""
        started = [self.start(name, job, **spec) for name in names]
        for worker in started:
            worker.expect("ready", timeout=90)
        return started

    @staticmethod
    def all_run(workers: list[Worker], timeout: float = 30, **order: Any) -> list[dict[str, Any]]:
        """Give every worker the same order at once; their results, in order."""
        for worker in workers:
            worker.go(**order)
        return [worker.result(timeout) for worker in workers]

    def close(self) -> None:
        for worker in self.started:
            if worker.popen.poll() is None:
                worker.popen.kill()
            worker.popen.wait(10)
            for stream in (worker.popen.stdin, worker.popen.stdout):
                if stream is not None:
                    stream.close()
