"""TaskProgressSensor in real DAG runs: poke, reschedule and deferrable, finished, failed and stalled."""

from __future__ import annotations

from datetime import datetime

import pytest

from tests.dag_helpers import EXPECTED_KEYS, run_dag, ti_state, xcom


@pytest.fixture(autouse=True)
def _db(airflow_db: None) -> None:
    return None


@pytest.mark.parametrize("mode", ["poke", "reschedule"])
def test_sensor_waits_and_returns_result(lotimage_connection, lotimage_emulator, mode: str) -> None:
    from airflow.sdk import DAG

    from airflow_provider_lotimage.operators.imagine import ImagineOperator
    from airflow_provider_lotimage.sensors.task_progress import TaskProgressSensor

    with DAG(f"test_sensor_{mode}", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        imagine = ImagineOperator(task_id="imagine", prompt="a teapot in space", cutting=True)
        TaskProgressSensor(
            task_id="wait", lotimage_task_id=imagine.output, poke_interval=0.3, mode=mode, timeout=60
        )
    run = run_dag(dag)
    assert run.state == "success"
    result = xcom(run, "wait")
    assert set(result) == EXPECTED_KEYS
    assert result["lotimage_task_id"] == xcom(run, "imagine")
    assert result["progress"] == 100 and len(result["image_urls"]) == 4
    assert xcom(run, "wait", "lotimage_image_url") == result["image_url"]
    assert lotimage_emulator.stats()["submissions"]["imagine"] == 1


def test_sensor_fails_at_once_with_the_service_reason(lotimage_connection, lotimage_emulator) -> None:
    from airflow.sdk import DAG

    from airflow_provider_lotimage.operators.imagine import ImagineOperator
    from airflow_provider_lotimage.sensors.task_progress import TaskProgressSensor

    lotimage_emulator.add_fault("fail_task", err_message="Banned prompt detected", progress=15)
    with DAG("test_sensor_failed", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        imagine = ImagineOperator(task_id="imagine", prompt="a teapot")
        TaskProgressSensor(task_id="wait", lotimage_task_id=imagine.output, poke_interval=0.3, timeout=60)
    run = run_dag(dag)
    assert run.state == "failed"
    assert ti_state(run, "wait") == "failed"


def test_sensor_fails_on_stall(lotimage_connection, lotimage_emulator) -> None:
    from airflow.sdk import DAG

    from airflow_provider_lotimage.operators.imagine import ImagineOperator
    from airflow_provider_lotimage.sensors.task_progress import TaskProgressSensor

    lotimage_emulator.add_fault("stall", progress=93)
    with DAG("test_sensor_stall", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        imagine = ImagineOperator(task_id="imagine", prompt="a teapot")
        TaskProgressSensor(
            task_id="wait",
            lotimage_task_id=imagine.output,
            poke_interval=0.3,
            stall_timeout=2,
            timeout=60,
            mode="reschedule",
        )
    run = run_dag(dag)
    assert ti_state(run, "wait") == "failed"


def test_deferrable_sensor_on_a_finished_task_returns_without_deferring(
    lotimage_connection, lotimage_emulator
) -> None:
    """One read in the worker, no trigger: a finished task is never deferred on (nothing to race)."""
    from airflow.sdk import DAG

    from airflow_provider_lotimage.hooks.lotimage import LotImageHook
    from airflow_provider_lotimage.sensors.task_progress import TaskProgressSensor

    hook = LotImageHook()
    task_id = hook.imagine("a finished teapot", cutting=True)
    hook.wait_for_task(task_id, poll_interval=0.2, timeout=30)
    reads_before = lotimage_emulator.stats()["requests"]["progress"]
    with DAG("test_sensor_deferrable_finished", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        TaskProgressSensor(task_id="wait", lotimage_task_id=task_id, deferrable=True, poke_interval=0.3)
    run = run_dag(dag)
    assert run.state == "success"
    result = xcom(run, "wait")
    assert set(result) == EXPECTED_KEYS and result["lotimage_task_id"] == task_id
    assert xcom(run, "wait", "lotimage_image_url") == result["image_url"]
    assert lotimage_emulator.stats()["requests"]["progress"] - reads_before == 1


def test_deferrable_sensor_on_an_unfinished_task_defers_and_succeeds(
    lotimage_connection, lotimage_emulator
) -> None:
    from airflow.sdk import DAG

    from airflow_provider_lotimage.operators.imagine import ImagineOperator
    from airflow_provider_lotimage.sensors.task_progress import TaskProgressSensor

    with DAG("test_sensor_deferrable_unfinished", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        imagine = ImagineOperator(task_id="imagine", prompt="a teapot in space")
        TaskProgressSensor(
            task_id="wait", lotimage_task_id=imagine.output, deferrable=True, poke_interval=0.3
        )
    run = run_dag(dag)
    assert run.state == "success"
    assert xcom(run, "wait")["lotimage_task_id"] == xcom(run, "imagine")
    # The poke saw an unfinished task, the trigger read it again (at least once) until done.
    assert lotimage_emulator.stats()["requests"]["progress"] >= 2
    assert lotimage_emulator.stats()["submissions"]["imagine"] == 1
