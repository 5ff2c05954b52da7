"""TaskProgressTrigger ending its task in the triggerer (``end_from_trigger``), against the emulator.

Run as a triggerer runs it (``trigger_id`` and ``task_instance`` set), a finished task stores the
XComs a worker's ``execute_complete`` would push (through the Task SDK's ``XCom.set``, captured
here) and yields Airflow's ``TaskSuccessEvent``; errors, timeouts, an opt-out, and an inline run
(``dag.test()``: no ``trigger_id``) yield the ordinary event. The crash-safety Variables a trigger
deletes below Airflow 3.3 are deleted through the Task SDK's comms, here the in-process ones of
``dag.test()``, before the event. The real triggerer: tests/deployment/test_end_in_triggerer.py.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import time
import uuid
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.triggers.base import TaskSuccessEvent

from airflow_provider_lotimage.exceptions import LotImageInputError
from airflow_provider_lotimage.hooks.lotimage import LotImageHook
from airflow_provider_lotimage.links import LotImagePictureLink
from airflow_provider_lotimage.triggers import task_progress
from airflow_provider_lotimage.triggers.task_progress import TaskProgressTrigger
from airflow_provider_lotimage.utils.deferral import result_from_event

PAST = 0.0  # first_poll_at in the past: read at once


def finished_task() -> str:
    hook = LotImageHook()
    task_id = hook.imagine("a lighthouse made of glass")
    hook.wait_for_task(task_id, poll_interval=0.2, timeout=30, adaptive=False)
    return task_id


def _ti(run_id: str = "r") -> SimpleNamespace:
    """What the triggerer gives a trigger as ``task_instance`` (the workload's TI) that matters here."""
    return SimpleNamespace(dag_id="d", run_id=run_id, task_id="imagine", map_index=-1, try_number=1)


def in_triggerer(trigger: TaskProgressTrigger, ti: Any = None) -> TaskProgressTrigger:
    trigger.trigger_id = 42  # what the triggerer sets: the trigger's row id
    trigger.task_instance = ti or _ti()  # and the task instance it waits for
    return trigger


LINK_KEY = LotImagePictureLink().xcom_key


@pytest.fixture(autouse=True)
def stored(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The XComs the trigger writes through the Task SDK, by key (one task instance here)."""
    from airflow.providers.common.compat.sdk import XCom

    xcoms: dict[str, Any] = {}

    def capture(cls: Any, key: str, value: Any, **where: Any) -> None:
        assert where == {"dag_id": "d", "task_id": "imagine", "run_id": where["run_id"], "map_index": -1}
        xcoms[key] = value

    def read(cls: Any, *, ti_key: Any, key: str) -> Any:
        return xcoms.get(key)

    monkeypatch.setattr(XCom, "set", classmethod(capture))
    monkeypatch.setattr(XCom, "get_value", classmethod(read))
    return xcoms


def first_event(trigger: TaskProgressTrigger) -> Any:
    return asyncio.run(anext(trigger.run()))


def reads(emulator: Any) -> int:
    return int(emulator.stats()["requests"]["progress"])


def ending(task_id: str, **kwargs: Any) -> TaskProgressTrigger:
    options = {"poll_interval": 0.2, "first_poll_at": PAST, "end_from_trigger": True, **kwargs}
    return in_triggerer(TaskProgressTrigger(task_id, **options))


def test_serialize_round_trip_is_json_only() -> None:
    trigger = TaskProgressTrigger(
        "t-1",
        "conn",
        poll_interval=3,
        end_time=time.time() + 60,
        first_poll_at=PAST,
        end_from_trigger=True,
        release_keys=("lotimage_task", "lotimage_paid_tasks"),
        push_return_value=False,
        push_task_id=True,
        kind="upscale",
        adaptive_polling=False,
    )
    path, kwargs = trigger.serialize()
    text = json.dumps(kwargs)  # raises on anything but JSON
    module, _, name = path.rpartition(".")
    again = getattr(importlib.import_module(module), name)(**json.loads(text))
    assert again.serialize() == (path, kwargs)
    assert kwargs["release_keys"] == ["lotimage_task", "lotimage_paid_tasks"]
    assert (kwargs["kind"], kwargs["adaptive_polling"], kwargs["end_from_trigger"]) == (
        "upscale",
        False,
        True,
    )


def test_a_trigger_serialized_before_the_option_resumes_on_a_worker() -> None:
    """Triggers stored by an earlier release of the provider have none of the new kwargs."""
    old = {"lotimage_task_id": "t-1", "lotimage_conn_id": "c", "poll_interval": 10.0, "end_time": None,
           "stall_timeout": 900.0, "started_at": time.time(), "first_poll_at": PAST}  # fmt: skip
    trigger = TaskProgressTrigger(**old)
    assert trigger.end_from_trigger is False
    assert trigger.adaptive_polling is True and trigger.kind is None


def test_success_ends_the_task_with_the_xcoms_of_a_worker(
    lotimage_connection: str, lotimage_emulator: Any, stored: dict[str, Any]
) -> None:
    task_id = finished_task()
    event = first_event(ending(task_id, push_task_id=True))
    assert isinstance(event, TaskSuccessEvent), event
    # Not the event's xcoms: the triggerer would store them JSON-encoded once more.
    assert event.xcoms is None
    result = stored["return_value"]
    assert result["lotimage_task_id"] == task_id and result["image_url"].startswith("http")
    # The extra link a worker stores when the task ends, as the link computes it from the XComs.
    assert stored[LINK_KEY] and stored.pop(LINK_KEY) == LotImagePictureLink().get_link(None, ti_key=_ti())
    assert stored == {
        "return_value": result,
        "lotimage_task_id": task_id,
        "lotimage_image_url": result["image_url"],
    }
    assert result == LotImageHook().get_task_progress(task_id).to_result()


def test_the_finish_is_logged_as_a_worker_logs_it(
    lotimage_connection: str, lotimage_emulator: Any, caplog: pytest.LogCaptureFixture
) -> None:
    task_id = finished_task()
    trigger = ending(task_id)
    logged: list[str] = []
    trigger.log.info = lambda msg, *args, **_: logged.append(msg % args)  # type: ignore[method-assign]
    assert isinstance(first_event(trigger), TaskSuccessEvent)
    assert any(line.startswith(f"LotImage task {task_id} finished: http") for line in logged), logged


def test_xcoms_follow_do_xcom_push_and_the_task_kind(
    lotimage_connection: str, lotimage_emulator: Any, stored: dict[str, Any]
) -> None:
    task_id = finished_task()
    event = first_event(ending(task_id, push_return_value=False, push_task_id=False))
    assert isinstance(event, TaskSuccessEvent)
    assert set(stored) == {"lotimage_image_url", LINK_KEY}


def test_opted_out_trigger_yields_the_ordinary_event(
    lotimage_connection: str, lotimage_emulator: Any
) -> None:
    task_id = finished_task()
    event = first_event(ending(task_id, end_from_trigger=False))
    assert not isinstance(event, TaskSuccessEvent)
    assert event.payload["status"] == "success"
    assert result_from_event(event.payload)["lotimage_task_id"] == task_id


def test_inline_run_resumes_the_task_as_dag_test_needs(
    lotimage_connection: str, lotimage_emulator: Any
) -> None:
    """dag.test() resumes every trigger's task with the payload and drops a TaskSuccessEvent's XComs."""
    task_id = finished_task()
    trigger = TaskProgressTrigger(task_id, poll_interval=0.2, end_from_trigger=True)
    assert trigger.trigger_id is None
    event = first_event(trigger)
    assert not isinstance(event, TaskSuccessEvent)
    assert event.payload["status"] == "success"


def test_errors_and_timeouts_still_resume_on_a_worker(
    lotimage_connection: str, lotimage_emulator: Any
) -> None:
    missing = first_event(ending("no-such-task"))
    assert missing.payload["status"] == "error" and missing.payload["error_type"] == "TaskNotFoundError"

    lotimage_emulator.set_config(time_scale=1.0)  # an imagine takes 45 s: unfinished throughout
    slow = LotImageHook().imagine("a slow teapot")
    now = time.time()
    late = first_event(ending(slow, end_time=now + 0.3, started_at=now))
    assert late.payload["status"] == "timeout", late.payload


def test_a_bad_task_id_is_a_clear_error_without_any_read(
    lotimage_connection: str, lotimage_emulator: Any
) -> None:
    """A sensor started from the triggerer gets its taskId rendered there: the trigger checks it."""
    before = reads(lotimage_emulator)
    event = first_event(ending("   "))
    assert event.payload["status"] == "error" and event.payload["error_type"] == "LotImageInputError"
    with pytest.raises(LotImageInputError, match="lotimage_task_id must be a non-empty"):
        result_from_event(event.payload)
    assert reads(lotimage_emulator) == before


def test_a_rendered_task_id_is_stripped(
    lotimage_connection: str, lotimage_emulator: Any, stored: dict[str, Any]
) -> None:
    task_id = finished_task()
    event = first_event(ending(f"  {task_id}\n", push_task_id=True))
    assert isinstance(event, TaskSuccessEvent)
    assert stored["lotimage_task_id"] == task_id


def _run_with_sdk_comms(trigger: TaskProgressTrigger) -> Any:
    """Run the trigger with the Task SDK's in-process comms (Variables through the API, not the DB)."""
    from airflow.sdk.execution_time.supervisor import InProcessTestSupervisor

    return InProcessTestSupervisor.run_trigger_in_process(
        trigger=trigger, ti=SimpleNamespace(id=uuid.uuid4())
    )


@pytest.mark.parametrize("variables", [True, False], ids=["variables below 3.3", "state store 3.3"])
def test_records_are_released_before_the_task_ends(
    airflow_db: None, lotimage_connection: str, lotimage_emulator: Any, monkeypatch: pytest.MonkeyPatch,
    variables: bool,
) -> None:  # fmt: skip
    """Below 3.3 the records are Variables, deleted through the comms; on 3.3 Airflow keeps them."""
    from airflow.models.variable import Variable

    from airflow_provider_lotimage.utils import task_state

    monkeypatch.setattr(task_state, "HAS_TASK_STATE_STORE", not variables)
    ti = _ti(f"run-{uuid.uuid4().hex}")
    records = task_state.VariableTaskState(dag_id=ti.dag_id, run_id=ti.run_id, task_id=ti.task_id)
    names = [records.variable_key(key) for key in ("lotimage_task", "lotimage_paid_tasks")]
    for name in names:
        Variable.set(name, {"lotimage_task_id": "x"}, serialize_json=True)
    task_id = finished_task()
    trigger = in_triggerer(ending(task_id, release_keys=["lotimage_task", "lotimage_paid_tasks"]), ti)
    event = _run_with_sdk_comms(trigger)
    assert isinstance(event, TaskSuccessEvent), event
    left = [Variable.get(name, default_var=None, deserialize_json=True) for name in names]
    assert left == ([None, None] if variables else [{"lotimage_task_id": "x"}] * 2)


def test_records_that_cannot_be_released_leave_the_end_to_the_worker(
    lotimage_connection: str, lotimage_emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(context: Any, key: str) -> None:
        raise RuntimeError("API server unreachable")

    monkeypatch.setattr(task_progress, "release", refuse)
    task_id = finished_task()
    event = first_event(ending(task_id, release_keys=["lotimage_task"]))
    assert not isinstance(event, TaskSuccessEvent)
    assert result_from_event(event.payload)["lotimage_task_id"] == task_id


def test_no_task_instance_to_finish_leaves_the_end_to_the_worker(
    lotimage_connection: str, lotimage_emulator: Any
) -> None:
    task_id = finished_task()
    trigger = ending(task_id, release_keys=["lotimage_task"])
    trigger._task_instance = None  # the setter would not take None
    event = first_event(trigger)
    assert not isinstance(event, TaskSuccessEvent)
    assert event.payload["status"] == "success"
