"""The provider's batch DAG on the distributed topology: rate scope ``host``, ``redis``, and webhooks.

One deployment (``Topology.distributed()``: PostgreSQL, CeleryExecutor with two workers acting as
two machines, two triggerers, a Redis for Celery and a second Redis for the rate budget) serves
every run. Sharing it is sound because nothing a run leaves behind reaches the next one: each run
gets a fresh emulator process, on a new port, so the key's limiter identity (a digest of base URL
and key) is new too, both the ``host`` scope's state files on each machine and the ``redis``
scope's key in the budget Redis; the LotImage connection lives in the metadata DB and is
rewritten between runs (new URL and scope); the output folder is emptied; and every figure is
read per DAG run or from that run's emulator.

Each emulator enforces the key's real limits (3 calls/s, 3 tasks running) with durations scaled
by ``time_scale``, as in the local benchmark. Four machines call LotImage with the key: the two
workers submit, the two triggerers read progress. Scope ``host`` gives each machine the whole
budget; scope ``redis`` makes them share one.

The third run, ``webhooks``, is scope ``redis`` with webhook completion: the connection's
``webhook_base_url`` is the deployment's api-server, the deliveries are recorded in the budget
Redis, and whichever triggerer holds a task's trigger acts on its delivery. Its figures add the
emulator's webhook tallies and, from the triggers' log files (``attempt=N.log.trigger.<job>.log``),
how many deliveries each triggerer's machine acted on.

Figures, as in :mod:`benchmarks.pipelines`: wall time, calls, 429s and duplicate paid tasks from
the emulator; the floor from :func:`benchmarks.pipelines.floor_seconds`; worker-slot-seconds as
time in ``running`` from the metadata DB's audit log (PostgreSQL here), and the supervisors' own
``Workload finished`` lines, which the Celery workers log (the harness reads the workers' logs
under CeleryExecutor).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from airflow_harness import AirflowDeployment, DeploymentError, Topology
from airflow_harness.redis_server import redis_connection
from airflow_harness.requirements import missing_requirements
from benchmarks.emulator_process import emulator_process
from benchmarks.pipelines import (
    DAG_IDS,
    KEY,
    MAX_RUNNING,
    POOL,
    PROVIDER_DAG_FILE,
    RATE_LIMIT,
    PipelineSettings,
    duplicates,
    floor_seconds,
    make_prompts,
    slot_seconds,
)

DAG_ID = DAG_IDS["provider"]
CONN_ID = "lotimage_default"
REDIS_CONN_ID = "redis_default"
#: The runs, in order: a rate scope each, and scope ``redis`` with webhook completion.
SCOPES: tuple[str, ...] = ("host", "redis", "webhooks")
#: The runs whose targets are judged (the others are reported as they are).
JUDGED = ("redis", "webhooks")
#: Targets of the judged runs (reported, not asserted).
WALL_TARGET = 1.3
#: What a trigger logs when a delivery wakes it (:mod:`airflow_provider_lotimage.webhooks.hints`).
ACTED = "webhook delivered, reading it now"

Log = Callable[[str], None]


@dataclass(frozen=True)
class DistributedSettings:
    """One distributed comparison's knobs; every scope runs with the same values."""

    #: 12 prompts (60 paid tasks): a floor of 170 s at ``time_scale`` 0.5, a run of about 4 min.
    prompts: int = 12
    #: Emulated durations are the real ones times this (0.5: an imagine 22.5 s, an upscale 5 s).
    time_scale: float = 0.5
    poll_interval: float = 5.0
    #: Slots of the ``lotimage`` pool (deferred tasks count): LotImage tasks in flight at once.
    pool_slots: int = 6
    #: ``[core] parallelism``: task instances running at once over all workers.
    parallelism: int = 8
    celery_workers: int = 2
    triggerers: int = 2
    #: Task slots of each Celery worker (2 x 4 = the local benchmark's 8 worker processes).
    worker_concurrency: int = 4
    grid_size: int = 512
    run_timeout: float = 1800.0
    #: Rate scopes, run in this order on the one deployment.
    scopes: tuple[str, ...] = SCOPES

    def floor(self) -> dict[str, float]:
        """The API-limit floor of the batch: :func:`benchmarks.pipelines.floor_seconds`."""
        return floor_seconds(PipelineSettings(prompts=self.prompts, time_scale=self.time_scale))


def connection_body(url: str, scope: str, api_url: str | None = None) -> dict[str, Any]:
    """The LotImage connection (REST API body) at the emulator ``url`` for the run ``scope``.

    ``webhooks`` is rate scope ``redis`` with the api-server at ``api_url`` as ``webhook_base_url``.
    """
    rate_scope = "redis" if scope == "webhooks" else scope
    extra: dict[str, Any] = {"rate_limit": RATE_LIMIT, "rate_limit_scope": rate_scope}
    if rate_scope == "redis":
        extra["rate_limit_redis_conn_id"] = REDIS_CONN_ID
    if scope == "webhooks":
        if api_url is None:
            raise ValueError("the webhooks run needs the api-server's URL")
        extra["webhook_base_url"] = api_url
    return {
        "connection_id": CONN_ID,
        "conn_type": "lotimage",
        "host": url,
        "password": KEY,
        "extra": json.dumps(extra),
    }


def _set_connection(af: AirflowDeployment, url: str, scope: str) -> None:
    """Create or overwrite the LotImage connection in the metadata DB (an environment one would shadow it)."""
    body = connection_body(url, scope, af.api_url)
    try:
        af.api("PATCH", f"connections/{CONN_ID}", body)
    except DeploymentError:
        af.api("POST", "connections", body, ok=(200, 201))


def _load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def run_scope(
    af: AirflowDeployment, scope: str, settings: DistributedSettings, output: Path, log: Log = print
) -> dict[str, Any]:
    """One run of the batch DAG with rate scope ``scope``, against a fresh emulator; its figures."""
    batch_dir = output / "batch"
    shutil.rmtree(batch_dir, ignore_errors=True)
    load_before = _load_average()
    with emulator_process(
        "--rate-limit", str(RATE_LIMIT),
        "--max-running", str(MAX_RUNNING),
        "--time-scale", str(settings.time_scale),
        "--grid-size", str(settings.grid_size),
        env={"LOTIMAGE_EMULATOR_KEYS": KEY},
    ) as emulator:  # fmt: skip
        _set_connection(af, emulator.url, scope)
        log(f"{scope}: emulator at {emulator.url}; running {DAG_ID} over {settings.prompts} prompts")
        conf = {"prompts": make_prompts(settings.prompts), "skip_stored": False}
        run_id = af.trigger(DAG_ID, conf)
        result = af.wait_for_run(DAG_ID, run_id, timeout=settings.run_timeout, poll_interval=2.0)
        slots = slot_seconds(af, DAG_ID, run_id)
        instances = af.task_instances(DAG_ID, run_id)
        stats = emulator.stats()
        tasks = emulator.admin("tasks")["tasks"]
        acted = acting_hosts(af.task_log_records(DAG_ID, run_id), _triggerer_hosts(af))
    figures = scope_figures(
        scope,
        settings,
        state=result.state,
        run_seconds=result.elapsed,
        stats=stats,
        tasks=tasks,
        slots=slots,
        instances=[
            {"task_id": ti.task_id, "hostname": ti.hostname, "try_number": ti.try_number} for ti in instances
        ],
        pictures_stored=len(list(batch_dir.rglob("*.png"))),
        load_average=[load_before, _load_average()],
    )
    if scope == "webhooks":
        figures |= {"webhook_deliveries": stats.get("webhooks", {}), "deliveries_acted_on_by_host": acted}
    return figures


def _triggerer_hosts(af: AirflowDeployment) -> dict[int, str]:
    """Triggerer job id -> the machine it runs on."""
    return {int(row["id"]): str(row["hostname"]) for row in af.jobs("TriggererJob")}


def acting_hosts(records: Sequence[dict[str, Any]], hosts: dict[int, str]) -> dict[str, int]:
    """Deliveries acted on per triggerer machine: each trigger's log file names its triggerer job."""
    acted: Counter[str] = Counter()
    for record in records:
        where = re.search(r"\.trigger\.(\d+)\.log$", str(record.get("_file", "")))
        if where and ACTED in str(record.get("event")):
            acted[hosts.get(int(where[1]), f"job {where[1]}")] += 1
    return dict(sorted(acted.items()))


def scope_figures(
    scope: str,
    settings: DistributedSettings,
    *,
    state: str,
    run_seconds: float,
    stats: dict[str, Any],
    tasks: list[dict[str, Any]],
    slots: dict[str, Any],
    instances: Sequence[dict[str, Any]],
    pictures_stored: int,
    load_average: list[list[float]],
) -> dict[str, Any]:
    """One scope's figures from what the emulator, the metadata DB and the output folder said."""
    timeline = stats["timeline"]
    wall = timeline["last_image"] - timeline["first_submit"] if "last_image" in timeline else None
    floor = settings.floor()
    by_host = Counter(str(ti["hostname"]) for ti in instances if ti["hostname"])
    retried = Counter(ti["task_id"] for ti in instances if ti["try_number"] > 1)
    return {
        "scope": scope,
        "dag_id": DAG_ID,
        "state": state,
        "run_seconds": round(run_seconds, 1),
        "wall_seconds": None if wall is None else round(wall, 1),
        **floor,
        "wall_over_floor": None if wall is None else round(wall / floor["floor_seconds"], 3),
        "calls": {**stats["requests"], "images": stats["events"].get("images_served", 0)},
        "answers_429": stats["rate_limited"],
        "paid_tasks": stats["submissions"],
        "duplicate_submissions": duplicates(tasks),
        "pictures_stored": pictures_stored,
        **slots,
        "task_instances_by_host": dict(sorted(by_host.items())),
        "tasks_retried": dict(retried),
        "load_average_before_after": load_average,
    }


def compare_scopes(settings: DistributedSettings, log: Log = print) -> dict[str, Any]:
    """Start one distributed deployment and run the batch DAG once per scope of ``settings.scopes``."""
    missing = missing_requirements()
    if missing:
        raise RuntimeError(
            f"the distributed topology needs {'; '.join(missing)} (run: sudo bash scripts/system-packages.sh)"
        )
    topology = Topology.distributed(
        celery_workers=settings.celery_workers,
        triggerers=settings.triggerers,
        worker_concurrency=settings.worker_concurrency,
    )
    assert topology.budget_redis_url is not None
    root = Path(tempfile.mkdtemp(prefix="lotimage-bench-distributed-"))
    output = root / "output"
    dags = root / "dags"
    dags.mkdir()
    shutil.copy(PROVIDER_DAG_FILE, dags)
    shutil.copytree(PROVIDER_DAG_FILE.parent / "prompts", dags / "prompts")
    env = {
        "AIRFLOW_CONN_REDIS_DEFAULT": redis_connection(topology.budget_redis_url),
        "LOTIMAGE_OUTPUT_DIR": str(output),
        "LOTIMAGE_POLL_INTERVAL": str(settings.poll_interval),
        "LOTIMAGE_POOL": POOL,
    }
    figures: dict[str, Any] = {}
    try:
        with AirflowDeployment(dags, env=env, topology=topology, parallelism=settings.parallelism) as af:
            log(
                f"distributed deployment up in {af.timings.get('start', 0):.0f} s: "
                f"{', '.join(af.service_names)}"
            )
            af.api(
                "POST",
                "pools",
                {"name": POOL, "slots": settings.pool_slots, "description": "LotImage calls",
                 "include_deferred": True},
                ok=(200, 201),
            )  # fmt: skip
            af.wait_for_dag(DAG_ID, timeout=180)
            af.unpause(DAG_ID)
            for scope in settings.scopes:
                try:
                    figures[scope] = run_scope(af, scope, settings, output, log)
                except (DeploymentError, TimeoutError) as exc:  # the other scope may still run
                    log(f"{scope}: {type(exc).__name__}: {exc}\n{af.format_log_tails(30)}")
                    figures[scope] = {
                        "scope": scope,
                        "state": "error",
                        "error": f"{type(exc).__name__}: {exc}",
                    }
                    continue
                shown = {k: v for k, v in figures[scope].items() if "by_task" not in k}
                log(f"{scope}: {json.dumps(shown)}")
            services = list(af.service_names)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {
        "settings": asdict(settings),
        "topology": {"name": topology.name, "services": services, "database": topology.database,
                     "executor": topology.executor},
        "scopes": figures,
    }  # fmt: skip


def _dupes(figures: dict[str, Any]) -> int:
    return sum(figures.get("duplicate_submissions", {}).values())


def targets(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each target with the measured value and whether it was met (``met`` is ``None``: only reported).

    Scope ``redis`` and the ``webhooks`` run: zero 429s and wall within 1.3x the floor; the
    ``webhooks`` run also every paid task's delivery acted on by a triggerer. Every run: no paid
    task twice. Scope ``host`` is reported as it is.
    """
    found: dict[str, dict[str, Any]] = {}
    for scope, figures in result.get("scopes", {}).items():
        ratio, answers = figures.get("wall_over_floor"), figures.get("answers_429")
        judged = scope in JUDGED
        found[f"{scope}_zero_429"] = {"value": answers, "met": answers == 0 if judged else None}
        found[f"{scope}_wall_within_{WALL_TARGET}x_floor"] = {
            "value": ratio,
            "met": (ratio is not None and ratio <= WALL_TARGET) if judged else None,
        }
        found[f"{scope}_zero_duplicates"] = {"value": _dupes(figures), "met": _dupes(figures) == 0}
        if scope == "webhooks":
            acted, paid = sum(figures.get("deliveries_acted_on_by_host", {}).values()), _paid(figures)
            found["webhooks_every_delivery_acted_on"] = {
                "value": f"{acted}/{paid}",
                "met": paid > 0 and acted == paid,
            }
    return found


def _paid(figures: dict[str, Any]) -> int:
    return sum(figures.get("paid_tasks", {}).values())


def table(result: dict[str, Any]) -> str:
    """The scopes side by side as a Markdown table (what the README shows)."""
    scopes = list(result.get("scopes", {}))

    def calls(figures: dict[str, Any]) -> str:
        c = figures.get("calls", {})
        return f"{c.get('imagine', 0)} / {c.get('button', 0)} / {c.get('progress', 0)}"

    def hosts(figures: dict[str, Any]) -> str:
        return ", ".join(
            f"{host} {n}" for host, n in sorted(figures.get("task_instances_by_host", {}).items())
        )

    def acted(figures: dict[str, Any]) -> str:
        by_host = figures.get("deliveries_acted_on_by_host")
        return "" if by_host is None else ", ".join(f"{host} {n}" for host, n in by_host.items()) or "none"

    rows: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
        ("run state", lambda f: f.get("state")),
        ("wall time, first submit to last picture (s)", lambda f: f.get("wall_seconds")),
        ("floor from the API limits (s)", lambda f: f.get("floor_seconds")),
        ("wall / floor", lambda f: f.get("wall_over_floor")),
        ("calls: imagine / button / progress", calls),
        ("429 answers", lambda f: f.get("answers_429")),
        ("duplicate paid calls", _dupes),
        ("pictures stored", lambda f: f.get("pictures_stored")),
        ("worker-slot-seconds (running, from the DB)", lambda f: f.get("worker_slot_seconds")),
        ("worker-seconds (`Workload finished`)", lambda f: f.get("worker_process_seconds")),
        ("task executions (worker processes)", lambda f: f.get("task_executions")),
        ("task instances per worker", hosts),
        ("webhook deliveries acted on, per triggerer", acted),
    ]
    lines = ["| | " + " | ".join(f"scope `{scope}`" for scope in scopes) + " |"]
    lines.append("|---|" + "---:|" * len(scopes))
    for name, get in rows:
        lines.append(f"| {name} | " + " | ".join(str(get(result["scopes"][s])) for s in scopes) + " |")
    return "\n".join(lines)
