"""``dag.test()`` of tasks that would end in the triggerer: a deferrable imagine and a sensor with
``start_from_trigger``, against the emulator.

``dag.test()`` (3.1 to 3.3) has no triggerer: it runs each trigger inline, then resumes the task
on its in-process worker with the event's payload, dropping a ``TaskSuccessEvent``'s XComs. So the
trigger, which sees no ``trigger_id`` there, yields its ordinary event and the task finishes in
``execute_complete``, with the same XComs as when it ends in a triggerer; and the scheduler loop of
``dag.test()`` starts no task from the triggerer (the sensor runs ``execute`` first). These tests
hold that contract (the DAG works, with the XComs downstream tasks need, whichever way it ends);
the real end in the triggerer, without ``execute_complete``, is proven on a deployment
(tests/deployment/test_end_in_triggerer.py).
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

import pytest

from airflow_provider_lotimage.operators.submit import LotImageSubmitOperator
from airflow_provider_lotimage.sensors.task_progress import TaskProgressSensor
from tests.dag_helpers import run_dag


@pytest.fixture(autouse=True)
def _db(airflow_db: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__CORE__MIN_SERIALIZED_DAG_UPDATE_INTERVAL", "0")


@pytest.fixture
def resumed(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Counts ``execute_complete`` calls per task id (dag.test() runs tasks in this process)."""
    calls: Counter[str] = Counter()
    for cls in (LotImageSubmitOperator, TaskProgressSensor):
        original = cls.execute_complete

        def counted(self: Any, context: Any, event: Any, _original: Any = original) -> Any:
            calls[self.task_id] += 1
            return _original(self, context, event)

        monkeypatch.setattr(cls, "execute_complete", counted)
    return calls


def xcom(run: Any, task_id: str, key: str = "return_value") -> Any:
    return run.get_task_instance(task_id).xcom_pull(task_ids=task_id, key=key)


def build_dag(dag_id: str, *, end_from_trigger: bool) -> Any:
    from airflow.sdk import DAG, task

    from airflow_provider_lotimage.operators.imagine import ImagineOperator

    with DAG(dag_id, schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        imagine = ImagineOperator(
            task_id="imagine",
            prompt="a lighthouse made of glass",
            wait_for_completion=True,
            deferrable=True,
            poll_interval=0.3,
            first_poll_delay=0,
            end_from_trigger=end_from_trigger,
        )
        wait = TaskProgressSensor(
            task_id="wait",
            lotimage_task_id="{{ ti.xcom_pull(task_ids='imagine', key='lotimage_task_id', map_indexes=-1) }}",
            deferrable=True,
            start_from_trigger=True,
            end_from_trigger=end_from_trigger,
            poke_interval=0.3,
            timeout=60,
        )

        @task
        def downstream(
            result: dict[str, Any], task_id: str, url: str, seen: dict[str, Any]
        ) -> dict[str, Any]:
            return {"result": result, "task_id": task_id, "url": url, "seen": seen}

        imagine >> wait
        downstream(
            imagine.output,
            "{{ ti.xcom_pull(task_ids='imagine', key='lotimage_task_id') }}",
            "{{ ti.xcom_pull(task_ids='imagine', key='lotimage_image_url') }}",
            wait.output,
        )
    return dag


@pytest.mark.filterwarnings("ignore:.*start_from_trigger=True needs Airflow 3.3")
@pytest.mark.parametrize("end_from_trigger", [True, False], ids=["end in triggerer", "opt-out"])
def test_deferrable_imagine_and_sensor_hand_their_xcoms_downstream(
    lotimage_connection: str, lotimage_emulator: Any, resumed: Counter[str], end_from_trigger: bool
) -> None:
    run = run_dag(build_dag(f"test_end_from_trigger_{end_from_trigger}", end_from_trigger=end_from_trigger))
    assert run.state == "success"
    result = xcom(run, "imagine")
    task_id = result["lotimage_task_id"]
    assert result["image_url"].startswith("http") and result["progress"] == 100
    assert xcom(run, "imagine", "lotimage_task_id") == task_id
    assert xcom(run, "imagine", "lotimage_image_url") == result["image_url"]
    assert xcom(run, "wait") == result
    assert xcom(run, "wait", "lotimage_image_url") == result["image_url"]
    assert xcom(run, "downstream") == {
        "result": result,
        "task_id": task_id,
        "url": result["image_url"],
        "seen": result,
    }
    assert lotimage_emulator.stats()["submissions"]["imagine"] == 1  # one paid imagine
    # dag.test() resumes the deferred imagine in execute_complete whatever the option (see above);
    # the sensor finds the picture ready at its first poke and never defers.
    assert resumed == Counter({"imagine": 1})
