"""Quotas, budgets and load on a real local deployment (SQLite, LocalExecutor) against the emulator.

* A trial key's daily quota spent in the middle of ``example_lotimage_batch``: the paid calls beyond
  it fail at once, saying when the quota resets; what was paid is stored; once the emulator's day
  rolls over, clearing the failed tasks completes the run without paying twice.
* ``max_paid_tasks_per_run``: a batch that would pay five times its budget stops at it, and
  imagines deciding in parallel on the last places fill the budget exactly.
* ``example_lotimage_daily`` backfilled over 30 days, all runs at once, while the emulator refuses
  a share of the calls (429, 502): every run succeeds, each day is paid once, each picture stored
  once.

One deployment and one emulator for the module (each test resets the emulator and sets its own
quota and faults); the DAGs folder holds the two examples and ``dags/lotimage_paid_budget.py``.
``[core] default_task_retries`` is 2, so a task that fails without retrying shows the failure is
final. Clearing failed tasks uses the CLI: the harness's REST client has no clearing helper.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from lotimage_emulator import Emulator
from lotimage_emulator.pytest_plugin import TEST_API_KEY

from airflow_harness import AirflowDeployment, DeploymentError
from tests.deployment.counters import paid_calls

pytestmark = [pytest.mark.deployment, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
BATCH_DAG = "example_lotimage_batch"
DAILY_DAG = "example_lotimage_daily"
BUDGET_DAG = "lotimage_paid_budget"
DAG_FILES = [
    REPO / "example_dags" / "example_lotimage_batch.py",
    REPO / "example_dags" / "example_lotimage_daily.py",
    Path(__file__).parent / "dags" / "lotimage_paid_budget.py",
]
TRIAL_QUOTA = 10
BACKFILL_DAYS = 30
#: An imagine in 2.7 s, an upscale in 0.6 s: well inside the adaptive schedule's upper bound
#: (``poll_interval`` 2 s x 3 after a task's likely start), so a deferred task reads its LotImage
#: task once.
TIME_SCALE = 0.06
PROMPTS = [
    "A lighthouse made of glass",
    "An owl with cat ears hanging on a tree",
    "A paper boat on a stormy sea",
    "A fox reading a map by lantern light",
]


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    emu = Emulator(keys=(TEST_API_KEY,), time_scale=TIME_SCALE, grid_size=128, rate_limit=3.0)
    emu.start()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture(scope="module")
def output_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("quota-and-load-output")


@pytest.fixture(scope="module")
def deployment(
    emulator: Emulator, output_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AirflowDeployment]:
    dags = tmp_path_factory.mktemp("quota-and-load-dags")
    for path in DAG_FILES:
        (dags / path.name).symlink_to(path)
    env = {
        "AIRFLOW_CONN_LOTIMAGE_DEFAULT": json.dumps(
            {"conn_type": "lotimage", "host": emulator.url, "password": TEST_API_KEY}
        ),
        "LOTIMAGE_OUTPUT_DIR": str(output_dir),
        "LOTIMAGE_POLL_INTERVAL": "2",
        "LOTIMAGE_POOL": "lotimage",
        "AIRFLOW__CORE__DEFAULT_TASK_RETRIES": "2",
        "AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY": "5",
    }
    with AirflowDeployment(dags, env=env, parallelism=8) as af:
        af.cli("pools", "set", "lotimage", "16", "LotImage calls", "--include-deferred")
        yield af


@pytest.fixture(autouse=True)
def fresh_emulator(emulator: Emulator) -> None:
    """Each scenario starts from zeroed counters, no quota spent and no faults."""
    emulator.reset()


# -- helpers ------------------------------------------------------------------------------------


def snapshot(folder: Path) -> dict[str, tuple[int, int, str]]:
    """Every file under ``folder``: (size, mtime_ns, sha256), to prove nothing stored was touched."""
    return {
        str(path.relative_to(folder)): (
            path.stat().st_size,
            path.stat().st_mtime_ns,
            hashlib.sha256(path.read_bytes()).hexdigest(),
        )
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def task_errors(af: AirflowDeployment, dag_id: str, run_id: str, task_id: str) -> dict[int, str]:
    """The log text of each map index of a task (all its attempts), keyed by map index."""
    logs: dict[int, str] = {}
    for path in af.task_log_files(dag_id, run_id, task_id):
        parts = [part for part in path.parts if part.startswith("map_index=")]
        index = int(parts[-1].split("=", 1)[1]) if parts else -1
        logs[index] = logs.get(index, "") + path.read_text(errors="replace")
    return logs


def states(af: AirflowDeployment, dag_id: str, run_id: str, task_id: str) -> list[str | None]:
    return [
        ti.state
        for ti in sorted(af.task_instances(dag_id, run_id), key=lambda ti: ti.map_index)
        if ti.task_id == task_id
    ]


#: The batch's upscale steps: one task per button in each prompt's group.
UPSCALE_TASKS = [f"batch.U{n}" for n in (1, 2, 3, 4)]


def upscale_states(af: AirflowDeployment, run_id: str) -> list[str | None]:
    return [state for task_id in UPSCALE_TASKS for state in states(af, BATCH_DAG, run_id, task_id)]


def upscale_errors(af: AirflowDeployment, run_id: str) -> dict[str, str]:
    """The log text of every upscale task instance, keyed ``batch.U<n>[<map index>]``."""
    return {
        f"{task_id}[{index}]": text
        for task_id in UPSCALE_TASKS
        for index, text in task_errors(af, BATCH_DAG, run_id, task_id).items()
    }


def not_report(name: str) -> bool:
    return not Path(name).name.startswith("batch-report.")


def deferred(af: AirflowDeployment, dag_id: str, run_id: str) -> set[str]:
    return {event.key for event in af.task_state_events(dag_id, run_id) if event.event == "deferred"}


# -- the trial key's daily quota ----------------------------------------------------------------


def test_trial_quota_spent_mid_batch_then_the_next_day_completes_it(
    af: AirflowDeployment, emulator: Emulator, output_dir: Path
) -> None:
    """4 prompts: 4 imagines and their 4 reads, then the upscales spend the last 2 calls of the day.

    The upscales refused fail at once (no deferral, no retry); those paid cannot be read and fail
    the same way, keeping their taskIds; the grids are stored. On each next day, clearing the failed
    tasks presses only the buttons not paid yet and reconnects to the paid ones, until the run
    completes: 40 calls in all, 10 a day.
    """
    emulator.set_config(daily_quota=TRIAL_QUOTA)
    batch = output_dir / "batch"
    started = time.monotonic()
    first = af.run_dag(BATCH_DAG, conf={"prompts": PROMPTS, "skip_stored": True}, timeout=420)
    day_one = time.monotonic() - started
    run_id = first.run_id

    assert first.state == "failed", first.task_states
    assert states(af, BATCH_DAG, run_id, "batch.imagine") == ["success"] * 4
    assert upscale_states(af, run_id) == ["failed"] * 16
    # Each prompt's save stored its grid, then failed: its upscales did not come.
    assert states(af, BATCH_DAG, run_id, "batch.save") == ["failed"] * 4
    assert states(af, BATCH_DAG, run_id, "batch_report") == ["failed"]
    assert af.task_instance_history(BATCH_DAG, run_id) == [], "no task was retried (2 retries allowed)"

    stats = emulator.stats()
    assert stats["quota_used"][emulator.key_id(TEST_API_KEY)] == TRIAL_QUOTA
    calls = paid_calls(emulator)
    paid_upscales = calls["button_created"]
    reads = stats["requests"]["progress"] - paid_upscales  # each paid upscale's one refused read
    assert calls["imagine_received"] == calls["imagine_created"] == 4
    assert reads == 4, "one read per imagine (the emulator renders them within the upper bound)"
    assert paid_upscales == TRIAL_QUOTA - 4 - reads == 2
    assert calls["button_received"] == 16, "one call per upscale, none resent"

    logs = upscale_errors(af, run_id)
    assert len(logs) == 16
    unreadable = {i for i, text in logs.items() if "is paid but its progress cannot be read" in text}
    refused = {i for i, text in logs.items() if "paid call was refused, so nothing was paid" in text}
    assert len(unreadable) == paid_upscales and len(refused) == 16 - paid_upscales
    for text in logs.values():
        assert "daily quota of LotImage calls is spent; it resets at 00:00 UTC" in text
    assert not refused & deferred(af, BATCH_DAG, run_id), "a refused call waits for nothing"
    assert unreadable <= deferred(af, BATCH_DAG, run_id)

    grids = {name: facts for name, facts in snapshot(batch).items() if not_report(name)}
    assert len([name for name in grids if name.endswith(".png")]) == 4, sorted(grids)
    assert len([name for name in grids if name.endswith(".json")]) == 4

    # Each next day: clear the run's failed tasks (upscales, saves, report) and let the run go on.
    # The 30 calls left (14 presses, 16 reads) take a trial key's 10 a day three more days; the paid
    # upscales reconnect (one read each) instead of pressing their button again.
    key = emulator.key_id(TEST_API_KEY)
    days: list[dict[str, Any]] = []
    result = first
    while result.state != "success":
        assert len(days) < 4, days
        emulator.next_day()
        paid_before = emulator.stats()["submissions"]["button"]
        cleared_at = time.monotonic()
        # Airflow 3.3's --task-regex matches a substring of the task id: "batch" picks every task
        # of the prompts' group and the report; --only-failed leaves the finished ones alone.
        af.cli("tasks", "clear", BATCH_DAG, "--task-regex", "batch", "--only-failed", "--yes")
        result = af.wait_for_run(BATCH_DAG, run_id, timeout=420)
        stats = emulator.stats()
        assert stats["quota_used"][key] <= TRIAL_QUOTA
        days.append(
            {
                "seconds": round(time.monotonic() - cleared_at),
                "paid": stats["submissions"]["button"] - paid_before,
                "upscales": dict(Counter(upscale_states(af, run_id))),
            }
        )
    assert 3 <= len(days) <= 4, days

    stats = emulator.stats()
    after = paid_calls(emulator)
    refused_presses = stats["answers_by_endpoint"]["button"].get("403", 0)
    assert set(stats["answers_by_endpoint"]["button"]) <= {"200", "403"}
    assert after == {
        "imagine_received": 4,
        "imagine_created": 4,
        "button_received": 16 + refused_presses,
        "button_created": 16,
    }, "each button call paid, or was refused and sent again only by the next day's try"
    pressed = Counter(
        (task["parentId"], task["button"]) for task in emulator.tasks() if task["kind"] == "upscale"
    )
    assert len(pressed) == 16 and set(pressed.values()) == {1}, "no button pressed twice"

    stored = {name: facts for name, facts in snapshot(batch).items() if not_report(name)}
    assert {name: stored[name] for name in grids} == grids, "what was stored is untouched"
    assert len([name for name in stored if name.endswith(".png")]) == 4 + 16
    sidecars = [json.loads((batch / name).read_text()) for name in stored if name.endswith(".json")]
    assert len({meta["lotimage_task_id"] for meta in sidecars}) == 20
    print(
        f"\ntrial quota: day one {day_one:.0f} s ({paid_upscales} upscales paid, {len(refused)} refused); "
        f"then {len(days)} more days {days}; {after}, {refused_presses} presses refused in all"
    )


# -- the paid-task budget -----------------------------------------------------------------------


def test_a_batch_that_would_pay_five_times_its_budget_stops_at_it(
    af: AirflowDeployment, emulator: Emulator
) -> None:
    """4 prompts, a budget of 4 (one a prompt): the 4 grids are paid, the 16 upscales refused."""
    started = time.monotonic()
    result = af.run_dag(BUDGET_DAG, conf={"prompts": PROMPTS, "max_paid_tasks_per_run": 4}, timeout=300)
    elapsed = time.monotonic() - started
    run_id = result.run_id

    assert result.state == "failed"
    assert states(af, BUDGET_DAG, run_id, "imagine") == ["success"] * 4
    assert states(af, BUDGET_DAG, run_id, "upscale") == ["failed"] * 16
    assert af.task_instance_history(BUDGET_DAG, run_id) == [], "final: no retry"
    assert paid_calls(emulator) == {
        "imagine_received": 4,
        "imagine_created": 4,
        "button_received": 0,
        "button_created": 0,
    }
    for text in task_errors(af, BUDGET_DAG, run_id, "upscale").values():
        assert "PaidTaskBudgetError: max_paid_tasks_per_run=4: this DAG run has already started 4" in text
    print(f"\nbudget of 4 for a batch of 20 paid tasks: stopped at 4 in {elapsed:.0f} s")


def test_imagines_deciding_in_parallel_fill_the_budget_exactly(
    af: AirflowDeployment, emulator: Emulator
) -> None:
    """8 imagines at once (8 workers, 16 pool slots) for 5 places: 5 pay, 3 are refused."""
    prompts = [f"A kite number {i} over the dunes" for i in range(8)]
    started = time.monotonic()
    result = af.run_dag(BUDGET_DAG, conf={"prompts": prompts, "max_paid_tasks_per_run": 5}, timeout=300)
    elapsed = time.monotonic() - started
    run_id = result.run_id

    imagine_states = states(af, BUDGET_DAG, run_id, "imagine")
    assert Counter(imagine_states) == {"success": 5, "failed": 3}, imagine_states
    assert paid_calls(emulator)["imagine_created"] == 5
    assert paid_calls(emulator)["imagine_received"] == 5, "the refused ones made no call"
    created = Counter(task["prompt"] for task in emulator.tasks())
    assert set(created.values()) == {1}
    logs = task_errors(af, BUDGET_DAG, run_id, "imagine")
    refused = [
        text
        for text in logs.values()
        if "max_paid_tasks_per_run=5: this DAG run has already started 5" in text
    ]
    assert len(refused) == 3
    retried = sorted(ti.key for ti in af.task_instance_history(BUDGET_DAG, run_id))
    print(f"\n8 parallel imagines, budget 5: 5 paid, 3 refused in {elapsed:.0f} s (tries retried: {retried})")


# -- load: a 30-day backfill --------------------------------------------------------------------


def test_thirty_day_backfill_under_refusals(
    af: AirflowDeployment, emulator: Emulator, output_dir: Path
) -> None:
    """30 runs at once; 20 % of imagines and 10 % of reads answered 429, 5 % of reads 502."""
    emulator.add_fault("http_429", endpoint="imagine", retry_after=1.0, count=None, share=0.20)
    emulator.add_fault("http_429", endpoint="progress", retry_after=1.0, count=None, share=0.10)
    emulator.add_fault("http_status", endpoint="progress", status=502, count=None, share=0.05)

    # The last 30 complete days: the latest one is the interval the scheduler would run on
    # unpausing, so it exists already (a backfill run) and nothing else is scheduled.
    last = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    first = last - timedelta(days=BACKFILL_DAYS - 1)
    days = [(first + timedelta(days=n)).date().isoformat() for n in range(BACKFILL_DAYS)]
    af.wait_for_dag(DAILY_DAG)
    started = time.monotonic()
    backfill = _create_backfill(
        af,
        {
            "dag_id": DAILY_DAG,
            "from_date": first.isoformat(),
            "to_date": last.isoformat(),
            "max_active_runs": BACKFILL_DAYS,
            "reprocess_behavior": "none",
        },
    )
    created = time.monotonic()
    af.unpause(DAILY_DAG)
    runs = _wait_for_all_runs(af, DAILY_DAG, BACKFILL_DAYS, timeout=600)
    elapsed = time.monotonic() - created

    assert Counter(run["state"] for run in runs) == {"success": BACKFILL_DAYS}, [
        (run["dag_run_id"], run["state"]) for run in runs if run["state"] != "success"
    ]
    assert {run["run_type"] for run in runs} == {"backfill"}
    assert sorted(str(run["logical_date"])[:10] for run in runs) == days

    stats = emulator.stats()
    refused = stats["answers_by_endpoint"]
    imagine_429 = refused.get("imagine", {}).get("429", 0)
    progress_429 = refused.get("progress", {}).get("429", 0)
    progress_502 = refused.get("progress", {}).get("502", 0)
    assert imagine_429 > 0 and progress_429 > 0 and progress_502 > 0, refused
    assert stats["submissions"]["imagine"] == BACKFILL_DAYS, "exactly one paid imagine a day"
    assert stats["requests"]["imagine"] == BACKFILL_DAYS + imagine_429, "only refused calls were resent"
    prompts = Counter(task["prompt"] for task in emulator.tasks())
    assert prompts == Counter(f"A watercolour postcard of the sea on {day}" for day in days)

    daily = output_dir / "daily"
    stored = snapshot(daily)
    pictures = [name for name in stored if name.endswith(".png")]
    assert len(pictures) == 4 * BACKFILL_DAYS, "the four pictures of the grid (cutting=True) a day"
    for day in days:
        metas = [json.loads(p.read_text()) for p in sorted((daily / day).glob("*.json"))]
        assert sorted(meta["index"] for meta in metas) == [1, 2, 3, 4], day
        assert len({meta["lotimage_task_id"] for meta in metas}) == 1, day
    assert stats["events"].get("images_served") == 4 * BACKFILL_DAYS, "each picture downloaded once"
    tries = Counter(ti.try_number for ti in af.task_instances(DAILY_DAG))
    print(
        f"\n30-day backfill {backfill['id']} (max_active_runs {BACKFILL_DAYS}): {BACKFILL_DAYS} runs "
        f"succeeded in {elapsed:.0f} s after its creation (which took {created - started:.0f} s); "
        f"imagine calls {stats['requests']['imagine']} "
        f"({imagine_429} answered 429), progress reads {stats['requests']['progress']} "
        f"({progress_429} answered 429, {progress_502} answered 502), paid imagines "
        f"{stats['submissions']['imagine']}, pictures stored {len(pictures)}, task tries {dict(tries)}"
    )


def _create_backfill(af: AirflowDeployment, body: dict[str, Any]) -> dict[str, Any]:
    """Create a backfill through the REST API, as a user would, again while SQLite refuses.

    On SQLite, Airflow 3.3 answers 503 ("Database is locked. Backfill creation is not supported on
    SQLite under concurrent access") when another service wrote while it created the runs, and
    removes the half-made backfill so the request can be sent again. The scheduler writes most
    often; if it keeps winning, it is stopped for the moment of the creation (the DAG is paused,
    so it has nothing to schedule yet).
    """
    rng = random.Random(0)

    def post() -> dict[str, Any] | None:
        try:
            return dict(af.api("POST", "backfills", body))
        except DeploymentError as err:
            if "-> 503" not in str(err):
                raise
        time.sleep(rng.uniform(0.2, 2.0))
        return None

    for _ in range(10):
        if (created := post()) is not None:
            return created
    af.stop_service("scheduler")
    try:
        for _ in range(10):
            if (created := post()) is not None:
                return created
    finally:
        af.start_service("scheduler")
    raise AssertionError("SQLite refused the backfill 20 times")


def _wait_for_all_runs(
    af: AirflowDeployment, dag_id: str, count: int, timeout: float
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        runs = af.api("GET", f"dags/{dag_id}/dagRuns?limit=100")["dag_runs"]
        if len(runs) >= count and all(run["state"] in ("success", "failed") for run in runs):
            return list(runs)
        if time.monotonic() > deadline:
            raise TimeoutError(f"{dag_id}: {Counter(run['state'] for run in runs)} after {timeout:.0f} s")
        time.sleep(2)
