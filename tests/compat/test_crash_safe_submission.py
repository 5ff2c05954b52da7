"""Crash-safe submission and the reschedule stall watch on every supported Airflow version.

On Airflow 3.3 the records live in the task state store; below 3.3 in Variables
(``airflow_provider_lotimage.utils.task_state``). The DAGs and the promises are the same on every
version: one paid imagine however often the wait fails, a stall detected across reschedules.
What differs is only where the record lives and when it is deleted, which each test checks for
the version it runs on.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

from airflow_provider_lotimage.version_compat import HAS_TASK_STATE_STORE
from tests.compat.records import durable_record, leftover_variables, store_record
from tests.dag_helpers import run_dag

SUBMITTED = "lotimage_task"
WATCH = "lotimage_progress_watch"
START = datetime(2026, 1, 1)


def _recorder(seen: list[Any], key: str):
    """A task callback that notes what the task instance keeps under ``key`` at that moment.

    Used as ``on_execute_callback``: on Airflow 3.3 an ``on_retry_callback`` cannot read the store,
    the try it runs for has already been archived under another task instance id.
    """

    def record(context: Any) -> None:
        from airflow_provider_lotimage.utils.task_state import task_state

        store = task_state(context)
        seen.append(None if store is None else store.get(key))

    return record


def _assert_released(run: Any, task_id: str, key: str) -> None:
    """The task is over: below 3.3 its Variable is gone; on 3.3 the store keeps it, as always."""
    assert leftover_variables(run, task_id, SUBMITTED, WATCH) == {}
    if HAS_TASK_STATE_STORE:
        assert store_record(run.dag_id, run.run_id, task_id, key) is not None


def _retried_imagine_dag(dag_id: str, seen_at_start: list[Any], **waiting: Any) -> Any:
    """One waiting ImagineOperator with one retry, noting its record as each try starts."""
    from airflow.sdk import DAG

    from airflow_provider_lotimage.operators.imagine import ImagineOperator

    with DAG(dag_id, schedule=None, start_date=START) as dag:
        ImagineOperator(
            task_id="imagine",
            prompt="a teapot",
            wait_for_completion=True,
            deferrable=False,
            poll_interval=0.3,
            retries=1,
            retry_delay=timedelta(seconds=0),
            on_execute_callback=_recorder(seen_at_start, SUBMITTED),
            **waiting,
        )
    return dag


def test_wait_failing_after_submit_reconnects_on_retry(lotimage_connection, lotimage_emulator) -> None:
    """The first try's wait fails after the submit (a progress read slower than the timeout).

    The retry finds the stored taskId, sees the task still running and waits for it: one paid
    imagine. Below 3.3 that record is a Variable; it is gone once the task succeeded.
    """

    lotimage_emulator.set_config(time_scale=6.0 / 45.0)  # an imagine takes about 6 s
    lotimage_emulator.add_fault("delay", endpoint="progress", seconds=4, count=1)
    seen_at_start: list[Any] = []
    run = run_dag(_retried_imagine_dag("compat_crash_reconnect", seen_at_start, timeout=3))
    assert run.state == "success"
    ti = run.get_task_instance("imagine")
    assert ti.try_number == 2
    stats = lotimage_emulator.stats()
    assert stats["submissions"]["imagine"] == 1, stats
    result = ti.xcom_pull(task_ids="imagine")
    assert result["progress"] == 100
    # Written before the wait, so there when the second try starts; not given up on.
    first, record = seen_at_start
    assert first is None
    assert record["lotimage_task_id"] == result["lotimage_task_id"]
    assert not record.get("abandoned")
    _assert_released(run, "imagine", SUBMITTED)


def test_record_is_written_before_deferring_and_released_after(
    lotimage_connection, lotimage_emulator
) -> None:
    """Deferrable and fire-and-forget submits: one paid task each, no Variable left behind."""
    from airflow.sdk import DAG

    from airflow_provider_lotimage.operators.imagine import ImagineOperator

    with DAG("compat_release_after_success", schedule=None, start_date=START) as dag:
        ImagineOperator(task_id="submit_only", prompt="a teapot")
        ImagineOperator(
            task_id="deferred",
            prompt="a kettle",
            wait_for_completion=True,
            deferrable=True,
            poll_interval=0.3,
        )
    run = run_dag(dag)
    assert run.state == "success"
    assert lotimage_emulator.stats()["submissions"]["imagine"] == 2
    for task_id in ("submit_only", "deferred"):
        _assert_released(run, task_id, SUBMITTED)
    if HAS_TASK_STATE_STORE:
        stored = durable_record(run, "deferred", SUBMITTED)
        assert stored["lotimage_task_id"] == run.get_task_instance("deferred").xcom_pull(
            task_ids="deferred", key="lotimage_task_id"
        )


def test_stalled_task_is_abandoned_and_the_retry_pays_afresh(lotimage_connection, lotimage_emulator) -> None:
    """A stall marks the record abandoned: the retry submits a new task instead of reconnecting."""

    lotimage_emulator.add_fault("stall", progress=46, count=1)
    seen_at_start: list[Any] = []
    run = run_dag(_retried_imagine_dag("compat_stall_abandons", seen_at_start, stall_timeout=2))
    assert run.state == "success"
    assert lotimage_emulator.stats()["submissions"]["imagine"] == 2
    first, record = seen_at_start
    assert first is None
    assert record["abandoned"] is True
    assert (
        record["lotimage_task_id"]
        != run.get_task_instance("imagine").xcom_pull(task_ids="imagine")["lotimage_task_id"]
    )
    _assert_released(run, "imagine", SUBMITTED)


def test_reschedule_sensor_detects_a_stall_across_pokes(lotimage_connection, lotimage_emulator) -> None:
    """Every poke runs in a new process; the watch carried between them is what sees the stall.

    Without it each poke would start a new watch, never see 2 s without progress, and the sensor
    would only fail at its 60 s timeout.
    """
    from airflow.sdk import DAG

    from airflow_provider_lotimage.operators.imagine import ImagineOperator
    from airflow_provider_lotimage.sensors.task_progress import TaskProgressSensor

    lotimage_emulator.add_fault("stall", progress=93)
    errors: list[str] = []
    with DAG("compat_reschedule_stall", schedule=None, start_date=START) as dag:
        imagine = ImagineOperator(task_id="imagine", prompt="a teapot")
        TaskProgressSensor(
            task_id="wait",
            lotimage_task_id=imagine.output,
            poke_interval=0.3,
            stall_timeout=2,
            timeout=60,
            mode="reschedule",
            on_failure_callback=lambda context: errors.append(repr(context.get("exception"))),
        )
    started = time.monotonic()
    run = run_dag(dag)
    elapsed = time.monotonic() - started
    assert run.get_task_instance("wait").state == "failed"
    assert len(errors) == 1 and "stalled at 93%" in errors[0], errors
    assert elapsed < 45, f"took {elapsed:.0f} s: the stall was not seen before the sensor's timeout"
    assert lotimage_emulator.stats()["requests"]["progress"] >= 2  # two pokes at least, one watch
    _assert_released(run, "wait", WATCH)


def test_reschedule_sensor_that_succeeds_leaves_no_watch(lotimage_connection, lotimage_emulator) -> None:
    from airflow.sdk import DAG

    from airflow_provider_lotimage.operators.imagine import ImagineOperator
    from airflow_provider_lotimage.sensors.task_progress import TaskProgressSensor

    with DAG("compat_reschedule_success", schedule=None, start_date=START) as dag:
        imagine = ImagineOperator(task_id="imagine", prompt="a teapot")
        TaskProgressSensor(
            task_id="wait", lotimage_task_id=imagine.output, poke_interval=0.3, mode="reschedule", timeout=60
        )
    run = run_dag(dag)
    assert run.state == "success"
    assert run.get_task_instance("wait").xcom_pull(task_ids="wait")["progress"] == 100
    _assert_released(run, "wait", WATCH)
