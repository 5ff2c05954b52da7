"""Webhook completion across machines: the api-server records a delivery, whichever triggerer acts.

The emulator delivers each finished task to the deployment's api-server (the plugin's route); the
route records it in the Redis every machine shares (``redis_default``, the rate budget's), and the
triggerer holding that task's trigger, on either machine, reads the task once and ends the wait.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from lotimage_emulator import Emulator

from airflow_harness import AirflowDeployment

from .helpers import DEFERRED_DAG, make_prompts, paid_prompts, set_lotimage_connection, task_log_records

pytestmark = [pytest.mark.distributed, pytest.mark.timeout(600)]

PROMPTS = 4
ACTED = "webhook delivered, reading it now"


def test_deliveries_reach_whichever_triggerer_holds_the_trigger(
    af: AirflowDeployment, emulator: Emulator
) -> None:
    set_lotimage_connection(af, emulator.url, scope="redis", webhook_base_url=af.api_url)
    prompts = make_prompts("webhooks", PROMPTS)
    result = af.run_dag(DEFERRED_DAG, conf={"prompts": prompts}, timeout=300)
    assert result.ok, result.task_states
    assert paid_prompts(emulator) == sorted(prompts), "a prompt was paid twice or not at all"
    deliveries = emulator.webhook_log()
    assert len(deliveries) == PROMPTS and {d["status"] for d in deliveries} == {204}, deliveries
    # Each wait read its task once: when its delivery came (the fallback would read much later).
    assert emulator.stats()["requests"]["progress"] == PROMPTS
    records = task_log_records(af, DEFERRED_DAG, result.run_id)
    acted = [record for record in records if ACTED in str(record.get("event"))]
    assert len(acted) == PROMPTS, [record.get("event") for record in records][-40:]
    hosts = {row["id"]: row["hostname"] for row in af.jobs("TriggererJob")}
    print(f"\nwebhooks: {PROMPTS} deliveries acted on; triggerers {sorted(set(hosts.values()))}")
    # Every token was forgotten as its wait ended: their URLs answer 404 from now on.
    assert _webhook_keys(af) == []


def _webhook_keys(af: AirflowDeployment) -> list[Any]:
    import redis

    budget = af.budget_redis
    assert budget is not None
    client = redis.Redis(host="127.0.0.1", port=budget.port, password=budget.password)
    try:
        deadline = time.monotonic() + 5
        while (keys := client.keys("lotimage:webhook:*")) and time.monotonic() < deadline:
            time.sleep(0.2)
        return list(keys)
    finally:
        client.close()
