"""The run's paid-task budget (DAG param ``max_paid_tasks_per_run``) and the daily quota, in DAG runs.

Each DAG is serialised as the DAG processor would and run with ``dag.test()`` against the emulator;
tasks record their failures through an ``on_failure_callback``. The budget's counting across
parallel task instances is in ``tests/utils/test_budget.py``, on a real deployment in
``tests/deployment/test_quota_and_load.py``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from lotimage_emulator import Emulator
from lotimage_emulator.pytest_plugin import TEST_API_KEY

from tests.dag_helpers import run_dag

START = datetime(2026, 1, 1)
NO_DELAY = timedelta(seconds=0)
PROMPTS = ["A red fox in the snow", "A blue heron at dawn", "A green frog on a leaf"]
BUTTONS = ["U1", "U2", "U3", "U4"]
CLAIM_KEY = "lotimage_paid_tasks"


@pytest.fixture(autouse=True)
def _db(airflow_db: None) -> None:
    return None


@pytest.fixture
def make_emulator(
    lotimage_emulator_factory: Callable[..., Emulator], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Emulator]:
    """A started emulator (no rate limit: the tests count calls, not pace them) as ``lotimage_default``."""

    def make(**config: Any) -> Emulator:
        emulator = lotimage_emulator_factory(**{"rate_limit": None, **config})
        conn = {"conn_type": "lotimage", "host": emulator.url, "password": TEST_API_KEY}
        monkeypatch.setenv("AIRFLOW_CONN_LOTIMAGE_DEFAULT", json.dumps(conn))
        return emulator

    return make


@dataclass
class Runs:
    """DAGs whose tasks record each failed try, and what their runs left behind."""

    prefix: str
    failures: list[tuple[str, int, int, BaseException | None]] = field(default_factory=list)

    def record(self, context: Any) -> None:
        ti = context["ti"]
        map_index = -1 if ti.map_index is None else int(ti.map_index)
        self.failures.append((ti.task_id, map_index, ti.try_number, context.get("exception")))

    def dag(self, name: str, budget: Any = None, **kwargs: Any) -> Any:
        from airflow.sdk import DAG, Param

        params = kwargs.pop("params", {})
        if budget is not None:
            params["max_paid_tasks_per_run"] = Param(budget, type=["null", "integer"], minimum=0)
        return DAG(
            f"{self.prefix}_{name}",
            schedule=None,
            start_date=START,
            params=params,
            default_args={"on_failure_callback": self.record, "retries": 2, "retry_delay": NO_DELAY},
            **kwargs,
        )

    def errors(self, task_id: str) -> list[str]:
        return [str(error) for task, _, _, error in self.failures if task == task_id]

    @staticmethod
    def tis(run: Any, task_id: str) -> list[Any]:
        return sorted(
            (ti for ti in run.get_task_instances() if ti.task_id == task_id), key=lambda ti: ti.map_index
        )

    @classmethod
    def states(cls, run: Any, task_id: str) -> list[str]:
        return [str(ti.state) for ti in cls.tis(run, task_id)]

    @classmethod
    def claims(cls, run: Any, task_id: str) -> list[Any]:
        return [
            ti.xcom_pull(task_ids=task_id, key=CLAIM_KEY, map_indexes=ti.map_index)
            for ti in cls.tis(run, task_id)
        ]


@pytest.fixture
def runs(request: pytest.FixtureRequest) -> Runs:
    return Runs(prefix=f"budget_{request.node.name}".replace("[", "_").replace("]", ""))


def paid(emulator: Emulator) -> dict[str, int]:
    stats = emulator.stats()
    return {
        "imagine_sent": stats["requests"]["imagine"],
        "imagine_paid": stats["submissions"]["imagine"],
        "button_sent": stats["requests"]["button"],
        "button_paid": stats["submissions"]["button"],
    }


# -- the budget ---------------------------------------------------------------------------------


def test_a_batch_that_would_cost_five_times_its_budget_stops_at_it(
    runs: Runs, make_emulator: Callable[..., Emulator]
) -> None:
    """One place per prompt, as its author reckoned; each prompt costs five (a grid, four upscales)."""
    from airflow_provider_lotimage.operators.button import ButtonOperator
    from airflow_provider_lotimage.operators.imagine import ImagineOperator

    emulator = make_emulator()
    with runs.dag("batch", budget=len(PROMPTS)) as dag:
        imagine = ImagineOperator.partial(
            task_id="imagine", wait_for_completion=True, deferrable=False, poll_interval=0.2
        ).expand(prompt=PROMPTS)
        ButtonOperator.partial(task_id="upscale", wait_for_completion=True, poll_interval=0.2).expand(
            lotimage_task_id=imagine.output, button=BUTTONS
        )
    run = run_dag(dag)

    assert str(run.state) == "failed"
    assert runs.states(run, "imagine") == ["success"] * 3
    assert runs.states(run, "upscale") == ["failed"] * 12
    assert [ti.try_number for ti in runs.tis(run, "upscale")] == [1] * 12, "final: no Airflow retry"
    assert paid(emulator) == {"imagine_sent": 3, "imagine_paid": 3, "button_sent": 0, "button_paid": 0}
    errors = runs.errors("upscale")
    assert len(errors) == 12
    for error in errors:
        assert error.startswith("PaidTaskBudgetError: max_paid_tasks_per_run=3: this DAG run has already")
        assert "started 3 paid LotImage task(s) (imagine[0], imagine[1], imagine[2])" in error
        assert "nothing was paid for it" in error
    claims = runs.claims(run, "imagine")
    assert claims == [{"task_id": "imagine", "map_index": i, "paid": 1, "pending": False} for i in range(3)]
    assert {claim["paid"] for claim in runs.claims(run, "upscale")} == {0}


def test_a_retry_that_reconnects_to_its_paid_task_counts_once(
    runs: Runs, make_emulator: Callable[..., Emulator]
) -> None:
    """``slow``'s first try times out waiting, its retry reconnects: with a budget of 2, ``second``
    still pays and ``third`` is refused."""
    from airflow_provider_lotimage.operators.imagine import ImagineOperator

    emulator = make_emulator(time_scale=1.0, imagine_seconds=2.5)
    with runs.dag("reconnect", budget=2) as dag:
        slow = ImagineOperator(
            task_id="slow",
            prompt="A slow snail",
            wait_for_completion=True,
            poll_interval=0.2,
            timeout=1.0,
            retries=5,
        )
        second = ImagineOperator(task_id="second", prompt="A quick hare")
        third = ImagineOperator(task_id="third", prompt="A third animal", trigger_rule="all_done")
        slow >> second >> third
    run = run_dag(dag)

    assert runs.states(run, "slow") == ["success"] and runs.states(run, "second") == ["success"]
    assert runs.tis(run, "slow")[0].try_number >= 2, "the first try timed out and was retried"
    assert runs.states(run, "third") == ["failed"]
    assert "already started 2 paid LotImage task(s) (second, slow)" in runs.errors("third")[0]
    assert runs.claims(run, "slow") == [{"task_id": "slow", "map_index": -1, "paid": 1, "pending": False}]
    assert paid(emulator) == {"imagine_sent": 2, "imagine_paid": 2, "button_sent": 0, "button_paid": 0}


def test_a_retry_that_pays_again_counts_again(runs: Runs, make_emulator: Callable[..., Emulator]) -> None:
    """The first LotImage task of ``flaky`` fails at the service; its retry submits (pays) afresh."""
    from airflow_provider_lotimage.operators.imagine import ImagineOperator

    emulator = make_emulator()
    emulator.add_fault("fail_task", endpoint="imagine", count=1, err_message="Task timeout", progress=31)
    with runs.dag("resubmit", budget=2) as dag:
        flaky = ImagineOperator(
            task_id="flaky", prompt="A flaky owl", wait_for_completion=True, poll_interval=0.2
        )
        more = ImagineOperator(task_id="more", prompt="One more owl", trigger_rule="all_done")
        flaky >> more
    run = run_dag(dag)

    assert runs.states(run, "flaky") == ["success"]
    assert runs.states(run, "more") == ["failed"]
    assert "already started 2 paid LotImage task(s) (flaky x2)" in runs.errors("more")[0]
    assert paid(emulator) == {"imagine_sent": 2, "imagine_paid": 2, "button_sent": 0, "button_paid": 0}


def test_a_refused_paid_call_gives_its_place_back(runs: Runs, make_emulator: Callable[..., Emulator]) -> None:
    from airflow_provider_lotimage.operators.imagine import ImagineOperator

    emulator = make_emulator()
    with runs.dag("give_back", budget=1) as dag:
        banned = ImagineOperator(task_id="banned", prompt="an nsfw owl")
        allowed = ImagineOperator(task_id="allowed", prompt="A decent owl", trigger_rule="all_done")
        banned >> allowed
    run = run_dag(dag)

    assert runs.states(run, "banned") == ["failed"] and runs.states(run, "allowed") == ["success"]
    assert "Banned prompt detected" in runs.errors("banned")[0]
    assert runs.claims(run, "banned") == [{"task_id": "banned", "map_index": -1, "paid": 0, "pending": False}]
    assert paid(emulator) == {"imagine_sent": 2, "imagine_paid": 1, "button_sent": 0, "button_paid": 0}


def test_a_budget_that_is_not_a_number_fails_before_any_call(
    runs: Runs, make_emulator: Callable[..., Emulator]
) -> None:
    from airflow_provider_lotimage.operators.imagine import ImagineOperator

    emulator = make_emulator()
    with runs.dag("bad_value", params={"max_paid_tasks_per_run": "a few"}) as dag:
        ImagineOperator(task_id="imagine", prompt="An owl")
    run = run_dag(dag)

    assert runs.states(run, "imagine") == ["failed"]
    assert runs.tis(run, "imagine")[0].try_number == 1
    assert "max_paid_tasks_per_run must be a whole number of at least 0" in runs.errors("imagine")[0]
    assert emulator.stats()["requests"] == {"imagine": 0, "progress": 0, "button": 0}


def test_without_the_param_nothing_is_counted(runs: Runs, make_emulator: Callable[..., Emulator]) -> None:
    from airflow_provider_lotimage.operators.imagine import ImagineOperator

    make_emulator()
    with runs.dag("no_budget") as dag:
        ImagineOperator.partial(task_id="imagine").expand(prompt=PROMPTS)
    run = run_dag(dag)

    assert runs.states(run, "imagine") == ["success"] * 3
    assert runs.claims(run, "imagine") == [None] * 3


# -- the daily quota ----------------------------------------------------------------------------


def test_spent_daily_quota_fails_at_once_and_says_when_it_resets(
    runs: Runs, make_emulator: Callable[..., Emulator]
) -> None:
    """A quota of one call: ``unreadable`` pays (imagine), then cannot read its task; ``refused``
    cannot pay. Both fail on their first try (of three), without waiting."""
    from airflow_provider_lotimage.operators.imagine import ImagineOperator

    emulator = make_emulator(daily_quota=1)
    with runs.dag("quota") as dag:
        unreadable = ImagineOperator(
            task_id="unreadable", prompt="A paid owl", wait_for_completion=True, poll_interval=0.2
        )
        refused = ImagineOperator(task_id="refused", prompt="An owl too many", trigger_rule="all_done")
        unreadable >> refused
    run = run_dag(dag)

    assert runs.states(run, "unreadable") == ["failed"] and runs.states(run, "refused") == ["failed"]
    assert [runs.tis(run, task)[0].try_number for task in ("unreadable", "refused")] == [1, 1]
    lotimage_task = runs.tis(run, "unreadable")[0].xcom_pull(task_ids="unreadable", key="lotimage_task_id")
    [read_error] = runs.errors("unreadable")
    [paid_error] = runs.errors("refused")
    for error in (read_error, paid_error):
        assert error.startswith("QuotaExhaustedError: Daily request limit reached: the key's daily quota")
        assert "it resets at 00:00 UTC (" in error and "[status 403]" in error
    assert f"LotImage task {lotimage_task} is paid but its progress cannot be read until then" in read_error
    assert "it reconnects to the paid task without paying again" in read_error
    assert "This task's paid call was refused, so nothing was paid for it" in paid_error
    stats = emulator.stats()
    assert stats["requests"] == {"imagine": 2, "progress": 1, "button": 0}
    assert stats["submissions"] == {"imagine": 1, "button": 0}
