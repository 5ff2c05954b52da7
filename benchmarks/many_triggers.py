"""A thousand TaskProgressTriggers waiting at once in one event loop, against one key at 3 calls/s.

The tasks are created first with the emulator's limit lifted (creating them is not what is
measured), then the limit is put back to the key's real 3 calls/s and every trigger waits in the
same event loop, as they would in one triggerer. Reported: wall time, calls per second, 429
answers, memory per waiting trigger (tracemalloc, while all are waiting) and CPU seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import requests

from benchmarks.emulator_process import EmulatorProcess, emulator_process

KEY = "bench-key-0123456789"
RATE = 3.0


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _wait_all(task_ids: list[str], poll_interval: float) -> tuple[list[dict[str, Any]], float]:
    from airflow_provider_lotimage.client.async_transport import shared_sessions
    from airflow_provider_lotimage.triggers.task_progress import TaskProgressTrigger

    async def one(task_id: str) -> dict[str, Any]:
        trigger = TaskProgressTrigger(task_id, poll_interval=poll_interval, stall_timeout=None)
        async for event in trigger.run():
            return event.payload
        raise AssertionError("the trigger ended without an event")

    opened_before, entered_before = shared_sessions.opened, shared_sessions.entered
    tracemalloc.start()
    baseline = tracemalloc.get_traced_memory()[0]
    running = [asyncio.ensure_future(one(t)) for t in task_ids]
    # Measure once every trigger has started and waits (for its slot or its task), or after 120 s.
    deadline = time.monotonic() + 120
    while shared_sessions.entered - entered_before < len(task_ids) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    waiting = shared_sessions.users()
    waiting_bytes = tracemalloc.get_traced_memory()[0] - baseline
    tracemalloc.stop()
    events = await asyncio.gather(*running)
    assert shared_sessions.opened - opened_before == 1, "the triggers should share one HTTP session"
    return events, waiting_bytes / max(1, waiting)


@contextlib.contextmanager
def trigger_emulator(*, max_running: int, time_scale: float) -> Iterator[EmulatorProcess]:
    """An emulator for many triggers in this process, ``lotimage_default`` pointing at it.

    No rate limit yet, so the tasks are created at once (set it afterwards); small grids; the
    process's own limiter, so the measure is of the triggers, not of a shared state file.
    """
    with emulator_process(
        "--rate-limit",
        "0",
        "--max-running",
        str(max_running),
        "--time-scale",
        str(time_scale),
        "--grid-size",
        "64",
        env={"LOTIMAGE_EMULATOR_KEYS": KEY},
    ) as emulator:
        os.environ["AIRFLOW_CONN_LOTIMAGE_DEFAULT"] = json.dumps(
            {
                "conn_type": "lotimage",
                "host": emulator.url,
                "password": KEY,
                "extra": {"rate_limit_scope": "process"},
            }
        )
        yield emulator


def create_tasks(emulator: EmulatorProcess, n: int) -> list[str]:
    """Submit ``n`` prompts straight to the emulator and return their taskIds."""
    with requests.Session() as session:
        return [
            session.post(
                f"{emulator.url}/midjourney/v1/imagine",
                json={"prompt": f"picture {i}"},
                headers={"Authorization": f"Bearer {KEY}"},
                timeout=10,
            ).json()["taskId"]
            for i in range(n)
        ]


def run(n: int = 1000, *, time_scale: float = 0.1, poll_interval: float = 5.0) -> dict[str, Any]:
    """Run the microbenchmark and return its figures."""
    with trigger_emulator(max_running=n, time_scale=time_scale) as emulator:
        task_ids = create_tasks(emulator, n)
        emulator.set_config(rate_limit=RATE)
        before = emulator.stats()
        cpu0, t0 = _cpu_seconds(), time.monotonic()
        events, bytes_per_trigger = asyncio.run(_wait_all(task_ids, poll_interval))
        wall = time.monotonic() - t0
        cpu = _cpu_seconds() - cpu0
        after = emulator.stats()
    calls = after["requests"]["progress"] - before["requests"]["progress"]
    return {
        "triggers": n,
        "succeeded": sum(1 for e in events if e["status"] == "success"),
        "wall_seconds": round(wall, 2),
        "progress_calls": calls,
        "calls_per_second": round(calls / wall, 3),
        "key_rate_limit": RATE,
        "answers_429": after["rate_limited"] - before["rate_limited"],
        "bytes_per_waiting_trigger": round(bytes_per_trigger),
        "cpu_seconds": round(cpu, 2),
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
