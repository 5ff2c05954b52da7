"""What the distributed scenarios share: the LotImage connection, emulator counters, task logs."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lotimage_emulator import Emulator

from airflow_harness import AirflowDeployment

API_KEY = "lotimage-distributed-key-0123456789"
CONN_ID = "lotimage_default"
#: The key's rate at the emulator and in the provider (calls a second).
RATE = 3.0
#: Seconds between progress reads: with the pool's 6 LotImage tasks in flight, 2 reads a second.
POLL_INTERVAL = 3.0
POOL = "lotimage"
POOL_SLOTS = 6
BATCH_DAG = "example_lotimage_batch"
DEFERRED_DAG = "distributed_imagine_deferred"
IN_WORKER_DAG = "distributed_imagine_in_worker"
UPSCALES = 4


def set_lotimage_connection(
    af: AirflowDeployment, url: str, *, scope: str, create: bool = False, webhook_base_url: str | None = None
) -> None:
    """Create (or overwrite) the LotImage connection with rate scope ``scope`` through the REST API.

    Scope ``redis`` names its Redis connection explicitly, although ``redis_default`` is the
    default: the scenarios are about that connection. ``webhook_base_url`` turns webhook
    completion on.
    """
    extra: dict[str, Any] = {"rate_limit": RATE, "rate_limit_scope": scope}
    if webhook_base_url is not None:
        extra["webhook_base_url"] = webhook_base_url
    if scope == "redis":
        extra["rate_limit_redis_conn_id"] = "redis_default"
    body = {
        "connection_id": CONN_ID,
        "conn_type": "lotimage",
        "host": url,
        "password": API_KEY,
        "extra": json.dumps(extra),
    }
    if create:
        af.api("POST", "connections", body, ok=(200, 201))
    else:
        af.api("PATCH", f"connections/{CONN_ID}", body)


def make_prompts(tag: str, n: int) -> list[str]:
    """``n`` distinct prompts, marked with ``tag`` so no scenario's pictures look stored already."""
    subjects = [
        "an owl",
        "a lighthouse",
        "a fox",
        "a robot",
        "a locomotive",
        "a koi pond",
        "a library",
        "a balloon",
    ]
    return [f"{subjects[i % len(subjects)]}, study {i + 1} ({tag})" for i in range(n)]


@dataclass
class Counters:
    """The emulator's counters a scenario asserts on, read after the run."""

    imagines: int
    buttons: int
    rate_limited: int
    imagine_requests: int
    button_requests: int

    @classmethod
    def of(cls, emulator: Emulator) -> Counters:
        stats = emulator.stats()
        return cls(
            imagines=stats["submissions"]["imagine"],
            buttons=stats["submissions"]["button"],
            rate_limited=stats["rate_limited"],
            imagine_requests=stats["requests"]["imagine"],
            button_requests=stats["requests"]["button"],
        )


def paid_prompts(emulator: Emulator) -> list[str]:
    """The prompt of every imagine task the emulator created (a duplicate shows up twice)."""
    return sorted(task["prompt"] for task in emulator.tasks() if task["kind"] == "imagine")


def lotimage_hosts(af: AirflowDeployment) -> int:
    """Machines that call LotImage: the Celery workers (submissions) and triggerers (progress reads)."""
    return sum(1 for spec in af.specs.values() if spec.kind in ("celery-worker", "triggerer"))


def run_triggers(af: AirflowDeployment, dag_id: str, run_id: str) -> dict[int, Any]:
    """Trigger id -> triggerer job id (``None``: unassigned) of the run's deferred task instances."""
    ids = {ti.trigger_id for ti in af.task_instances(dag_id, run_id) if ti.trigger_id is not None}
    return {row["id"]: row["triggerer_id"] for row in af.triggers() if row["id"] in ids}


def triggerer_hosts(af: AirflowDeployment) -> dict[int, str]:
    """Triggerer job id -> the machine (= service name) it runs on."""
    return {row["id"]: row["hostname"] for row in af.jobs("TriggererJob")}


def deferred_and_assigned(
    af: AirflowDeployment, dag_id: str, run_id: str, count: int
) -> dict[int, Any] | None:
    """The run's triggers once ``count`` ``imagine`` instances are deferred, each held by a triggerer."""
    states = af.task_states(dag_id, run_id)
    deferred = [key for key, state in states.items() if key.startswith("imagine[") and state == "deferred"]
    triggers = run_triggers(af, dag_id, run_id)
    if len(deferred) == count and len(triggers) == count and None not in triggers.values():
        return triggers
    return None


def wait_until(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.25) -> Any:
    """Poll ``condition`` until it returns something truthy; return it. ``what`` names it on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not after {timeout:.0f}s")
        time.sleep(interval)


def start_run(af: AirflowDeployment, dag_id: str, conf: dict[str, Any]) -> str:
    """Wait for the DAG to be parsed, unpause it and trigger a run; return the run id."""
    af.wait_for_dag(dag_id, timeout=120)
    af.unpause(dag_id)
    return af.trigger(dag_id, conf)
