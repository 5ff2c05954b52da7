"""Webhook completion across machines: the api-server records a delivery, whichever triggerer acts.

The emulator delivers each finished task to the deployment's api-server (the plugin's route); the
route records it in the Redis every machine shares (``redis_default``, the rate budget's), and the
triggerer holding that task's trigger, on either machine, reads the task once and ends the wait.
That holds when the trigger has moved: a triggerer killed mid-wait hands its triggers over, and the
survivor acts on the deliveries for them (a trigger's log file names the triggerer job that ran it).
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from lotimage_emulator import Emulator

from airflow_harness import AirflowDeployment

from .helpers import (
    DEFERRED_DAG,
    deferred_and_assigned,
    make_prompts,
    paid_prompts,
    run_triggers,
    set_lotimage_connection,
    start_run,
    triggerer_hosts,
    wait_until,
)

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
    records = af.task_log_records(DEFERRED_DAG, result.run_id)
    acted = [record for record in records if ACTED in str(record.get("event"))]
    assert len(acted) == PROMPTS, [record.get("event") for record in records][-40:]
    hosts = {row["id"]: row["hostname"] for row in af.jobs("TriggererJob")}
    print(f"\nwebhooks: {PROMPTS} deliveries acted on; triggerers {sorted(set(hosts.values()))}")
    # Every token was forgotten as its wait ended: their URLs answer 404 from now on.
    assert _webhook_keys(af) == []


def test_a_trigger_moved_to_the_other_triggerer_acts_on_its_delivery(
    af: AirflowDeployment, emulator: Emulator
) -> None:
    set_lotimage_connection(af, emulator.url, scope="redis", webhook_base_url=af.api_url)
    # Renders of 40 s: every delivery comes after the dead triggerer's triggers were taken over.
    emulator.set_config(imagine_seconds=40.0)
    prompts = make_prompts("webhooks moved", PROMPTS)
    run_id = start_run(af, DEFERRED_DAG, {"prompts": prompts})
    triggers = wait_until(lambda: deferred_and_assigned(af, DEFERRED_DAG, run_id, PROMPTS), 120, "deferred")
    map_index = {ti.trigger_id: ti.map_index for ti in af.task_instances(DEFERRED_DAG, run_id)}
    hosts = triggerer_hosts(af)
    victim_job = max(set(triggers.values()), key=list(triggers.values()).count)
    moved = {map_index[trigger] for trigger, job in triggers.items() if job == victim_job}
    af.kill_service(hosts[victim_job])
    try:
        survivors = {job for job, host in hosts.items() if host != hosts[victim_job]}
        wait_until(
            lambda: all(job in survivors for job in run_triggers(af, DEFERRED_DAG, run_id).values()),
            90,
            "the triggers taken over",
        )
        result = af.wait_for_run(DEFERRED_DAG, run_id, timeout=240)
    finally:
        af.start_service(hosts[victim_job])
    assert result.ok, result.task_states
    assert paid_prompts(emulator) == sorted(prompts), "a prompt was paid twice or not at all"
    assert [d["status"] for d in emulator.webhook_log()] == [204] * PROMPTS
    acted = _acting_triggerers(af.task_log_records(DEFERRED_DAG, run_id))
    print(f"\nwebhooks: triggerer job {victim_job} killed holding map indexes {sorted(moved)}; acted {acted}")
    assert sorted(acted) == list(range(PROMPTS)), acted
    assert all(acted[index] in survivors for index in moved), (moved, acted, survivors)


def _acting_triggerers(records: list[dict[str, Any]]) -> dict[int, int]:
    """Map index -> the triggerer job whose trigger acted on the delivery (from the log file's name)."""
    found = {}
    for record in records:
        where = re.search(r"map_index=(\d+)/.*\.trigger\.(\d+)\.log$", str(record["_file"]))
        if where and ACTED in str(record.get("event")):
            found[int(where[1])] = int(where[2])
    return found


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
