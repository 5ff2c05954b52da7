"""Outages longer than one retry loop, in every way a task waits: it keeps waiting and succeeds.

When every retry of one progress read fails, the read counts as "no progress" and the wait goes
on, bounded only by the stall and overall timeouts; when the service is back, the task succeeds,
with exactly the one paid task it asked for.

**Time is compressed** twentyfold so that 20 outages fit in a minute or two: the retry policy
(:data:`COMPRESSED`: the default's attempts, its back-off times :data:`SCALE`), the key's rate on
both sides (:data:`RATE`) and "a minute" of outage (:data:`OUTAGE`) alike. The outage begins at
the first progress read (the emulator's ``for_seconds`` window, or :class:`RefusingRelay`), so it
hits whatever reads first: a poke, a blocking wait, a deferrable sensor's first poke, a trigger.
Each row proves the outage outlasted a whole retry loop: the emulator counted more failed answers
than one loop has attempts, and the log shows a read given back after all of them.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_lotimage.client import contract as api
from airflow_provider_lotimage.client.retry import RetryPolicy
from airflow_provider_lotimage.hooks import lotimage as lotimage_hook

from .conftest import POKE, assert_paid_calls
from .relay import RefusingRelay

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from lotimage_emulator import Emulator

    from .conftest import Harness

PROMPT = "An owl with cat ears hanging on a tree"
#: Real seconds per second of the service's time in these rows.
SCALE = 1.0 / 20.0
#: The default policy, its back-off compressed: 6 attempts over 0.8-1.6 s instead of 16-31 s.
COMPRESSED = RetryPolicy(
    max_attempts=RetryPolicy().max_attempts,
    base_delay=RetryPolicy().base_delay * SCALE,
    max_delay=RetryPolicy().max_delay * SCALE,
)
#: A minute of outage, compressed: longer than one retry loop (at most 1.6 s of back-off here).
OUTAGE = 60.0 * SCALE
#: ``dag.test()`` sleeps a second before it runs a rescheduled poke again: a pause the service's
#: time does not compress. The reschedule row's outage covers it, with margin for a loaded machine,
#: so the poke after the first spent loop still meets the outage (the row proves the wait went on).
RESCHEDULE_PAUSE = 1.0
#: The key's rate, compressed like the rest, in the connection's limiter and in the emulator.
RATE = api.DEFAULT_RATE_LIMIT_PER_SECOND / SCALE
#: What the log says when a whole read loop failed and the wait went on.
GIVEN_BACK = f"failed {COMPRESSED.max_attempts} times in a row"
NO_PROGRESS = "the wait counts it as no progress and goes on"


@dataclass(frozen=True)
class Kind:
    """A kind of outage, and how its failures show."""

    #: The emulator's fault on ``task/progress`` (``None``: the port refuses connections).
    fault: dict[str, Any] | None
    #: The label the emulator counts its answers under (``None``: nothing reaches it).
    label: str | None
    #: What the client's log quotes of each failed attempt.
    quoted: str


KINDS: dict[str, Kind] = {
    "502s": Kind({"kind": "http_status", "status": 502}, "502", "[status 502]"),
    "503s": Kind({"kind": "http_status", "status": 503}, "503", "[status 503]"),
    "429s-no-retry-after": Kind({"kind": "http_429", "retry_after": None}, "429", "[status 429]"),
    "refused-connections": Kind(None, None, "could not connect to LotImage"),
}
MODES = ("poke", "reschedule", "blocking-wait", "deferrable-first-poke", "trigger")


@pytest.fixture
def compressed_time(monkeypatch: pytest.MonkeyPatch) -> RetryPolicy:
    """Every hook built during the test (worker, trigger) gets :data:`COMPRESSED` by default."""
    monkeypatch.setattr(lotimage_hook, "RetryPolicy", lambda: COMPRESSED)
    return COMPRESSED


@pytest.fixture
def relays() -> Iterator[list[RefusingRelay]]:
    made: list[RefusingRelay] = []
    yield made
    for relay in made:
        relay.close()


class Outage:
    """One outage of the service, from the first progress read on: by the emulator or a relay."""

    def __init__(
        self,
        kind: Kind,
        emulator: Emulator,
        monkeypatch: pytest.MonkeyPatch,
        relays: list[RefusingRelay],
        seconds: float = OUTAGE,
    ) -> None:
        self.kind = kind
        self.seconds = seconds
        self.emulator = emulator
        self.relay: RefusingRelay | None = None
        self.rule: Any = None
        if kind.fault is None:
            self.relay = RefusingRelay(emulator.port, seconds=seconds)
            relays.append(self.relay)
        else:
            params = {key: value for key, value in kind.fault.items() if key != "kind"}
            self.rule = emulator.add_fault(
                kind.fault["kind"], endpoint="progress", for_seconds=seconds, **params
            )
        connect(monkeypatch, emulator.url if self.relay is None else self.relay.url)

    def assert_outlasted_a_retry_loop(self, log: str) -> None:
        """It is over, it failed more reads than one loop makes, and a whole loop was given back."""
        lines = log.splitlines()
        given_back = [line for line in lines if GIVEN_BACK in line and NO_PROGRESS in line]
        assert given_back, "no read loop was spent: the outage was shorter than a retry loop"
        assert all(self.kind.quoted in line for line in given_back), given_back
        if self.relay is None:
            assert self.rule.exhausted, self.rule.to_dict()  # its window is over
            failed = self.emulator.stats()["answers_by_endpoint"]["progress"].get(self.kind.label, 0)
        else:  # nothing reached the emulator: each failed attempt is in the client's log
            assert self.relay.error is None and self.relay.outage_over()
            assert self.relay.outage_ended - self.relay.outage_began >= self.seconds  # type: ignore[operator]
            retried = [line for line in lines if f"LotImage task/progress failed ({self.kind.quoted}" in line]
            failed = len(retried) + len(given_back)  # a loop's last attempt is logged as given back
        assert failed > COMPRESSED.max_attempts, failed


def connect(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    """Point ``lotimage_default`` at ``url``, with the compressed rate."""
    from lotimage_emulator.pytest_plugin import TEST_API_KEY

    conn = {"conn_type": "lotimage", "host": url, "password": TEST_API_KEY, "extra": {"rate_limit": RATE}}
    monkeypatch.setenv("AIRFLOW_CONN_LOTIMAGE_DEFAULT", json.dumps(conn))


def waiting_dag(harness: Harness, mode: str, **wait: Any) -> tuple[Any, str]:
    """An imagine and its wait in ``mode``; returns the DAG and the id of the task that waits."""
    from airflow_provider_lotimage.operators.imagine import ImagineOperator
    from airflow_provider_lotimage.sensors.task_progress import TaskProgressSensor

    with harness.dag() as dag:
        if mode in ("blocking-wait", "trigger"):
            ImagineOperator(
                task_id="imagine",
                prompt=PROMPT,
                wait_for_completion=True,
                deferrable=mode == "trigger",
                poll_interval=POKE,
                **{"timeout": 60, **wait},
            )
            return dag, "imagine"
        submit = ImagineOperator(task_id="imagine", prompt=PROMPT)
        TaskProgressSensor(
            task_id="wait",
            lotimage_task_id=submit.output,
            poke_interval=POKE,
            mode="reschedule" if mode == "reschedule" else "poke",
            deferrable=mode == "deferrable-first-poke",
            **{"timeout": 60, **wait},
        )
    return dag, "wait"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", list(KINDS))
def test_outage_longer_than_a_retry_loop_is_waited_out(
    harness: Harness,
    make_emulator: Callable[..., Emulator],
    monkeypatch: pytest.MonkeyPatch,
    relays: list[RefusingRelay],
    compressed_time: RetryPolicy,
    capfd: pytest.CaptureFixture[str],
    kind: str,
    mode: str,
) -> None:
    """A minute of 502s, 503s, 429s or refused connections during the wait: the task succeeds."""
    emulator = make_emulator(rate_limit=RATE)
    seconds = OUTAGE + 3 * RESCHEDULE_PAUSE if mode == "reschedule" else OUTAGE
    outage = Outage(KINDS[kind], emulator, monkeypatch, relays, seconds)
    dag, waiting = waiting_dag(harness, mode)
    run = harness.run(dag)
    harness.assert_succeeded(run)
    assert harness.xcom(run, waiting)["progress"] == 100
    log = capfd.readouterr().out
    outage.assert_outlasted_a_retry_loop(log)
    if mode == "deferrable-first-poke":  # the poke in the worker was given back, then it deferred
        assert "Could not read LotImage progress (will try again)" in log
    assert_paid_calls(emulator, imagine=1)


# ------------------------------------------------------------------ an outage that never ends
@pytest.fixture
def endless_502s(
    make_emulator: Callable[..., Emulator], monkeypatch: pytest.MonkeyPatch, compressed_time: RetryPolicy
) -> Emulator:
    """An emulator whose every progress read answers 502, for good; the connection points at it."""
    emulator = make_emulator(rate_limit=RATE)
    connect(monkeypatch, emulator.url)
    emulator.add_fault("http_status", status=502, endpoint="progress", count=None)
    return emulator


def test_endless_outage_ends_at_the_stall_timeout(
    harness: Harness, endless_502s: Emulator, capfd: pytest.CaptureFixture[str]
) -> None:
    """Reads given back are "no progress": an outage that never ends is a stall, reported as one."""
    dag, _ = waiting_dag(harness, "poke", stall_timeout=2.0)
    started = time.monotonic()
    run = harness.run(dag)
    elapsed = time.monotonic() - started
    error = harness.assert_failed(run, "wait", "imagine")
    assert "stalled at 0%" in error and "(stall timeout 2 s)" in error
    assert "last error: Bad gateway [status 502]" in error
    assert elapsed < 30  # the sensor's own timeout is 60 s
    assert NO_PROGRESS in capfd.readouterr().out  # it did wait through whole retry loops
    assert_paid_calls(endless_502s, imagine=1)


def test_endless_outage_ends_at_the_overall_timeout(
    harness: Harness, endless_502s: Emulator, capfd: pytest.CaptureFixture[str]
) -> None:
    """No stall timeout: the trigger's overall timeout (the deferrable sensor's ``timeout``) ends it."""
    dag, _ = waiting_dag(harness, "deferrable-first-poke", timeout=3, stall_timeout=None)
    started = time.monotonic()
    run = harness.run(dag)
    elapsed = time.monotonic() - started
    error = harness.assert_failed(run, "wait", "imagine")
    assert "TaskTimeoutError" in repr(harness.error("wait"))
    within = re.search(r"did not finish within ([\d.]+) s \(last progress 0%\)", error)
    assert within is not None and float(within.group(1)) == pytest.approx(3, abs=0.1), error
    assert "last error: Bad gateway [status 502]" in error
    assert elapsed < 30
    assert NO_PROGRESS in capfd.readouterr().out
    assert_paid_calls(endless_502s, imagine=1)
