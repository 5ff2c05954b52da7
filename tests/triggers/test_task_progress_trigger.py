"""TaskProgressTrigger against the emulator: no progress read, and so no event, before ``first_poll_at``.

A trigger that fires within seconds of its deferral can make Airflow fail the resumed task
("state mismatch"; see ``waiting.default_first_poll_delay``). These tests run the trigger as a
triggerer does (``trigger_id`` set) and check, with the emulator's counters, that it reads
nothing before ``first_poll_at``, whatever the outcome (success, error, timeout, a broken
connection), that the hold survives a re-creation from ``serialize()``, and that ``dag.test()``'s
inline run (no ``trigger_id``) is not held.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import time
from typing import Any

import pytest

from airflow_provider_lotimage.client.durations import DurationBook
from airflow_provider_lotimage.client.key_queue import KeyQueue
from airflow_provider_lotimage.client.progress import ProgressWatch
from airflow_provider_lotimage.client.schedule import KIND_UPSCALE
from airflow_provider_lotimage.hooks.lotimage import LotImageHook
from airflow_provider_lotimage.triggers.task_progress import TaskProgressTrigger, listen, sleep_until_read
from airflow_provider_lotimage.utils.deferral import RESUME_MARGIN

HOLD = 1.5


def progress_calls(emulator: Any) -> int:
    return int(emulator.stats()["requests"]["progress"])


def finished_task(emulator: Any) -> str:
    hook = LotImageHook()
    task_id = hook.imagine("a lighthouse made of glass")
    hook.wait_for_task(task_id, poll_interval=0.2, timeout=30)
    return task_id


def in_triggerer(trigger: TaskProgressTrigger) -> TaskProgressTrigger:
    trigger.trigger_id = 42  # what the triggerer sets: the trigger's row id
    return trigger


async def first_event(trigger: TaskProgressTrigger, emulator: Any, check_at: float) -> tuple[Any, int, float]:
    """Run the trigger; also return how many reads the emulator had ``check_at`` s in, and when it ended."""
    started = time.monotonic()
    reads_at_check: list[int] = []

    async def checker() -> None:
        await asyncio.sleep(check_at)
        reads_at_check.append(progress_calls(emulator))

    probe = asyncio.ensure_future(checker())
    try:
        event = await anext(trigger.run())
    finally:
        await probe
    return event.payload, reads_at_check[0], time.monotonic() - started


def test_serialize_is_json_and_keeps_the_absolute_first_poll_at(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL", "1")
    before = time.time()
    trigger = TaskProgressTrigger("t-1", "conn", poll_interval=2, end_time=before + 60, stall_timeout=60)
    path, kwargs = trigger.serialize()
    # The default is read where the trigger is built (the worker, at deferral time).
    assert before + 1 + RESUME_MARGIN <= kwargs["first_poll_at"] <= time.time() + 1 + RESUME_MARGIN
    module, _, name = path.rpartition(".")
    again = getattr(importlib.import_module(module), name)(**json.loads(json.dumps(kwargs)))
    assert again.serialize() == (path, kwargs)


def test_a_recreated_trigger_waits_only_for_what_is_left() -> None:
    """A triggerer restart rebuilds the trigger from serialize(): the hold is absolute, not restarted."""
    trigger = TaskProgressTrigger("t-1", "conn", first_poll_at=time.time() + 1.0)
    _, kwargs = trigger.serialize()
    time.sleep(0.6)
    again = in_triggerer(TaskProgressTrigger(**json.loads(json.dumps(kwargs))))
    assert 0.0 < again._watch().first_poll_in() <= 0.45


def test_finished_task_is_not_read_before_first_poll_at(
    lotimage_connection: str, lotimage_emulator: Any
) -> None:
    task_id = finished_task(lotimage_emulator)
    before = progress_calls(lotimage_emulator)
    trigger = in_triggerer(TaskProgressTrigger(task_id, poll_interval=0.2, first_poll_at=time.time() + HOLD))
    payload, reads_early, elapsed = asyncio.run(first_event(trigger, lotimage_emulator, check_at=HOLD - 0.4))
    assert payload["status"] == "success", payload
    assert payload["result"]["lotimage_task_id"] == task_id
    assert reads_early == before, "the trigger read progress before first_poll_at"
    assert elapsed >= HOLD - 0.05
    assert progress_calls(lotimage_emulator) == before + 1


def test_error_event_is_held_too(lotimage_connection: str, lotimage_emulator: Any) -> None:
    """A failure resumes the task as surely as a success: it must not come sooner."""
    before = progress_calls(lotimage_emulator)
    trigger = in_triggerer(TaskProgressTrigger("no-such-task", first_poll_at=time.time() + HOLD))
    payload, reads_early, elapsed = asyncio.run(first_event(trigger, lotimage_emulator, check_at=HOLD - 0.4))
    assert payload["status"] == "error" and payload["error_type"] == "TaskNotFoundError", payload
    assert reads_early == before
    assert elapsed >= HOLD - 0.05


def test_timeout_shorter_than_the_hold_is_reported_after_it(
    lotimage_connection: str, lotimage_emulator: Any
) -> None:
    lotimage_emulator.set_config(time_scale=1.0)  # an imagine takes 45 s: unfinished throughout
    task_id = LotImageHook().imagine("a slow teapot")
    now = time.time()
    trigger = in_triggerer(
        TaskProgressTrigger(task_id, end_time=now + 0.1, started_at=now, first_poll_at=now + HOLD)
    )
    payload, _, elapsed = asyncio.run(first_event(trigger, lotimage_emulator, check_at=0.1))
    assert payload["status"] == "timeout", payload
    assert elapsed >= HOLD - 0.05


def test_a_broken_connection_fails_only_after_the_hold(lotimage_emulator: Any) -> None:
    """The hold comes before anything that can raise: an exception from run() resumes the task too."""
    before = progress_calls(lotimage_emulator)
    trigger = in_triggerer(TaskProgressTrigger("t-1", "no_such_connection", first_poll_at=time.time() + HOLD))
    started = time.monotonic()
    with pytest.raises(Exception, match="no_such_connection"):
        asyncio.run(anext(trigger.run()))
    assert time.monotonic() - started >= HOLD - 0.05
    assert progress_calls(lotimage_emulator) == before


def test_inline_run_reads_at_once(lotimage_connection: str, lotimage_emulator: Any) -> None:
    """dag.test() runs the trigger in the task's process right after the deferral: nothing to race."""
    task_id = finished_task(lotimage_emulator)
    trigger = TaskProgressTrigger(task_id, first_poll_at=time.time() + 60)
    assert trigger.trigger_id is None
    started = time.monotonic()
    event = asyncio.run(anext(trigger.run()))
    assert event.payload["status"] == "success"
    assert time.monotonic() - started < 10


# -- a task that ends in the triggerer reads at once; only an event that resumes a worker waits ------


def test_a_task_ending_here_reads_at_once_and_holds_only_an_event_for_a_worker(
    lotimage_connection: str, lotimage_emulator: Any
) -> None:
    """``end_from_trigger``: the read is not held. Here the XComs cannot be stored (no triggerer
    comms in this process), so the success must resume a worker: that event still waits."""
    task_id = finished_task(lotimage_emulator)
    before = progress_calls(lotimage_emulator)
    trigger = in_triggerer(
        TaskProgressTrigger(
            task_id, poll_interval=0.2, first_poll_at=time.time() + HOLD, end_from_trigger=True
        )
    )
    assert not trigger.holds_reads
    payload, reads_early, elapsed = asyncio.run(first_event(trigger, lotimage_emulator, check_at=HOLD - 0.4))
    assert reads_early == before + 1, "the read was held"
    assert payload["status"] == "success" and payload["result"]["lotimage_task_id"] == task_id
    assert elapsed >= HOLD - 0.05, "an event that resumes a worker came before first_poll_at"


def test_a_failure_of_a_task_ending_here_still_waits_for_first_poll_at(
    lotimage_connection: str, lotimage_emulator: Any
) -> None:
    lotimage_emulator.add_fault(
        "fail_task", endpoint="imagine", err_message="Request cancelled due to output filters"
    )
    hook = LotImageHook()
    task_id = hook.imagine("a lighthouse made of glass")
    time.sleep(1.5)  # failed at LotImage by now
    trigger = in_triggerer(
        TaskProgressTrigger(
            task_id, poll_interval=0.2, first_poll_at=time.time() + HOLD, end_from_trigger=True
        )
    )
    payload, _, elapsed = asyncio.run(first_event(trigger, lotimage_emulator, check_at=0.1))
    assert payload["status"] == "error" and "output filters" in payload["message"], payload
    assert elapsed >= HOLD - 0.05


# -- a sleep planned on a start that the key's queue then brings forward is planned again ------------


def test_a_wait_queued_behind_a_task_that_ends_sooner_plans_its_read_again() -> None:
    book = DurationBook()
    book.queue = KeyQueue(running=1)
    book.queue.enter("ahead", time.time(), 10.0)
    watch = ProgressWatch.start("behind", kind=KIND_UPSCALE, from_submission=True)
    trigger = TaskProgressTrigger("behind", poll_interval=1.0)

    async def pause() -> float:
        sooner = listen(watch)
        watch.expect(book)
        planned = watch.next_poll_in(1.0)
        started = time.monotonic()
        finisher = asyncio.get_running_loop().run_in_executor(  # told from another thread
            None,
            lambda: (time.sleep(0.5), book.queue.finish("ahead", time.time(), not_before=time.time() - 1)),
        )
        await sleep_until_read(trigger.hints, watch, book, sooner, 1.0)
        await finisher
        assert planned > 10, "behind the task ahead, the first read was planned after its expected end"
        return time.monotonic() - started

    waited = asyncio.run(pause())
    assert 0.5 < waited < 5.0, f"the sleep was not planned again when the slot freed ({waited:.1f} s)"
    assert watch.starts_at is not None and watch.starts_at <= time.time()
