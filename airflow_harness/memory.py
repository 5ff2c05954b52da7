"""Memory of a service's process tree: current RSS, sampled peaks and per-process high-water marks."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable

import psutil


def total_rss(procs: Iterable[psutil.Process]) -> int:
    """Summed RSS of ``procs`` in bytes; a process that exits while being read counts as 0."""
    total = 0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            total += proc.memory_info().rss
    return total


def read_peak_rss(pid: int) -> int:
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
        total = total_rss(self._processes())
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
