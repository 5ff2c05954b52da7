"""Webhooks late, duplicated or lost, the record of every delivery, and URLs that never leak.

Every test drives the emulator over loopback and receives deliveries on a real local HTTP server.
"""

from __future__ import annotations

import itertools
import json
import logging
import socket
import time
from typing import TYPE_CHECKING, Any

import pytest
import requests
from lotimage_emulator import FaultRule
from lotimage_emulator.faults import MAX_COPIES, FaultError
from lotimage_emulator.webhooks import display_url

from .helpers import Client, Receiver, delivered

if TYPE_CHECKING:
    from lotimage_emulator import Emulator


def _by_task(log: list[dict[str, Any]], task_id: str) -> list[dict[str, Any]]:
    return [record for record in log if record["taskId"] == task_id]


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_delayed_delivery_arrives_after_a_later_tasks(emu: Emulator, receiver: Receiver) -> None:
    """An earlier task's late webhook arrives after a later task's, which is not held up."""
    client = Client(emu.url)
    rule = emu.add_fault("delay_webhooks", seconds=0.8)
    submitted = time.time()
    first = client.submit("An owl at dawn", webhook=receiver.url)
    client.wait(first)
    second = client.submit("A fox at dusk", webhook=receiver.url)
    client.wait(second)
    bodies = receiver.wait_for(2)
    assert [body["taskId"] for body in bodies] == [second, first], "out of order"
    log = delivered(emu, 2)
    [late], [prompt] = _by_task(log, first), _by_task(log, second)
    assert late["sent_at"] - submitted >= 0.8, "sent at least the delay after the task ended"
    assert prompt["sent_at"] < late["sent_at"] - 0.3, "the later delivery was not held up"
    assert prompt["sent_at"] - submitted < 0.8
    assert receiver.times[1] >= late["sent_at"]
    assert rule.used == 1 and rule.exhausted, "count 1 by default: one delivery is late"
    assert bodies[1] == client.progress(first).json(), "a late delivery carries the same body"
    stats = emu.stats()["webhooks"]
    assert stats == {"attempted": 2, "succeeded": 2, "failed": 0, "suppressed": 0, "delayed": 1}


def test_duplicate_webhooks_sends_copies_spaced_apart(emu: Emulator, receiver: Receiver) -> None:
    client = Client(emu.url)
    rule = emu.add_fault("duplicate_webhooks", copies=3, seconds=0.25)
    tripled = client.submit(webhook=receiver.url)
    bodies = receiver.wait_for(3)
    assert [body["taskId"] for body in bodies] == [tripled] * 3 and bodies[0] == bodies[1] == bodies[2]
    log = delivered(emu, 3)
    assert [record["attempt"] for record in log] == [1, 2, 3]
    gaps = [later["sent_at"] - earlier["sent_at"] for earlier, later in itertools.pairwise(log)]
    assert all(0.2 <= gap < 1.0 for gap in gaps), gaps
    once = client.submit(webhook=receiver.url)
    receiver.wait_for(4)
    assert [record["attempt"] for record in _by_task(delivered(emu, 4), once)] == [1], "count 1: used up"
    assert rule.used == 1
    emu.add_fault("duplicate_webhooks")  # defaults: two copies at once
    twice = client.submit(webhook=receiver.url)
    receiver.wait_for(6)
    pair = _by_task(delivered(emu, 6), twice)
    assert sorted(record["attempt"] for record in pair) == [1, 2]
    assert abs(pair[0]["sent_at"] - pair[1]["sent_at"]) < 0.2
    stats = emu.stats()["webhooks"]
    assert stats == {"attempted": 6, "succeeded": 6, "failed": 0, "suppressed": 0, "duplicated": 3}


def test_webhook_faults_filter_by_endpoint_and_prompt(emu: Emulator, receiver: Receiver) -> None:
    client = Client(emu.url)
    emu.add_fault("drop_webhooks", prompt_contains="ghost")
    emu.add_fault("duplicate_webhooks", endpoint="button", count=None)
    owl = client.submit("An owl", webhook=receiver.url)
    ghost = client.submit("A ghost ship", webhook=receiver.url)
    client.wait(owl)
    client.wait(ghost)
    upscale = client.press(owl, "U1", webhook=receiver.url)
    receiver.wait_for(3)
    time.sleep(0.3)  # room for a wrong extra delivery to show up
    assert sorted(body["taskId"] for body in receiver.bodies) == sorted([owl, upscale, upscale])
    stats = emu.stats()["webhooks"]
    assert (stats["suppressed"], stats["duplicated"], stats["attempted"]) == (1, 1, 3)


def test_webhook_faults_honour_share_and_for_seconds(emu: Emulator, receiver: Receiver) -> None:
    client = Client(emu.url)
    emu.add_fault("drop_webhooks", count=None, share=0.5)
    tasks = []
    for n in range(4):  # one after the other, so deliveries come in this order
        tasks.append(client.submit(f"Picture {n}", webhook=receiver.url))
        client.wait(tasks[-1])
        time.sleep(0.1)
    assert [body["taskId"] for body in receiver.wait_for(2)] == [tasks[0], tasks[2]]
    emu.clear_faults()
    window = emu.add_fault("delay_webhooks", seconds=0.3, for_seconds=0.5)
    opened = time.time()
    inside = [client.submit(f"Inside {n}", webhook=receiver.url) for n in range(2)]
    deadline = time.monotonic() + 5
    while window.used < 2:  # both deliveries dispatched: the window opened at the first
        assert time.monotonic() < deadline, window
        time.sleep(0.02)
    assert window.opened_at is not None
    time.sleep(max(0.0, window.opened_at + 0.6 - time.time()))
    after = client.submit("After the window", webhook=receiver.url)
    client.wait(after)
    receiver.wait_for(5)
    assert window.used == 2 and window.exhausted
    sent = {record["taskId"]: record["sent_at"] for record in delivered(emu, 5)}
    assert all(sent[task] - opened >= 0.3 for task in inside)
    assert emu.stats()["webhooks"]["delayed"] == 2, "the delivery after the window was on time"


def test_every_delivery_is_recorded_with_its_answer(emu: Emulator) -> None:
    unhappy, port = Receiver(status=500), _closed_port()
    try:
        client = Client(emu.url)
        answered = client.submit(webhook=unhappy.url)
        unanswered = client.submit(webhook=f"http://127.0.0.1:{port}/hook")
        log = delivered(emu, 2)
        [refused] = _by_task(log, answered)
        assert (refused["status"], refused["error"], refused["outcome"]) == (500, None, "failed")
        assert refused["url"] == unhappy.url and refused["attempt"] == 1
        [lost] = _by_task(log, unanswered)
        assert (lost["status"], lost["outcome"]) == (None, "failed") and lost["error"]
        assert lost["url"] == f"http://127.0.0.1:{port}/hook"
        assert set(refused) == {"sent_at", "url", "taskId", "attempt", "status", "error", "outcome"}
        over_http = requests.get(emu.url + "/_emulator/webhooks", timeout=5).json()
        assert over_http == {"deliveries": log}
        json.dumps(emu.stats())
        emu.reset()
        assert emu.webhook_log() == [] and emu.stats()["webhooks"]["failed"] == 0
    finally:
        unhappy.close()


def test_webhook_urls_never_reach_logs_or_records(
    emu: Emulator, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    """A receiver's token (path or query) and credentials stay out of logs, records and stats."""
    caplog.set_level(logging.DEBUG, logger="lotimage_emulator")
    path_token, query_token, password = "tok9f8e7d6c5b4a3928", "qs-5150-secret", "pw-8282-secret"
    url = f"http://hooks:{password}@127.0.0.1:{receiver.port}/hooks/{path_token}?token={query_token}"
    dead = f"http://127.0.0.1:{_closed_port()}/hooks/{path_token}?token={query_token}"
    client = Client(emu.url)
    emu.add_fault("duplicate_webhooks")
    delivered_task = client.submit(webhook=url)
    receiver.wait_for(2)
    client.submit(webhook=dead)
    log = delivered(emu, 3)
    emu.add_fault("drop_webhooks", count=1)
    client.wait(client.submit(webhook=url))
    while emu.stats()["webhooks"]["suppressed"] < 1:
        time.sleep(0.02)
    assert receiver.paths == [f"/hooks/{path_token}?token={query_token}"] * 2, "sent to the real URL"
    assert receiver.headers[0]["Authorization"].startswith("Basic ")
    shown = f"http://127.0.0.1:{receiver.port}/hooks/tok9…"
    assert [record["url"] for record in _by_task(log, delivered_task)] == [shown, shown]
    assert shown in caplog.text and "failed" in caplog.text and "dropped" in caplog.text
    exposed = caplog.text + json.dumps(log) + json.dumps(emu.stats())
    exposed += requests.get(emu.url + "/_emulator/webhooks", timeout=5).text
    exposed += requests.get(emu.url + "/_emulator/stats", timeout=5).text
    for secret in (path_token, path_token[4:12], query_token, password):
        assert secret not in exposed, secret


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://127.0.0.1:8080/hook", "http://127.0.0.1:8080/hook"),
        ("https://example.com/a/webhooks?sig=1#frag", "https://example.com/a/webh…"),
        ("http://u:p@[::1]:9/x/abcdefgh//", "http://[::1]:9/x/abcd…//"),
        ("http://example.com/hooks/", "http://example.com/hook…/"),
        ("http://example.com/", "http://example.com/"),
        ("http://example.com", "http://example.com"),
        ("http://[::1/broken", "<unparsable URL>"),
    ],
)
def test_display_url(url: str, shown: str) -> None:
    assert display_url(url) == shown


def _admin_post(emu: Emulator, body: Any) -> requests.Response:
    return requests.post(emu.url + "/_emulator/faults", json=body, timeout=5)


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "duplicate_webhooks", "copies": 1},
        {"kind": "duplicate_webhooks", "copies": MAX_COPIES + 1},
        {"kind": "duplicate_webhooks", "copies": "3"},
        {"kind": "duplicate_webhooks", "copies": True},
        {"kind": "duplicate_webhooks", "copies": 2.5},
        {"kind": "duplicate_webhooks", "seconds": -0.5},
        {"kind": "delay_webhooks", "seconds": -1},
        {"kind": "delay_webhooks", "seconds": "soon"},
        {"kind": "delay_webhooks", "endpoint": "progress"},
        {"kind": "drop_webhooks", "endpoint": "progress"},
        {"kind": "delay_webhooks", "share": 0},
        {"kind": "duplicate_webhooks", "for_seconds": -1},
        {"kind": "delay_webhooks", "prompt_contains": ""},
        {"kind": "drop_webhooks", "colour": "red"},
        [{"kind": "delay_webhooks"}, {"kind": "duplicate_webhooks", "copies": 0}],
    ],
)
def test_bad_webhook_rules_are_refused_without_applying_any(emu: Emulator, body: Any) -> None:
    answer = _admin_post(emu, body)
    assert answer.status_code == 400 and answer.json()["errMessage"]
    assert emu.faults() == []


def test_webhook_rules_over_admin_and_python_api(emu: Emulator) -> None:
    answer = _admin_post(emu, [{"kind": "duplicate_webhooks"}, {"kind": "delay_webhooks", "seconds": 2}])
    assert answer.status_code == 200, answer.text
    duplicate, delay = answer.json()["rules"]
    assert (duplicate["copies"], duplicate["seconds"], duplicate["count"]) == (2, 0.0, 1)
    assert (delay["seconds"], delay["count"], delay["stage"]) == (2, 1, "webhook")
    assert FaultRule.build("drop_webhooks").count is None, "dropping stays a mode"
    rule = emu.add_fault("duplicate_webhooks", copies=4, seconds=0.5, endpoint="button", share=0.5)
    assert FaultRule.from_dict(rule.to_dict()).copies == 4
    with pytest.raises(FaultError, match="copies"):
        emu.add_fault("duplicate_webhooks", copies=0)
    with pytest.raises(FaultError, match="progress"):
        emu.add_fault("delay_webhooks", endpoint="progress")
