"""What the operators and the sensor hand their trigger: ending in the triggerer, start_from_trigger,
adaptive polling; and the sensor's pokes that read only when a read is due."""

from __future__ import annotations

import json
import warnings
from datetime import timedelta
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import TaskDeferred

from airflow_provider_lotimage.exceptions import LotImageInputError
from airflow_provider_lotimage.hooks.lotimage import LotImageHook
from airflow_provider_lotimage.operators.button import ButtonOperator
from airflow_provider_lotimage.operators.imagine import ImagineOperator
from airflow_provider_lotimage.sensors.task_progress import TaskProgressSensor
from airflow_provider_lotimage.triggers.task_progress import TaskProgressTrigger
from airflow_provider_lotimage.version_compat import HAS_START_FROM_TRIGGER


class _FakeTI:
    """Just what the tasks touch of a task instance before they defer."""

    try_number = 1

    def __init__(self) -> None:
        self.xcoms: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = value


def deferred_trigger(task: Any, running: str) -> TaskProgressTrigger:
    with pytest.raises(TaskDeferred) as deferred:
        if isinstance(task, TaskProgressSensor):
            task.execute({"ti": _FakeTI()})
        else:
            task.poll_until_complete({"lotimage_task_id": running}, {"ti": _FakeTI()})
    trigger = deferred.value.trigger
    assert isinstance(trigger, TaskProgressTrigger)
    json.dumps(trigger.serialize()[1])  # JSON only
    return trigger


@pytest.fixture
def running(lotimage_connection: str, lotimage_emulator: Any) -> str:
    lotimage_emulator.set_config(time_scale=1.0)  # an imagine takes 45 s: unfinished throughout
    return LotImageHook().imagine("a slow teapot")


def imagine(**kwargs: Any) -> ImagineOperator:
    return ImagineOperator(task_id="i", prompt="p", wait_for_completion=True, deferrable=True, **kwargs)


def test_imagine_ends_in_the_triggerer_by_default(running: str) -> None:
    trigger = deferred_trigger(imagine(), running)
    assert trigger.end_from_trigger is True
    assert (trigger.push_task_id, trigger.push_return_value) == (True, True)
    # The records the task releases when it succeeds, released by the trigger instead.
    assert trigger.release_keys == ["lotimage_task"]
    assert (trigger.kind, trigger.adaptive_polling) == ("imagine", True)


def test_button_passes_its_kind_and_the_opt_outs(running: str) -> None:
    upscale = ButtonOperator(
        task_id="b",
        lotimage_task_id="t",
        button="U2",
        wait_for_completion=True,
        deferrable=True,
        end_from_trigger=False,
        adaptive_polling=False,
        do_xcom_push=False,
    )
    trigger = deferred_trigger(upscale, running)
    assert (trigger.kind, trigger.adaptive_polling, trigger.end_from_trigger) == ("upscale", False, False)
    assert trigger.release_keys == [] and trigger.push_return_value is False
    variation = ButtonOperator(task_id="v", lotimage_task_id="t", button="V1", wait_for_completion=True)
    assert variation.task_kind() == "variation"


@pytest.mark.parametrize(
    "worker_only",
    [{"on_success_callback": lambda context: None}, {"outlets": []}, {"end_from_trigger": False}],
    ids=["on_success_callback", "no outlets", "opt-out"],
)
def test_what_only_a_worker_runs_keeps_the_end_on_a_worker(running: str, worker_only: dict[str, Any]) -> None:
    trigger = deferred_trigger(imagine(**worker_only), running)
    # Empty outlets run nothing on a worker: they do not keep the task there.
    assert trigger.end_from_trigger is (worker_only == {"outlets": []})


def test_task_listeners_keep_the_default_end_on_a_worker(running: str) -> None:
    """Airflow refuses ``end_from_trigger=True`` with listeners; the default then ends on a worker."""
    from airflow_provider_lotimage.version_compat import AIRFLOW_V_3_2_PLUS, has_task_listeners

    if AIRFLOW_V_3_2_PLUS:
        from airflow.sdk.listener import get_listener_manager
    else:
        from airflow.listeners.listener import get_listener_manager

    manager = get_listener_manager()
    assert not has_task_listeners()
    manager.add_listener(object())
    try:
        assert deferred_trigger(imagine(), running).end_from_trigger is False
        assert deferred_trigger(imagine(end_from_trigger=True), running).end_from_trigger is True
    finally:
        manager.clear()
    assert deferred_trigger(imagine(), running).end_from_trigger is True


def test_outlets_keep_the_end_on_a_worker(running: str) -> None:
    from airflow.sdk import Asset

    trigger = deferred_trigger(imagine(outlets=[Asset("lotimage://pictures")]), running)
    assert trigger.end_from_trigger is False and trigger.release_keys == []


def test_budget_claim_is_released_by_the_trigger_too(running: str) -> None:
    task = imagine()
    task._budget = object()  # type: ignore[assignment]  # a run with max_paid_tasks_per_run
    assert deferred_trigger(task, running).release_keys == ["lotimage_task", "lotimage_paid_tasks"]


def test_sensor_defers_from_a_worker_ending_in_the_triggerer(running: str) -> None:
    sensor = TaskProgressSensor(task_id="s", lotimage_task_id=running, deferrable=True, poke_interval=5)
    trigger = deferred_trigger(sensor, running)
    assert trigger.end_from_trigger is True and trigger.push_task_id is False
    assert trigger.release_keys == [] and trigger.kind is None
    assert sensor.start_from_trigger is False


def _sensor(**kwargs: Any) -> TaskProgressSensor:
    return TaskProgressSensor(task_id="s", deferrable=True, poke_interval=4, timeout=120, **kwargs)


def test_start_from_trigger_gives_the_scheduler_fixed_json_kwargs() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sensor = _sensor(lotimage_task_id="{{ ti.xcom_pull('imagine') }}", start_from_trigger=True)
    if not HAS_START_FROM_TRIGGER:
        assert sensor.start_from_trigger is False
        assert any("needs Airflow 3.3" in str(w.message) for w in caught), caught
        return
    assert sensor.start_from_trigger is True and not caught
    args = sensor.start_trigger_args
    assert args.trigger_cls == "airflow_provider_lotimage.triggers.task_progress.TaskProgressTrigger"
    assert args.next_method == "execute_complete" and args.timeout == timedelta(seconds=120)
    kwargs = args.trigger_kwargs
    assert kwargs == json.loads(json.dumps(kwargs))
    assert kwargs["lotimage_task_id"] == "{{ ti.xcom_pull('imagine') }}"  # rendered by the triggerer
    assert kwargs["first_poll_at"] == 0.0 and kwargs["end_time"] is None and "started_at" not in kwargs
    assert kwargs["end_from_trigger"] is True and kwargs["poll_interval"] == 4.0
    # Parsing again gives the same kwargs: the serialized DAG does not change from parse to parse.
    again = _sensor(lotimage_task_id="{{ ti.xcom_pull('imagine') }}", start_from_trigger=True)
    assert again.start_trigger_args == args
    # The class attribute stays as it was for every other sensor.
    assert TaskProgressSensor.start_trigger_args.trigger_kwargs == {}
    trigger = TaskProgressTrigger(**kwargs)
    assert trigger.end_from_trigger is True and trigger.first_poll_at == 0.0


def test_start_from_trigger_needs_deferrable() -> None:
    with pytest.raises(LotImageInputError, match="needs deferrable=True"):
        TaskProgressSensor(task_id="s", lotimage_task_id="t", deferrable=False, start_from_trigger=True)


def test_start_from_trigger_with_an_xcomarg_falls_back_to_the_worker() -> None:
    from airflow.sdk import DAG

    with DAG("test_start_from_trigger_xcomarg", schedule=None):
        submit = ImagineOperator(task_id="imagine", prompt="p")
        with pytest.warns(UserWarning, match="start_from_trigger=True needs"):
            sensor = _sensor(lotimage_task_id=submit.output, start_from_trigger=True)
    assert sensor.start_from_trigger is False


def test_poke_reads_only_when_a_read_is_due(lotimage_connection: str, lotimage_emulator: Any) -> None:
    lotimage_emulator.set_config(time_scale=1.0)
    task_id = LotImageHook().imagine("a slow teapot")
    sensor = TaskProgressSensor(task_id="s", lotimage_task_id=task_id, poke_interval=5)
    context: Any = {"ti": _FakeTI()}
    before = lotimage_emulator.stats()["requests"]["progress"]
    assert sensor.poke(context) is False  # the first poke always reads
    assert lotimage_emulator.stats()["requests"]["progress"] == before + 1
    assert sensor.poke(context) is False  # at once again: nothing due, no call
    assert lotimage_emulator.stats()["requests"]["progress"] == before + 1


def test_poke_without_adaptive_polling_reads_every_poke_interval(
    lotimage_connection: str, lotimage_emulator: Any
) -> None:
    lotimage_emulator.set_config(time_scale=1.0)
    task_id = LotImageHook().imagine("a slow teapot")
    sensor = TaskProgressSensor(
        task_id="s", lotimage_task_id=task_id, poke_interval=0.2, adaptive_polling=False
    )
    context: Any = {"ti": _FakeTI()}
    before = lotimage_emulator.stats()["requests"]["progress"]
    assert sensor.poke(context) is False
    import time

    time.sleep(0.25)
    assert sensor.poke(context) is False
    assert lotimage_emulator.stats()["requests"]["progress"] == before + 2
    assert sensor._watch is not None and sensor._watch.adaptive is False
