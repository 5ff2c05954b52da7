"""What 1,000 waiting TaskProgressTriggers cost a triggerer: adaptive polling against fixed.

Each mode runs in a fresh interpreter (so neither inherits the other's imports, caches or
garbage), one after the other, each against a fresh emulator at the key's real limits (3 calls/s,
3 tasks running, real durations), so 997 of the 1,000 tasks sit queued at 0 % and the rest
render: what a triggerer holds when one key has a big batch in flight. The tasks
are created first with the rate limit lifted (creating them is not measured), then the limit is
put back and every trigger waits in one event loop, as in one triggerer.

Measured over a fixed window instead of until every trigger ends: the figures are rates (CPU
seconds per 1,000 reads, bytes per trigger), which a minute of 1,000 triggers waiting gives as
well as the hour the key would take to render them all. Memory per trigger is tracemalloc's
growth from before the triggers start until each has started its first read, divided by the
triggers; tracemalloc is then stopped so that it does not weigh on the CPU figure. One trigger
runs first, unmeasured, so that what the first read imports counts in neither mode.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from benchmarks.emulator_process import EmulatorProcess
from benchmarks.many_triggers import _cpu_seconds, create_tasks, trigger_emulator
from benchmarks.pipelines import MAX_RUNNING, RATE_LIMIT, REPO

#: (mode name, ``adaptive_polling``), in the order they run.
MODES: tuple[tuple[str, bool], ...] = (("adaptive", True), ("fixed", False))
METHOD = (
    "fixed window, each mode in a fresh interpreter: once every trigger has started its first read "
    "(memory per trigger sampled then, by tracemalloc), the process's CPU seconds and the emulator's "
    "counts over window_seconds; then the triggers are cancelled, not run to the end. The key's 3 "
    "calls/s bound the reads in both modes; provider logs at WARNING"
)

Log = Callable[[str], None]
#: A line per trigger when its progress first shows would bury the benchmark's own output.
QUIET = {"AIRFLOW__LOGGING__NAMESPACE_LEVELS": "airflow_provider_lotimage=WARNING"}


@dataclass(frozen=True)
class ProfileSettings:
    """The profile's knobs; both modes run with the same values."""

    triggers: int = 1000
    window_seconds: float = 60.0
    poll_interval: float = 5.0
    #: Real durations (an imagine 45 s): with 3 running, few triggers end within the window.
    time_scale: float = 1.0
    rate_limit: float = RATE_LIMIT
    max_running: int = MAX_RUNNING
    #: Longest wait for every trigger to start its first read before memory is sampled anyway.
    start_timeout: float = 60.0


def _accepted() -> set[str]:
    from airflow_provider_lotimage.triggers.task_progress import TaskProgressTrigger

    return set(inspect.signature(TaskProgressTrigger).parameters)


def trigger_options(adaptive: bool, accepted: set[str]) -> dict[str, Any]:
    """The mode's keyword arguments, as an operator defers with them, those the trigger takes.

    ``kind`` lets the adaptive schedule predict a task's end, as it does behind a real operator.
    """
    wanted = {"kind": "imagine", "adaptive_polling": adaptive}
    return {name: value for name, value in wanted.items() if name in accepted}


def _trigger(task_id: str, settings: ProfileSettings, options: dict[str, Any]) -> Any:
    from airflow_provider_lotimage.triggers.task_progress import TaskProgressTrigger

    return TaskProgressTrigger(task_id, poll_interval=settings.poll_interval, stall_timeout=None, **options)


async def _wait(trigger: Any) -> Any:
    async for event in trigger.run():
        return event.payload
    return None


async def _warm_up(
    emulator: EmulatorProcess, task_id: str, settings: ProfileSettings, options: dict[str, Any]
) -> None:
    """Run one trigger until the emulator has counted its first read, then drop it."""
    before = (await asyncio.to_thread(emulator.stats))["requests"].get("progress", 0)
    warm = asyncio.ensure_future(_wait(_trigger(task_id, settings, options)))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not warm.done():
        if (await asyncio.to_thread(emulator.stats))["requests"].get("progress", 0) > before:
            break
        await asyncio.sleep(0.2)
    warm.cancel()
    await asyncio.gather(warm, return_exceptions=True)


Tasks = list["asyncio.Task[Any]"]


async def _start(
    task_ids: list[str], settings: ProfileSettings, options: dict[str, Any]
) -> tuple[Tasks, dict[str, Any]]:
    """Start a trigger per task under tracemalloc; return them once each has begun its first read."""
    from airflow_provider_lotimage.client.async_transport import shared_sessions

    tracemalloc.start()
    start_bytes, entered = tracemalloc.get_traced_memory()[0], shared_sessions.entered
    running = [asyncio.ensure_future(_wait(_trigger(t, settings, options))) for t in task_ids]
    deadline = time.monotonic() + settings.start_timeout
    while shared_sessions.entered - entered < len(running) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    grown = tracemalloc.get_traced_memory()[0] - start_bytes
    tracemalloc.stop()
    return running, {
        "triggers": len(running),
        "triggers_started_before_memory_sample": min(shared_sessions.entered - entered, len(running)),
        "bytes_per_trigger": round(grown / len(running)),
    }


async def _window(emulator: EmulatorProcess, running: Tasks, seconds: float) -> dict[str, Any]:
    """CPU time of this process and the emulator's counts over ``seconds`` of the triggers waiting."""
    before = await asyncio.to_thread(emulator.stats)
    cpu, wall = _cpu_seconds(), time.monotonic()
    await asyncio.sleep(seconds)
    cpu, wall = _cpu_seconds() - cpu, time.monotonic() - wall
    after = await asyncio.to_thread(emulator.stats)
    ended = [task for task in running if task.done()]
    reads = after["requests"]["progress"] - before["requests"]["progress"]
    return {
        "window_seconds": round(wall, 2),
        "progress_reads": reads,
        "reads_per_second": round(reads / wall, 3),
        "answers_429": after["rate_limited"] - before["rate_limited"],
        "cpu_seconds": round(cpu, 3),
        "cpu_seconds_per_1000_reads": round(cpu / reads * 1000, 3) if reads else None,
        "cpu_share_of_one_core": round(cpu / wall, 4),
        "triggers_ended_in_window": len(ended),
        "trigger_errors": sum(1 for task in ended if task.exception() is not None),
    }


async def _measure(
    emulator: EmulatorProcess, task_ids: list[str], settings: ProfileSettings, options: dict[str, Any]
) -> dict[str, Any]:
    await _warm_up(emulator, task_ids[0], settings, options)
    running, memory = await _start(task_ids[1:], settings, options)
    figures = await _window(emulator, running, settings.window_seconds)
    for task in running:
        task.cancel()
    await asyncio.gather(*running, return_exceptions=True)
    return memory | figures


def run_mode(settings: ProfileSettings, options: dict[str, Any]) -> dict[str, Any]:
    """One mode (the trigger's ``options``) in a fresh interpreter: :func:`measure_mode` there."""
    request = json.dumps({"settings": asdict(settings), "options": options})
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.trigger_profile", request],
        cwd=REPO,
        env={**os.environ, **QUIET},
        stdout=subprocess.PIPE,
        text=True,
        check=True,
        timeout=settings.start_timeout + settings.window_seconds + 600,
    )
    return {**options, **json.loads(done.stdout.strip().splitlines()[-1])}


def measure_mode(settings: ProfileSettings, options: dict[str, Any]) -> dict[str, Any]:
    """A fresh emulator, the tasks, then the measured window, in this process."""
    with trigger_emulator(max_running=settings.max_running, time_scale=settings.time_scale) as emulator:
        task_ids = create_tasks(emulator, settings.triggers + 1)  # one more for the warm-up
        emulator.set_config(rate_limit=settings.rate_limit)
        return asyncio.run(_measure(emulator, task_ids, settings, options))


def comparison(modes: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    """Adaptive over fixed for the two figures the profile is for (below 1: adaptive is cheaper)."""

    def ratio(key: str) -> float | None:
        adaptive, fixed = modes.get("adaptive", {}).get(key), modes.get("fixed", {}).get(key)
        return round(adaptive / fixed, 3) if adaptive is not None and fixed else None

    return {key: ratio(key) for key in ("cpu_seconds_per_1000_reads", "bytes_per_trigger")}


def run(settings: ProfileSettings, log: Log = print) -> dict[str, Any]:
    """Both modes (fixed only if the trigger has no ``adaptive_polling`` yet); the profile's figures."""
    accepted = _accepted()
    available = "adaptive_polling" in accepted
    modes: dict[str, dict[str, Any]] = {}
    for name, adaptive in MODES:
        if adaptive and not available:
            modes[name] = {"skipped": "this checkout's TaskProgressTrigger has no adaptive_polling"}
            continue
        log(f"trigger profile: {settings.triggers} triggers, {name} polling, {settings.window_seconds:g} s")
        modes[name] = run_mode(settings, trigger_options(adaptive, accepted))
        log(f"trigger profile: {name}: {json.dumps(modes[name])}")
    return {
        "settings": asdict(settings),
        "method": METHOD,
        "adaptive_polling_available": available,
        "modes": modes,
        "adaptive_over_fixed": comparison(modes),
    }


if __name__ == "__main__":
    asked = json.loads(sys.argv[1])
    print(json.dumps(measure_mode(ProfileSettings(**asked["settings"]), asked["options"])))
