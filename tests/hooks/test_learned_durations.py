"""Learned durations against the emulator at two speeds: the first read comes near the real end.

Each round presses ``U1``..``U4`` on a finished grid at once and waits for the four upscales with
the hook's blocking wait, as a submitting operator does (``from_submission``). Reads are counted
by the emulator; the lag is the time from an upscale's real end (its submission plus the
emulator's duration) to the end of its wait. The first round reads on the fixed priors (the
first read 11 s after submission); the book then learns the service's speed.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from statistics import mean
from typing import Any

import pytest

from airflow_provider_lotimage.client.durations import Observation, book_for
from airflow_provider_lotimage.client.schedule import KIND_IMAGINE, KIND_UPSCALE
from airflow_provider_lotimage.hooks.lotimage import LotImageHook
from airflow_provider_lotimage.ratelimit.base import key_identity
from airflow_provider_lotimage.triggers.task_progress import TaskProgressTrigger

#: The real service's upscale (the emulator's ``upscale_seconds``) and the default poll interval.
UPSCALE_SECONDS = 10.0
POLL = 10.0
#: A service 5x faster than the prior is found within four rounds (probes: ``client/durations``).
ROUNDS = 6
BUTTONS = ("U1", "U2", "U3", "U4")


def emulator_hook(factory: Callable[..., Any], api_key: str, monkeypatch: pytest.MonkeyPatch, scale: float):
    """An emulator at ``scale`` (grids of 1 s, no queueing) and a hook of a key that has learnt nothing."""
    emulator = factory(time_scale=scale, imagine_seconds=1.0 / scale, max_running=8)
    connection = {"conn_type": "lotimage", "host": emulator.url, "password": api_key}
    monkeypatch.setenv("AIRFLOW_CONN_LOTIMAGE_DEFAULT", json.dumps(connection))
    return emulator, LotImageHook()


def grids(hook: LotImageHook, count: int) -> list[str]:
    parents = [hook.imagine(f"a lantern in the fog, take {n}") for n in range(count)]
    for parent in parents:
        hook.wait_for_task(parent, poll_interval=0.2, timeout=60, kind=KIND_IMAGINE)
    return parents


def upscale_round(hook: LotImageHook, emulator: Any, parent: str, seconds: float) -> tuple[float, float]:
    """Press U1..U4 at once and wait for each: (progress reads per upscale, mean lag after the end)."""
    before = emulator.stats()["requests"]["progress"]

    def upscale(button: str) -> float:
        task_id = hook.press_button(parent, button)
        submitted = time.monotonic()
        hook.wait_for_task(task_id, poll_interval=POLL, timeout=120, kind=KIND_UPSCALE, from_submission=True)
        return time.monotonic() - submitted - seconds

    with ThreadPoolExecutor(len(BUTTONS)) as pool:
        lags = list(pool.map(upscale, BUTTONS))
    return (emulator.stats()["requests"]["progress"] - before) / len(BUTTONS), mean(lags)


@pytest.mark.parametrize("scale", [0.2, 0.5])
def test_after_a_few_tasks_the_first_read_comes_near_the_end_at_any_speed(
    lotimage_emulator_factory: Callable[..., Any],
    lotimage_api_key: str,
    monkeypatch: pytest.MonkeyPatch,
    scale: float,
) -> None:
    emulator, hook = emulator_hook(lotimage_emulator_factory, lotimage_api_key, monkeypatch, scale)
    seconds = UPSCALE_SECONDS * scale
    rounds = [upscale_round(hook, emulator, parent, seconds) for parent in grids(hook, ROUNDS)]
    first_lag = rounds[0][1]
    late = rounds[-2:]
    reads = mean(round_reads for round_reads, _ in late)
    lag = mean(round_lag for _, round_lag in late)
    assert first_lag > seconds * 0.5  # the fixed prior: 11 s, and 6 s for a probe
    assert reads <= 1.3, rounds
    assert lag < first_lag / 2 and lag <= 0.3 * seconds + 0.6, rounds
    learned = hook.durations.expected(KIND_UPSCALE, probe=False)
    assert learned is not None and seconds * 0.8 <= learned <= seconds * 1.3


def test_a_trigger_reads_at_the_learned_end_and_teaches_the_book(
    lotimage_emulator_factory: Callable[..., Any], lotimage_api_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run inline (no hold), as ``dag.test()`` runs it: one read, near the 2 s end, and one lesson."""
    emulator, hook = emulator_hook(lotimage_emulator_factory, lotimage_api_key, monkeypatch, 0.2)
    book = book_for(key_identity(emulator.url, lotimage_api_key))
    for _ in range(12):
        book.record(KIND_UPSCALE, Observation(2.0, measured=True))
    assert book.expected(KIND_UPSCALE) == pytest.approx(2.0 * 0.6, abs=0.01)  # another wait's probe
    [parent] = grids(hook, 1)
    task_id = hook.press_button(parent, "U1")
    started = time.time()
    trigger = TaskProgressTrigger(
        task_id, started_at=started, first_poll_at=0.0, kind=KIND_UPSCALE, from_submission=True
    )
    before = emulator.stats()["requests"]["progress"]

    async def first_event() -> Any:
        return await anext(aiter(trigger.run()))

    event = asyncio.run(first_event())
    took = time.time() - started
    assert event.payload["status"] == "success"
    assert emulator.stats()["requests"]["progress"] - before == 1
    assert 2.0 <= took <= 2.0 * 1.1 * 1.2 + 0.5
    assert len(book.observations(KIND_UPSCALE)) == 13
    assert trigger.serialize()[1]["from_submission"] is True
