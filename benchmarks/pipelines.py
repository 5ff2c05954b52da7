"""The provider's batch DAG and the HTTP-provider baseline, each on a real local deployment.

Each DAG gets a fresh emulator process at the key's real limits (3 calls/s, 3 tasks running at
once) with durations scaled by ``time_scale``, and a fresh deployment (api-server, scheduler with
LocalExecutor, dag-processor, triggerer on SQLite; ``airflow_harness``), so
neither run inherits the other's counters, queue or triggerer memory. Both take the same prompts,
pool, poll interval and worker parallelism.

What is reported comes from outside the DAGs: calls, 429s, tasks created and the submit/picture
timeline from the emulator; time in ``running`` from the metadata DB's audit log; triggerer
memory from sampling its process tree.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from airflow_harness import AirflowDeployment
from airflow_harness.config import api_url
from airflow_harness.processes import free_port
from airflow_harness.redis_server import RedisServer, redis_connection
from airflow_provider_lotimage.client.options import WaitOptions
from benchmarks.emulator_process import EmulatorProcess, emulator_process

REPO = Path(__file__).resolve().parent.parent
PROVIDER_DAG_FILE = REPO / "example_dags" / "example_lotimage_batch.py"
BASELINE_DAG_FILE = Path(__file__).resolve().parent / "dags" / "baseline_http_batch.py"
DAG_IDS = {
    "provider": "example_lotimage_batch",
    "provider-webhooks": "example_lotimage_batch",
    "baseline": "baseline_http_batch",
}
KEY = "bench-key-0123456789"
POOL = "lotimage"

#: The key's limits the emulator enforces, and the unscaled durations it renders with.
RATE_LIMIT = 3.0
MAX_RUNNING = 3
IMAGINE_SECONDS = 45.0
UPSCALE_SECONDS = 10.0
UPSCALES_PER_PROMPT = 4


@dataclass(frozen=True)
class PipelineSettings:
    """One comparison's knobs; both DAGs run with the same values."""

    prompts: int = 24
    #: Emulated durations are the real ones times this (0.5: an imagine 22.5 s, an upscale 5 s).
    time_scale: float = 0.5
    #: The waits' ``poll_interval``: the operators' default scaled like the durations
    #: (:func:`scaled_poll_interval`), so the adaptive schedule's bounds keep their share of a task.
    poll_interval: float = 5.0
    #: Slots of the ``lotimage`` pool (deferred tasks count): LotImage tasks in flight at once.
    pool_slots: int = 6
    #: LocalExecutor worker processes.
    parallelism: int = 8
    grid_size: int = 512
    run_timeout: float = 3600.0


def scaled_poll_interval(time_scale: float) -> float:
    """The ``poll_interval`` a run at ``time_scale`` waits with: the operators' default times the scale.

    The emulator compresses every duration by ``time_scale``; an unscaled ``poll_interval`` would
    let the benchmark's waits read more often at 0.5 than users' at the service's real speed, or
    (fixed at 0.5's value) twice as often as users' at 1.0, and judge neither as users run it.
    """
    return WaitOptions().poll_interval * time_scale


def floor_seconds(settings: PipelineSettings) -> dict[str, float]:
    """The least wall time the API's limits allow for the batch, whatever the client does.

    Three bounds, the largest wins: the render work divided among the key's running slots; one
    grid and then one of its upscales, back to back; and the calls at least needed (one submit and
    one progress read per task) at the key's rate.
    """
    n, scale = settings.prompts, settings.time_scale
    tasks = n * (1 + UPSCALES_PER_PROMPT)
    render = n * (IMAGINE_SECONDS + UPSCALES_PER_PROMPT * UPSCALE_SECONDS) * scale / MAX_RUNNING
    chain = (IMAGINE_SECONDS + UPSCALE_SECONDS) * scale
    calls = 2 * tasks / RATE_LIMIT
    return {
        "render_seconds": round(render, 2),
        "chain_seconds": round(chain, 2),
        "calls_seconds": round(calls, 2),
        "floor_seconds": round(max(render, chain, calls), 2),
    }


def read_timing(tasks: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """By kind: progress reads per task, and how late the first read saw a task's end (mean, max).

    The lateness is what polling adds to the wall time; the reads are what it costs.
    """
    timing: dict[str, dict[str, float]] = {}
    for kind in sorted({t["kind"] for t in tasks}):
        rows = [t["timing"] for t in tasks if t["kind"] == kind]
        lags = [r["endSeenAfterSeconds"] for r in rows if r["endSeenAfterSeconds"] is not None]
        timing[kind] = {
            "reads_per_task": round(sum(len(r["readsAt"]) for r in rows) / len(rows), 2),
            "end_seen_after_mean": round(sum(lags) / len(lags), 2) if lags else 0.0,
            "end_seen_after_max": round(max(lags), 2) if lags else 0.0,
        }
    return timing


def make_prompts(n: int) -> list[str]:
    """``n`` distinct prompts, cycling the example batch's subjects."""
    subjects = [
        line.strip()
        for line in (REPO / "example_dags" / "prompts" / "batch_prompts.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    return [f"{subjects[i % len(subjects)]}, take {i + 1}" for i in range(n)]


def duplicates(tasks: list[dict[str, Any]]) -> dict[str, int]:
    """Paid tasks created more than once: the same prompt imagined, the same button pressed."""
    imagines = Counter(t["prompt"] for t in tasks if t["kind"] == "imagine")
    buttons = Counter((t["parentId"], t["button"]) for t in tasks if t["parentId"])
    return {
        "imagine": sum(count - 1 for count in imagines.values()),
        "button": sum(count - 1 for count in buttons.values()),
    }


def _dags_folder(kind: str, root: Path) -> Path:
    folder = root / "dags"
    folder.mkdir()
    if kind.startswith("provider"):
        shutil.copy(PROVIDER_DAG_FILE, folder)
        shutil.copytree(PROVIDER_DAG_FILE.parent / "prompts", folder / "prompts")
    else:
        shutil.copy(BASELINE_DAG_FILE, folder)
    return folder


def _environment(
    emulator: EmulatorProcess, settings: PipelineSettings, output: Path, webhooks: Webhooks | None = None
) -> dict[str, str]:
    extra = {} if webhooks is None else {"webhook_base_url": api_url(webhooks.api_port)}
    return {
        "AIRFLOW_CONN_LOTIMAGE_DEFAULT": json.dumps(
            {"conn_type": "lotimage", "host": emulator.url, "password": KEY, "extra": extra}
        ),
        **({} if webhooks is None else {"AIRFLOW_CONN_REDIS_DEFAULT": redis_connection(webhooks.redis.url)}),
        # The baseline's connection: HttpHook sends the extra's fields as headers.
        "AIRFLOW_CONN_LOTIMAGE_HTTP": json.dumps(
            {"conn_type": "http", "host": emulator.url, "extra": {"Authorization": f"Bearer {KEY}"}}
        ),
        "LOTIMAGE_OUTPUT_DIR": str(output),
        "LOTIMAGE_POLL_INTERVAL": str(settings.poll_interval),
        "LOTIMAGE_POOL": POOL,
        # A worker notices that its task process deferred or ended within this many seconds
        # (default 5): that long, the slot stays busy, and a trigger firing sooner races the
        # stale "deferred" report. Both DAGs get the same setting.
        "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
    }


@dataclass
class Webhooks:
    """Webhook completion for one run: the api-server's port (fixed before it starts) and a Redis."""

    api_port: int
    redis: RedisServer


def slot_seconds(af: AirflowDeployment, dag_id: str, run_id: str) -> dict[str, Any]:
    """Seconds task instances spent ``running`` (audit log; deferral excluded), and per worker.

    Also the supervisors' own accounting (``Workload finished``): the scheduler's log under
    LocalExecutor, the Celery workers' logs under CeleryExecutor (the harness picks them).
    """
    running = af.running_intervals(dag_id, run_id)
    by_task: dict[str, float] = defaultdict(float)
    for key, intervals in running.items():
        by_task[key.split("[", 1)[0]] += sum((end - start).total_seconds() for start, end in intervals)
    workloads = af.run_workloads(dag_id, run_id)
    return {
        "worker_slot_seconds": round(sum(by_task.values()), 1),
        "worker_slot_seconds_by_task": {task: round(s, 1) for task, s in sorted(by_task.items())},
        "worker_process_seconds": round(sum(w.duration for loads in workloads.values() for w in loads), 1),
        "task_executions": sum(len(loads) for loads in workloads.values()),
    }


def run_pipeline(kind: str, settings: PipelineSettings, log: Any = print) -> dict[str, Any]:
    """Run one DAG (``provider`` or ``baseline``) over ``settings.prompts`` prompts; return its figures."""
    dag_id = DAG_IDS[kind]
    prompts = make_prompts(settings.prompts)
    conf: dict[str, Any] = {"prompts": prompts}
    if kind.startswith("provider"):
        conf["skip_stored"] = False
    root = Path(tempfile.mkdtemp(prefix=f"lotimage-bench-{kind}-"))
    output = root / "output"
    webhooks = None
    if kind == "provider-webhooks":
        webhooks = Webhooks(free_port(), RedisServer(root / "redis", "redis").start())
    try:
        with emulator_process(
            "--rate-limit",
            str(RATE_LIMIT),
            "--max-running",
            str(MAX_RUNNING),
            "--time-scale",
            str(settings.time_scale),
            "--grid-size",
            str(settings.grid_size),
            env={"LOTIMAGE_EMULATOR_KEYS": KEY},
        ) as emulator:
            env = _environment(emulator, settings, output, webhooks)
            deployment = AirflowDeployment(
                _dags_folder(kind, root),
                env=env,
                parallelism=settings.parallelism,
                api_port=None if webhooks is None else webhooks.api_port,
            )
            with deployment as af:
                af.cli("pools", "set", POOL, str(settings.pool_slots), "LotImage calls", "--include-deferred")
                af.wait_for_dag(dag_id)
                af.unpause(dag_id)
                log(f"{kind}: deployment up in {af.timings.get('start', 0):.0f} s; running {dag_id}")
                with af.memory_sampler("triggerer", interval=0.5) as triggerer_memory:
                    run_id = af.trigger(dag_id, conf)
                    result = af.wait_for_run(dag_id, run_id, timeout=settings.run_timeout, poll_interval=2.0)
                slots = slot_seconds(af, dag_id, run_id)
                tries = Counter(ti.task_id for ti in af.task_instances(dag_id, run_id) if ti.try_number > 1)
            stats = emulator.stats()
            tasks = emulator.admin("tasks")["tasks"]
        timeline = stats["timeline"]
        wall = timeline["last_image"] - timeline["first_submit"] if "last_image" in timeline else None
        floor = floor_seconds(settings)
        figures: dict[str, Any] = {
            "dag_id": dag_id,
            "state": result.state,
            "run_seconds": round(result.elapsed, 1),
            "wall_seconds": None if wall is None else round(wall, 1),
            **floor,
            "wall_over_floor": None if wall is None else round(wall / floor["floor_seconds"], 3),
            "calls": {**stats["requests"], "images": stats["events"].get("images_served", 0)},
            "answers_429": stats["rate_limited"],
            "paid_tasks": stats["submissions"],
            "duplicate_submissions": duplicates(tasks),
            "read_timing": read_timing(tasks),
            "pictures_stored": len(list(output.rglob("*.png"))),
            **slots,
            "tasks_retried": dict(tries),
            "triggerer_peak_rss_bytes": triggerer_memory.peak,
        }
        if webhooks is not None:
            figures["webhook_deliveries"] = stats.get("webhooks", {})
        log(f"{kind}: {json.dumps({k: v for k, v in figures.items() if 'by_task' not in k})}")
        return figures
    finally:
        if webhooks is not None:
            webhooks.redis.stop()
        shutil.rmtree(root, ignore_errors=True)


def compare(
    settings: PipelineSettings, log: Any = print, kinds: tuple[str, ...] = ("provider", "baseline")
) -> dict[str, Any]:
    """The DAGs of ``kinds``, one after the other, with the same settings.

    ``provider-webhooks`` is the provider's DAG with webhook completion: a private Redis, and the
    connection's ``webhook_base_url`` pointing at the deployment's api-server.
    """
    return {"settings": asdict(settings), **{kind: run_pipeline(kind, settings, log) for kind in kinds}}
