"""What the hook counts (``client/metrics``), against the emulator, with a recording ``Metrics``.

Every figure is checked against what the emulator counted on its side: each attempt of a call,
its outcome, the 429s and what they held back, the paid tasks, the end of a wait.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections import Counter

import pytest

from airflow_provider_lotimage.client import metric_names as names
from airflow_provider_lotimage.client.retry import RetryPolicy
from airflow_provider_lotimage.client.schedule import KIND_IMAGINE
from airflow_provider_lotimage.exceptions import (
    InvalidRequestError,
    ReadTimeoutError,
    ServiceUnreachableError,
    TaskFailedError,
    TaskStalledError,
    TaskTimeoutError,
)
from airflow_provider_lotimage.hooks.lotimage import LotImageHook
from tests.metrics_helpers import RecordingMetrics

FAST = RetryPolicy(max_attempts=4, base_delay=0.05, max_delay=0.2)
PROMPT = "a lighthouse of glass at dawn"


@pytest.fixture
def metrics() -> RecordingMetrics:
    return RecordingMetrics()


@pytest.fixture
def hook(lotimage_connection: str, metrics: RecordingMetrics) -> LotImageHook:
    hook = LotImageHook(lotimage_connection, retry_policy=FAST)
    hook.metrics = metrics
    return hook


def calls(metrics: RecordingMetrics) -> Counter[tuple[str | None, ...]]:
    return metrics.counts(names.API_CALLS, names.TAG_ENDPOINT, names.TAG_OUTCOME)


def assert_no_secret(metrics: RecordingMetrics, *secrets: str) -> None:
    for sample in metrics.samples:
        for key, value in sample.tags:
            assert not any(secret in key or secret in value for secret in secrets), sample
        assert not any(secret in sample.name for secret in secrets), sample


def test_a_finished_task_counts_each_call_the_cost_and_the_duration(
    hook: LotImageHook, metrics: RecordingMetrics, lotimage_emulator, lotimage_api_key: str
) -> None:
    task_id = hook.imagine(PROMPT)
    hook.wait_for_task(task_id, poll_interval=0.2, timeout=30, kind=KIND_IMAGINE)
    requests = lotimage_emulator.stats()["requests"]
    assert requests["progress"] >= 1
    assert calls(metrics) == {("imagine", "ok"): 1, ("task/progress", "ok"): requests["progress"]}
    assert metrics.counts(names.PAID_TASKS, names.TAG_KIND) == {("imagine",): 1}
    assert lotimage_emulator.stats()["submissions"]["imagine"] == 1
    [duration] = metrics.named(names.TASK_DURATION)
    assert duration.tag(names.TAG_KIND) == "imagine" and 0.5 < duration.value < 30
    waits = metrics.named(names.LIMITER_WAIT)
    assert len(waits) == sum(requests.values()) and all(wait.value >= 0 for wait in waits)
    assert not metrics.named(names.TASK_FAILED)
    assert_no_secret(metrics, lotimage_api_key, PROMPT, task_id)


def test_429s_are_counted_with_the_seconds_they_held_the_key_back(
    hook: LotImageHook, metrics: RecordingMetrics, lotimage_emulator
) -> None:
    lotimage_emulator.add_fault("http_429", endpoint="imagine", count=2, retry_after=0.3)
    hook.imagine(PROMPT)
    stats = lotimage_emulator.stats()
    assert calls(metrics) == {("imagine", "429"): stats["rate_limited"], ("imagine", "ok"): 1}
    assert metrics.counts(names.API_RATE_LIMITED, names.TAG_ENDPOINT) == {("imagine",): 2}
    held = metrics.named(names.API_HELD_BACK_SECONDS)
    assert len(held) == 2 and all(0.3 <= sample.value < 1.0 for sample in held)
    assert metrics.counts(names.PAID_TASKS, names.TAG_KIND) == {("imagine",): 1}


def test_a_banned_prompt_is_a_4xx_and_a_task_failed_as_banned(
    hook: LotImageHook, metrics: RecordingMetrics, lotimage_emulator
) -> None:
    with pytest.raises(InvalidRequestError):
        hook.imagine("a teapot, nsfw")
    assert calls(metrics) == {("imagine", "http_4xx"): lotimage_emulator.stats()["requests"]["imagine"]}
    assert metrics.counts(names.TASK_FAILED, names.TAG_REASON) == {("banned",): 1}
    assert not metrics.named(names.PAID_TASKS)


@pytest.mark.parametrize(
    ("fault", "error", "reason"),
    [
        ({"kind": "fail_task", "progress": 31}, TaskFailedError, "failed"),
        ({"kind": "stall", "progress": 40}, TaskStalledError, "stalled"),
    ],
)
def test_a_wait_that_ends_without_a_picture_is_counted_once_by_reason(
    hook: LotImageHook, metrics: RecordingMetrics, lotimage_emulator, fault: dict, error: type, reason: str
) -> None:
    lotimage_emulator.add_fault(**fault)
    task_id = hook.imagine(PROMPT)
    with pytest.raises(error):
        hook.wait_for_task(task_id, poll_interval=0.2, timeout=30, stall_timeout=1.5)
    assert metrics.counts(names.TASK_FAILED, names.TAG_REASON) == {(reason,): 1}
    assert not metrics.named(names.TASK_DURATION)
    # A failed task is still an answered read.
    assert calls(metrics)[("task/progress", "ok")] == lotimage_emulator.stats()["requests"]["progress"]


def test_a_wait_out_of_time_is_counted_as_timeout(
    hook: LotImageHook, metrics: RecordingMetrics, lotimage_emulator
) -> None:
    lotimage_emulator.add_fault("stall", progress=0)
    with pytest.raises(TaskTimeoutError):
        hook.wait_for_task(hook.imagine(PROMPT), poll_interval=0.2, timeout=1, stall_timeout=None)
    assert metrics.counts(names.TASK_FAILED, names.TAG_REASON) == {("timeout",): 1}


def test_5xx_answers_are_counted_apart_from_the_retry_that_succeeds(
    hook: LotImageHook, metrics: RecordingMetrics, lotimage_emulator
) -> None:
    lotimage_emulator.add_fault("http_status", endpoint="progress", status=502, count=2)
    task_id = hook.imagine(PROMPT)
    hook.get_task_progress(task_id)
    expected = {("imagine", "ok"): 1, ("task/progress", "http_5xx"): 2, ("task/progress", "ok"): 1}
    assert calls(metrics) == expected
    assert lotimage_emulator.stats()["requests"]["progress"] == 3


def test_no_connection_and_no_answer_in_time_are_their_own_outcomes(
    monkeypatch: pytest.MonkeyPatch, lotimage_emulator, lotimage_api_key: str
) -> None:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{free.getsockname()[1]}"
    metrics = RecordingMetrics()
    once = RetryPolicy(max_attempts=1)
    for url, extra in ((closed, {}), (lotimage_emulator.url, {"timeout": 0.5})):
        conn = {"conn_type": "lotimage", "host": url, "password": lotimage_api_key, "extra": extra}
        monkeypatch.setenv("AIRFLOW_CONN_LOTIMAGE_DEFAULT", json.dumps(conn))
        hook = LotImageHook(retry_policy=once)
        hook.metrics = metrics
        lotimage_emulator.add_fault("delay", endpoint="progress", seconds=2.0)
        with pytest.raises(ServiceUnreachableError if url == closed else ReadTimeoutError):
            hook.get_task_progress("some-task")
    assert calls(metrics) == {("task/progress", "connection"): 1, ("task/progress", "timeout"): 1}
    assert not metrics.named(names.TASK_FAILED)  # a plain read ends no task


def test_the_triggers_reads_are_counted_as_the_workers(
    hook: LotImageHook, metrics: RecordingMetrics, lotimage_emulator
) -> None:
    task_id = hook.imagine(PROMPT)

    async def read_until_done() -> int:
        reads = 0
        while True:
            reads += 1
            progress = await hook.apoll_once(task_id)
            if not isinstance(progress, Exception) and progress.is_finished:
                return reads
            await asyncio.sleep(0.2)

    reads = asyncio.run(read_until_done())
    assert calls(metrics) == {("imagine", "ok"): 1, ("task/progress", "ok"): reads}
    assert len(metrics.named(names.LIMITER_WAIT)) == reads + 1
