"""The submit operators in real DAG runs, and what they and the sensor hand the trigger.

The sensor's own DAG runs (poke, reschedule, deferrable) are in ``tests/sensors/test_task_progress.py``.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest

from tests.dag_helpers import EXPECTED_KEYS, run_dag, ti_state, xcom


@pytest.fixture(autouse=True)
def _db(airflow_db: None) -> None:
    return None


def test_imagine_waits_in_worker_and_returns_result(lotimage_connection, lotimage_emulator) -> None:
    from airflow.sdk import DAG

    from airflow_provider_lotimage.operators.button import ButtonOperator
    from airflow_provider_lotimage.operators.imagine import ImagineOperator

    with DAG("test_imagine_wait", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        imagine = ImagineOperator(
            task_id="imagine",
            prompt="a teapot",
            wait_for_completion=True,
            deferrable=False,
            poll_interval=0.3,
        )
        ButtonOperator(
            task_id="upscale",
            lotimage_task_id=imagine.output,
            button="U3",
            wait_for_completion=True,
            deferrable=False,
            poll_interval=0.3,
        )
    run = run_dag(dag)
    assert run.state == "success"
    grid = xcom(run, "imagine")
    upscale = xcom(run, "upscale")
    assert set(grid) == EXPECTED_KEYS == set(upscale)
    assert xcom(run, "imagine", "lotimage_task_id") == grid["lotimage_task_id"]
    assert upscale["originating_task_id"] == grid["lotimage_task_id"]
    assert lotimage_emulator.stats()["submissions"] == {"imagine": 1, "button": 1}


def test_button_checked_against_parent_buttons_before_any_call(
    lotimage_connection, lotimage_emulator
) -> None:
    from airflow.sdk import DAG

    from airflow_provider_lotimage.operators.button import ButtonOperator

    parent = {"lotimage_task_id": "parent-1", "image_url": "http://x/y.png", "buttons": ["Vary (Strong)"]}
    with DAG("test_button_not_offered", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        ButtonOperator(task_id="press", lotimage_task_id=parent, button="U1")
    run = run_dag(dag)
    assert ti_state(run, "press") == "failed"
    assert lotimage_emulator.stats()["requests"] == {"imagine": 0, "progress": 0, "button": 0}


def test_unknown_button_rejected_at_parse_time() -> None:
    from airflow_provider_lotimage.exceptions import LotImageInputError
    from airflow_provider_lotimage.operators.button import ButtonOperator

    with pytest.raises(LotImageInputError, match="button 'u1'"):
        ButtonOperator(task_id="b", lotimage_task_id="t", button="u1")


@pytest.mark.parametrize("prompt", ["", "   ", "x" * 4001])
def test_bad_prompt_rejected_at_parse_time(prompt: str) -> None:
    from airflow_provider_lotimage.exceptions import LotImageInputError
    from airflow_provider_lotimage.operators.imagine import ImagineOperator

    with pytest.raises(LotImageInputError, match="prompt"):
        ImagineOperator(task_id="i", prompt=prompt)


def test_templated_prompt_rendering_to_nothing_fails_before_any_call(
    lotimage_connection, lotimage_emulator
) -> None:
    from airflow.sdk import DAG

    from airflow_provider_lotimage.operators.imagine import ImagineOperator

    with DAG("test_empty_template", schedule=None, start_date=datetime(2026, 1, 1), params={"p": ""}) as dag:
        ImagineOperator(task_id="imagine", prompt="{{ params.p }}")
    run = run_dag(dag)
    assert ti_state(run, "imagine") == "failed"
    assert lotimage_emulator.stats()["requests"]["imagine"] == 0


def test_trigger_serialises_to_json_and_imports_from_package() -> None:
    import importlib

    from airflow_provider_lotimage.triggers.task_progress import TaskProgressTrigger

    trigger = TaskProgressTrigger("t-1", "conn", poll_interval=2, end_time=123.0, stall_timeout=60)
    path, kwargs = trigger.serialize()
    module, _, name = path.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    again = cls(**json.loads(json.dumps(kwargs)))
    assert again.serialize() == (path, kwargs)
    assert module == "airflow_provider_lotimage.triggers.task_progress"


def test_retry_reconnects_instead_of_paying_again(lotimage_connection, lotimage_emulator) -> None:
    """The first try gives up waiting (timeout) after submitting; the retry finds the stored taskId.

    The deferrable counterpart (a triggerer killed while the task waits) runs on a real
    deployment in tests/deployment/test_lotimage_deployment.py.
    """
    from datetime import timedelta

    from airflow.sdk import DAG

    from airflow_provider_lotimage.operators.imagine import ImagineOperator

    lotimage_emulator.set_config(time_scale=3.0 / 45.0)  # an imagine takes about 3 s: two 2 s waits
    with DAG("test_retry_reconnect", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        ImagineOperator(
            task_id="imagine",
            prompt="a teapot",
            wait_for_completion=True,
            deferrable=False,
            poll_interval=0.3,
            timeout=2,
            retries=1,
            retry_delay=timedelta(seconds=0),
        )
    run = run_dag(dag)
    ti = run.get_task_instance("imagine")
    assert ti.try_number == 2
    assert run.state == "success"
    assert lotimage_emulator.stats()["submissions"]["imagine"] == 1
    assert xcom(run, "imagine")["progress"] == 100


def test_retry_after_a_stall_submits_afresh(lotimage_connection, lotimage_emulator) -> None:
    from datetime import timedelta

    from airflow.sdk import DAG

    from airflow_provider_lotimage.operators.imagine import ImagineOperator

    lotimage_emulator.add_fault("stall", progress=46, count=1)
    with DAG("test_retry_after_stall", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        ImagineOperator(
            task_id="imagine",
            prompt="a teapot",
            wait_for_completion=True,
            deferrable=False,
            poll_interval=0.3,
            stall_timeout=2,
            retries=1,
            retry_delay=timedelta(seconds=0),
        )
    run = run_dag(dag)
    assert run.state == "success"
    assert lotimage_emulator.stats()["submissions"]["imagine"] == 2


# -- deferral: the sensor's poke before deferring, and the trigger's first-poll hold -------------


class _FakeTI:
    """Just what the operators touch of a task instance before they defer."""

    try_number = 1

    def __init__(self) -> None:
        self.xcoms: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = value


@pytest.mark.parametrize(("first_poll_delay", "expected"), [(None, 2.0 + 5.0), (0, 0.0), (3.5, 3.5)])
def test_operators_and_sensor_hand_the_first_poll_time_to_the_trigger(
    lotimage_connection, lotimage_emulator, monkeypatch, first_poll_delay, expected
) -> None:
    """Computed in the worker at deferral time; the default from its [workers] min_heartbeat_interval."""
    import time

    from airflow.providers.common.compat.sdk import TaskDeferred

    from airflow_provider_lotimage.hooks.lotimage import LotImageHook
    from airflow_provider_lotimage.operators.button import ButtonOperator
    from airflow_provider_lotimage.operators.imagine import ImagineOperator
    from airflow_provider_lotimage.sensors.task_progress import TaskProgressSensor

    monkeypatch.setenv("AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL", "2")
    lotimage_emulator.set_config(time_scale=1.0)  # an imagine takes 45 s: unfinished throughout
    running = LotImageHook().imagine("a slow teapot")
    kwargs = {"deferrable": True, "first_poll_delay": first_poll_delay}
    tasks = [
        (ImagineOperator(task_id="i", prompt="p", wait_for_completion=True, **kwargs), "op"),
        (
            ButtonOperator(
                task_id="b", lotimage_task_id="t", button="U1", wait_for_completion=True, **kwargs
            ),
            "op",
        ),
        (TaskProgressSensor(task_id="s", lotimage_task_id=running, **kwargs), "sensor"),
    ]
    for task, kind in tasks:
        context: Any = {"ti": _FakeTI()}
        before = time.time()
        with pytest.raises(TaskDeferred) as deferred:
            if kind == "op":
                task.poll_until_complete({"lotimage_task_id": running}, context)
            else:
                task.execute(context)
        trigger = deferred.value.trigger
        assert before + expected <= trigger.first_poll_at <= time.time() + expected, task.task_id
        assert trigger.serialize()[1]["first_poll_at"] == trigger.first_poll_at


@pytest.mark.parametrize("bad", [-1, "10", True])
def test_bad_first_poll_delay_rejected_at_parse_time(bad: Any) -> None:
    from airflow_provider_lotimage.exceptions import LotImageInputError
    from airflow_provider_lotimage.operators.imagine import ImagineOperator
    from airflow_provider_lotimage.sensors.task_progress import TaskProgressSensor

    with pytest.raises(LotImageInputError, match="first_poll_delay"):
        ImagineOperator(task_id="i", prompt="p", first_poll_delay=bad)
    with pytest.raises(LotImageInputError, match="first_poll_delay"):
        TaskProgressSensor(task_id="s", lotimage_task_id="t", first_poll_delay=bad)
