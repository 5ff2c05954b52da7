"""A :class:`~airflow_provider_lotimage.client.metrics.Metrics` that records, and a real StatsD listener."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Sample:
    """One figure: ``incr``, ``timing`` or ``gauge``, its name, value and tags."""

    kind: str
    name: str
    value: float
    tags: tuple[tuple[str, str], ...]

    def tag(self, key: str) -> str | None:
        return dict(self.tags).get(key)


@dataclass
class RecordingMetrics:
    """Keeps every figure it is given, in order."""

    samples: list[Sample] = field(default_factory=list)

    def _add(self, kind: str, name: str, value: float, tags: Any) -> None:
        self.samples.append(Sample(kind, name, float(value), tuple(sorted(dict(tags or {}).items()))))

    def incr(self, name: str, count: int = 1, *, tags: Any = None) -> None:
        self._add("incr", name, count, tags)

    def timing(self, name: str, seconds: float, *, tags: Any = None) -> None:
        self._add("timing", name, seconds, tags)

    def gauge(self, name: str, value: float, *, tags: Any = None) -> None:
        self._add("gauge", name, value, tags)

    def named(self, name: str) -> list[Sample]:
        return [sample for sample in self.samples if sample.name == name]

    def counts(self, name: str, *by: str) -> Counter[tuple[str | None, ...]]:
        """Return the counter ``name`` summed by the values of the tags ``by``."""
        totals: Counter[tuple[str | None, ...]] = Counter()
        for sample in self.named(name):
            totals[tuple(sample.tag(key) for key in by)] += int(sample.value)
        return totals


@dataclass(frozen=True)
class StatsdLine:
    """One StatsD line with InfluxDB-style tags: ``name,tag=value,...:value|type``."""

    name: str
    tags: dict[str, str]
    value: float
    type: str
    raw: str
    #: The UDP port it came from: the sending process's socket.
    port: int = 0

    @classmethod
    def parse(cls, raw: str, port: int = 0) -> StatsdLine:
        head, _, rest = raw.partition(":")
        value, _, kind = rest.partition("|")
        name, *pairs = head.split(",")
        tags = dict(pair.split("=", 1) for pair in pairs)
        return cls(name, tags, float(value), kind.split("|")[0], raw, port)


class StatsdListener:
    """A UDP socket on loopback that keeps every StatsD line it receives (a thread reads it)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port: int = self.sock.getsockname()[1]
        self.lines: list[StatsdLine] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data, (_, port) = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            for raw in data.decode("utf-8", "replace").splitlines():
                if raw.strip():
                    self.lines.append(StatsdLine.parse(raw.strip(), port))

    def ours(self, prefix: str) -> list[StatsdLine]:
        """Return the lines whose name starts with ``prefix`` (Airflow sends its own too)."""
        return [line for line in list(self.lines) if line.name.startswith(prefix)]

    def settle(self, prefix: str = "", quiet: float = 0.5, timeout: float = 10.0) -> None:
        """Wait until no line starting with ``prefix`` arrived for ``quiet`` seconds.

        UDP has no end of stream; a deployment's own services send their metrics all along.
        """
        deadline = time.monotonic() + timeout
        seen = -1
        while time.monotonic() < deadline and seen != len(self.ours(prefix)):
            seen = len(self.ours(prefix))
            time.sleep(quiet)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


def statsd_env(port: int, prefix: str) -> dict[str, str]:
    """Airflow's ``[metrics]`` for StatsD to ``port`` on loopback, tags in the name (docs/metrics.md)."""
    return {
        "AIRFLOW__METRICS__STATSD_ON": "True",
        "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
        "AIRFLOW__METRICS__STATSD_PORT": str(port),
        "AIRFLOW__METRICS__STATSD_PREFIX": prefix,
        "AIRFLOW__METRICS__STATSD_INFLUXDB_ENABLED": "True",
    }


def counts(lines: list[StatsdLine], name: str, *by: str) -> Counter[tuple[str | None, ...]]:
    """Return the StatsD counter ``name`` summed by the values of the tags ``by``."""
    totals: Counter[tuple[str | None, ...]] = Counter()
    for line in lines:
        if line.name == name and line.type == "c":
            totals[tuple(line.tags.get(key) for key in by)] += int(line.value)
    return totals
