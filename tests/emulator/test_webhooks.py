"""Webhook deliveries: the progress body POSTed on finish or failure, never on stall."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from .helpers import Client, Receiver

if TYPE_CHECKING:
    from lotimage_emulator import Emulator


def _wait_stats(emu: Emulator, name: str, value: int, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while emu.stats()["webhooks"][name] < value:
        assert time.monotonic() < deadline, emu.stats()["webhooks"]
        time.sleep(0.02)


def test_webhook_gets_the_progress_body_without_polling(emu: Emulator, receiver: Receiver) -> None:
    client = Client(emu.url)
    task = client.submit(webhook=receiver.url, cutting=True)
    [body] = receiver.wait_for(1)
    assert body["taskId"] == task and body["progress"] == 100 and body["status"] == 200
    assert len(body["imageUrls"]) == 4 and body["imageUrl"]
    assert receiver.headers[0]["Content-Type"].startswith("application/json")
    assert client.progress(task).json() == body
    _wait_stats(emu, "succeeded", 1)
    assert emu.stats()["webhooks"] == {"attempted": 1, "succeeded": 1, "failed": 0, "suppressed": 0}


def test_button_webhook_and_failed_task_webhook(emu: Emulator, receiver: Receiver) -> None:
    client = Client(emu.url)
    parent = client.submit()
    client.wait(parent)
    emu.add_fault("fail_task", err_message="Request cancelled due to output filters", progress=31)
    child = client.press(parent, "U1", webhook=receiver.url)
    [body] = receiver.wait_for(1)
    assert body["taskId"] == child and body["originatingMessageId"] == parent
    assert body["status"] == 400 and body["errMessage"] == "Request cancelled due to output filters"


def test_stalled_tasks_send_nothing_and_drop_webhooks_suppresses(emu: Emulator, receiver: Receiver) -> None:
    client = Client(emu.url)
    emu.add_fault("stall", progress=46)
    stalled = client.submit(webhook=receiver.url)
    rule = emu.add_fault("drop_webhooks", count=1)
    dropped = client.submit(webhook=receiver.url)
    client.wait(dropped)
    _wait_stats(emu, "suppressed", 1)
    assert rule.used == 1
    delivered = client.submit(webhook=receiver.url)
    assert [body["taskId"] for body in receiver.wait_for(1)] == [delivered]
    assert client.progress(stalled).json()["progress"] == 46
    assert receiver.bodies[0]["taskId"] != stalled


def test_failed_deliveries_are_counted(emu: Emulator) -> None:
    unhappy = Receiver(status=500)
    try:
        client = Client(emu.url)
        client.submit(webhook=unhappy.url)
        client.submit(webhook="http://127.0.0.1:9/nothing-listens-here")
        unhappy.wait_for(1)
        _wait_stats(emu, "failed", 2)
        assert emu.stats()["webhooks"]["attempted"] == 2
    finally:
        unhappy.close()
