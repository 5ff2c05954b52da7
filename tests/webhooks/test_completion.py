"""Webhook completion end to end: the emulator delivers to Airflow's api-server, the trigger reads once.

``dag.test()`` runs each deferrable wait's trigger in the test process; the emulator POSTs each
finished task to the route on the api-server app (served on loopback), which records it in Redis,
where the trigger's listener finds it. Reads are counted by the emulator. The polling fallback
runs underneath with ``poll_interval`` 0.5 s, so its reads come at most 6 s apart
(``MAX_POLL_FACTOR`` x ``WEBHOOK_FALLBACK_FACTOR``): a lost delivery costs seconds here.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from airflow_provider_lotimage.client.webhook import token_key, webhook_url
from tests.dag_helpers import run_dag, xcom

from .conftest import ServedApp

PROMPT = "A lighthouse made of glass at dusk"


@pytest.fixture
def emulator(
    lotimage_emulator_factory: Callable[..., Any], monkeypatch: pytest.MonkeyPatch, api_server: ServedApp
) -> Any:
    """An emulator whose imagine takes about 2 s; ``lotimage_default`` points at it, with webhooks on."""
    from lotimage_emulator.pytest_plugin import TEST_API_KEY

    emulator = lotimage_emulator_factory(time_scale=2.0 / 45.0)
    extra = {"webhook_base_url": api_server.url}
    conn = {"conn_type": "lotimage", "host": emulator.url, "password": TEST_API_KEY, "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_LOTIMAGE_DEFAULT", json.dumps(conn))
    return emulator


def imagine_dag(**wait: Any) -> Any:
    from airflow.sdk import DAG

    from airflow_provider_lotimage.operators.imagine import ImagineOperator

    with DAG(f"webhook_{uuid.uuid4().hex[:8]}", schedule=None) as dag:
        ImagineOperator(
            task_id="imagine",
            prompt=PROMPT,
            wait_for_completion=True,
            deferrable=True,
            poll_interval=0.5,
            timeout=60,
            **wait,
        )
    return dag


def progress_reads(emulator: Any) -> int:
    return int(emulator.stats()["requests"].get("progress", 0))


def deliveries(emulator: Any, *, at_least: int = 1, within: float = 15.0) -> list[dict[str, Any]]:
    """The emulator's webhook POSTs, once at least ``at_least`` were made."""
    deadline = time.monotonic() + within
    while len(log := emulator.webhook_log()) < at_least and time.monotonic() < deadline:
        time.sleep(0.1)
    return log


def test_a_delivered_task_is_read_once_and_at_once(
    emulator: Any,
    api_server: ServedApp,
    redis_client: Any,
    minted: list[str],
    capfd: pytest.CaptureFixture[str],
) -> None:
    run = run_dag(imagine_dag())
    assert "success" in str(run.state).lower()
    result = xcom(run, "imagine")
    assert result["progress"] == 100
    # One webhook URL, on the api-server, with the minted token; its delivery was accepted.
    assert len(minted) == 1
    [task] = emulator.tasks()
    assert task["webhook"] == webhook_url(api_server.url, minted[0])
    [sent] = deliveries(emulator)
    assert sent["status"] == 204 and sent["taskId"] == result["lotimage_task_id"]
    assert progress_reads(emulator) == 1
    # Acted on at once: the task ended within about a second of the delivery.
    ti = run.get_task_instance("imagine")
    assert ti.end_date.timestamp() - sent["sent_at"] < 1.5, (ti.end_date.timestamp(), sent)
    # The token is never shown, and is useless now that the wait ended.
    out = capfd.readouterr()
    assert minted[0] not in out.out + out.err
    assert "webhook delivered, reading it now" in out.out + out.err
    assert minted[0] not in json.dumps(result)
    assert redis_client.keys("*") == []


def test_a_lost_delivery_is_covered_by_polling(
    emulator: Any, api_server: ServedApp, redis_client: Any
) -> None:
    emulator.add_fault("drop_webhooks")
    started = time.monotonic()
    run = run_dag(imagine_dag())
    assert "success" in str(run.state).lower()
    assert emulator.webhook_log() == []
    assert progress_reads(emulator) >= 1
    assert time.monotonic() - started < 30
    assert redis_client.keys("*") == []


def test_duplicated_deliveries_cost_no_read(emulator: Any, api_server: ServedApp, redis_client: Any) -> None:
    emulator.add_fault("duplicate_webhooks", copies=3, seconds=0.3)
    run = run_dag(imagine_dag())
    assert "success" in str(run.state).lower()
    sent = deliveries(emulator, at_least=3)
    assert len(sent) == 3 and sent[0]["status"] == 204
    assert progress_reads(emulator) == 1
    # Copies that came after the wait ended found the token forgotten.
    assert {copy["status"] for copy in sent[1:]} <= {204, 404}


def test_a_late_delivery_changes_nothing(emulator: Any, api_server: ServedApp, redis_client: Any) -> None:
    """Delayed past the fallback's read: polling found the end; the delivery then meets a 404."""
    emulator.add_fault("delay_webhooks", seconds=12)
    run = run_dag(imagine_dag())
    assert "success" in str(run.state).lower()
    reads = progress_reads(emulator)
    [late] = deliveries(emulator, within=30)
    assert late["status"] == 404
    assert progress_reads(emulator) == reads
    assert redis_client.keys("*") == []


def test_without_redis_the_task_polls(
    emulator: Any,
    api_server: ServedApp,
    monkeypatch: pytest.MonkeyPatch,
    minted: list[str],
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Redis away: the paid call is made without a webhook, once, and polling finds the end."""
    from airflow_harness.processes import free_port

    monkeypatch.setenv(
        "AIRFLOW_CONN_REDIS_DEFAULT",
        json.dumps({"conn_type": "redis", "host": "127.0.0.1", "port": free_port()}),
    )
    run = run_dag(imagine_dag())
    assert "success" in str(run.state).lower()
    assert emulator.stats()["submissions"]["imagine"] == 1
    assert emulator.webhook_log() == []
    assert "did not answer" in capfd.readouterr().out + caplog.text


def submitted_with_webhook(api_server: ServedApp, minted: list[str]) -> tuple[str, Any]:
    """An imagine submitted with a webhook URL, as the operator does: the taskId and its completion."""
    from airflow_provider_lotimage.hooks.lotimage import LotImageHook
    from airflow_provider_lotimage.webhooks.completion import WebhookCompletion

    completion = WebhookCompletion(api_server.url, wanted=True, timeout=60)

    class Ti:
        dag_id, task_id, run_id, map_index = "d", "t", "r", -1

    url = completion.open({"ti": Ti()})  # type: ignore[typeddict-item]
    assert url == webhook_url(api_server.url, minted[0])
    task_id = LotImageHook().imagine(PROMPT, webhook=url)
    completion.bind(task_id)
    assert completion.key == token_key(minted[0])
    return task_id, completion


def waiting_trigger(task_id: str, completion: Any) -> Any:
    """The trigger of a deferred imagine with webhooks: its polling alone first reads after 120 s."""
    from airflow_provider_lotimage.triggers.task_progress import TaskProgressTrigger

    return TaskProgressTrigger(
        task_id, poll_interval=10.0, first_poll_at=0, kind="imagine", webhook_key=completion.key
    )


def assert_acts_at_once(trigger: Any, emulator: Any, redis_client: Any) -> None:
    """The trigger ends within seconds on the recorded delivery, after one read, leaving no Redis key."""

    async def first_event() -> Any:
        async for event in trigger.run():
            return event

    started = time.monotonic()
    event = asyncio.run(first_event())
    assert time.monotonic() - started < 3
    assert event.payload["status"] == "success" and event.payload["result"]["progress"] == 100
    assert progress_reads(emulator) == 1
    assert redis_client.keys("*") == []


def test_a_delivery_recorded_before_the_trigger_runs_is_acted_on(
    emulator: Any, api_server: ServedApp, redis_client: Any, minted: list[str], airflow_db: None
) -> None:
    """A trigger moved to another triggerer finds the delivery recorded meanwhile, and reads once.

    Its polling alone would first read 120 s after the start (an imagine's prior, backed off for
    webhooks, up to ``poll_interval`` x ``MAX_POLL_FACTOR`` x ``WEBHOOK_FALLBACK_FACTOR``): it
    ends within seconds only because of the delivery.
    """
    task_id, completion = submitted_with_webhook(api_server, minted)
    [sent] = deliveries(emulator)
    assert sent["status"] == 204
    trigger = waiting_trigger(task_id, completion)
    assert trigger.serialize()[1]["webhook_key"] == completion.key
    assert_acts_at_once(trigger, emulator, redis_client)


def test_a_trigger_cancelled_mid_wait_leaves_its_token_to_the_one_that_takes_over(
    emulator: Any, api_server: ServedApp, redis_client: Any, minted: list[str], airflow_db: None
) -> None:
    """Airflow cancels a trigger it moves to another triggerer; the wait goes on there, token and all.

    A triggerer that stops, or that the others take for dead, has its triggers cancelled, and a
    cleared task's next try reconnects with the same token. So the cancelled trigger keeps the
    token: the delivery that comes afterwards is accepted, and the trigger that takes over reads
    once, at once.
    """
    from airflow_provider_lotimage.webhooks.redis_store import registration_key

    emulator.set_config(imagine_seconds=135.0)  # 6 s at the fixture's time scale: ends after the cancel
    task_id, completion = submitted_with_webhook(api_server, minted)

    async def cancelled_mid_wait() -> None:
        waiting = asyncio.ensure_future(anext(aiter(waiting_trigger(task_id, completion).run())))
        await asyncio.sleep(1.0)
        assert not waiting.done()
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting

    asyncio.run(cancelled_mid_wait())
    assert redis_client.exists(registration_key(completion.key)) == 1
    [sent] = deliveries(emulator, within=30)
    assert sent["status"] == 204, sent
    assert progress_reads(emulator) == 0
    assert_acts_at_once(waiting_trigger(task_id, completion), emulator, redis_client)
