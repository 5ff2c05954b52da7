"""One process of a cross-process rate test: ``python -m tests.ratelimit.worker <job> '<json spec>'``.

It prepares its job first (imports, connection read, limiter built), prints ``@@ready``, then runs
one *order* per JSON line on stdin, printing ``@@result <json>`` for each. Waiting for the parent's
orders lets every worker finish importing Airflow before any of them calls, so workers really run
at the same time, and one set of workers can serve several steps of a test.

Jobs: ``limiter`` (the limiter a LotImage connection with ``spec["extra"]`` gets; orders
``acquire``, ``block`` and ``late``) and ``hook`` (LotImageHook on a connection from the
environment, as a task would; orders submit and read).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import sys
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

Order = dict[str, Any]


def limiter(spec: dict[str, Any]) -> Callable[[Order], Any]:
    from airflow_provider_lotimage.client.settings import read_settings
    from airflow_provider_lotimage.ratelimit.registry import limiter_of

    conn = SimpleNamespace(conn_id="lotimage_default", host=spec["url"], port=None, password=spec["key"])
    rate = limiter_of(read_settings(conn, spec["extra"]))

    def acquire(order: Order) -> Any:
        """Take ``calls`` slots (by ``concurrency`` coroutines when given); the moments they came."""
        if not order.get("concurrency"):
            stamps = []
            for _ in range(order["calls"]):
                rate.acquire()
                stamps.append(time.time())
            return {"stamps": stamps}

        async def one(stamps: list[float], calls: int) -> None:
            for _ in range(calls):
                await rate.acquire_async()
                stamps.append(time.time())

        async def concurrent() -> dict[str, Any]:
            stamps: list[float] = []
            each = order["calls"] // order["concurrency"]
            await asyncio.gather(*(one(stamps, each) for _ in range(order["concurrency"])))
            return {"stamps": stamps}

        return concurrent()

    async def block(order: Order) -> dict[str, Any]:
        """Hold the key back as a 429 does, from the async path (the sync one is the hook's)."""
        before = time.time()  # the hold starts after this, whatever the scheduler does
        await rate.ablock_for(order["seconds"])
        return {"at": before}

    async def late(order: Order) -> dict[str, Any]:
        """Take a slot and report that its call left ``late`` seconds after it (a congested loop)."""
        slot = await rate.acquire_async()
        sent_at = slot + order["late"]
        await rate.asent(slot, sent_at)
        return {"sent_at": sent_at}

    operations = {"acquire": acquire, "block": block, "late": late}
    return lambda order: operations[order["op"]](order)


def hook(spec: dict[str, Any]) -> Callable[[Order], Any]:
    from airflow_provider_lotimage.client.retry import RetryPolicy
    from airflow_provider_lotimage.hooks.lotimage import LotImageHook

    policy = RetryPolicy(max_attempts=8, base_delay=0.2, max_delay=2.0)
    _ = LotImageHook(spec["conn_id"], retry_policy=policy).transport  # imports done, limiter built

    def run(order: Order) -> dict[str, Any]:
        """Submit ``imagine`` prompts, then read their progress ``reads`` times."""
        lotimage = LotImageHook(order.get("conn_id", spec["conn_id"]), retry_policy=policy)
        started = time.time()
        tasks = [lotimage.imagine(f"a lighthouse, take {i}") for i in range(order["imagine"])]
        reads = [lotimage.get_task_progress(tasks[i % len(tasks)]).progress for i in range(order["reads"])]
        return {"tasks": tasks, "reads": reads, "started": started, "ended": time.time()}

    return run


JOBS: dict[str, Callable[[dict[str, Any]], Callable[[Order], Any]]] = {"limiter": limiter, "hook": hook}


def main() -> None:
    job, spec = sys.argv[1], json.loads(sys.argv[2])
    run = JOBS[job](spec)
    print("@@ready", flush=True)
    for line in sys.stdin:
        result = run(json.loads(line))
        if inspect.isawaitable(result):
            result = asyncio.run(result)
        print("@@result", json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
