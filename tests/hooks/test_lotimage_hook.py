"""LotImageHook against the emulator on loopback: every error row, retries and their safety, limits."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator

import pytest

from airflow_provider_lotimage.client.async_transport import shared_sessions
from airflow_provider_lotimage.client.retry import RetryPolicy
from airflow_provider_lotimage.client.transport import Call
from airflow_provider_lotimage.exceptions import (
    AmbiguousSubmitError,
    AuthError,
    InvalidRequestError,
    LotImageInputError,
    QuotaExhaustedError,
    RateLimitedError,
    ServiceUnreachableError,
    TaskFailedError,
    TaskNotFoundError,
    TaskStalledError,
    TaskTimeoutError,
    TransientError,
)
from airflow_provider_lotimage.hooks.lotimage import LotImageHook

FAST = RetryPolicy(max_attempts=4, base_delay=0.05, max_delay=0.2)


def connect(monkeypatch: pytest.MonkeyPatch, url: str, key: str, **extra: object) -> LotImageHook:
    conn = {"conn_type": "lotimage", "host": url, "password": key}
    if extra:
        conn["extra"] = extra
    monkeypatch.setenv("AIRFLOW_CONN_LOTIMAGE_DEFAULT", json.dumps(conn))
    return LotImageHook(retry_policy=FAST)


@pytest.fixture
def hook(lotimage_connection: str) -> LotImageHook:
    return LotImageHook(lotimage_connection, retry_policy=FAST)


def submissions(emulator) -> dict[str, int]:
    return emulator.stats()["submissions"]


def test_imagine_then_wait_gives_finished_task(hook: LotImageHook, lotimage_emulator) -> None:
    task_id = hook.imagine("An owl with cat ears hanging on a tree", cutting=True)
    seen: list[int] = []
    done = hook.wait_for_task(task_id, poll_interval=0.2, timeout=30, on_progress=seen.append)
    assert done.is_finished and done.task_id == task_id
    assert done.prompt == "An owl with cat ears hanging on a tree"
    assert len(done.image_urls) == 4
    assert seen and seen == sorted(seen)
    assert submissions(lotimage_emulator) == {"imagine": 1, "button": 0}


def test_press_button_follows_parent(hook: LotImageHook) -> None:
    parent = hook.wait_for_task(hook.imagine("a red fox"), poll_interval=0.2, timeout=30)
    child_id = hook.press_button(parent.task_id, "U2")
    child = hook.wait_for_task(child_id, poll_interval=0.2, timeout=30)
    assert child.originating_task_id == parent.task_id
    assert "U1" not in child.buttons
    with pytest.raises(InvalidRequestError, match="Already requested upscale"):
        hook.press_button(parent.task_id, "U2")


def test_connection_host_default_and_scheme(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_LOTIMAGE_DEFAULT", json.dumps({"conn_type": "lotimage", "password": "k"})
    )
    assert LotImageHook().settings.base_url == "https://api.lotimage.com"
    monkeypatch.setenv(
        "AIRFLOW_CONN_LOTIMAGE_DEFAULT",
        json.dumps({"conn_type": "lotimage", "host": "proxy.local", "port": 81, "password": "k"}),
    )
    assert LotImageHook().settings.base_url == "https://proxy.local:81"


def test_test_connection_spends_no_paid_task(hook: LotImageHook, lotimage_emulator) -> None:
    assert hook.test_connection() == (True, "LotImage accepted the API key")
    assert submissions(lotimage_emulator) == {"imagine": 0, "button": 0}


def test_test_connection_reports_bad_key(monkeypatch: pytest.MonkeyPatch, lotimage_emulator) -> None:
    ok, message = connect(monkeypatch, lotimage_emulator.url, "not-the-key").test_connection()
    assert not ok and "refused the API key" in message and "not-the-key" not in message


def test_bad_key_fails_at_once_without_leaking_it(monkeypatch: pytest.MonkeyPatch, lotimage_emulator) -> None:
    hook = connect(monkeypatch, lotimage_emulator.url, "wrong-key-DO-NOT-LEAK")
    with pytest.raises(AuthError, match="Key verification failed") as info:
        hook.imagine("a cat")
    assert "DO-NOT-LEAK" not in str(info.value) and "DO-NOT-LEAK" not in repr(info.value)
    assert lotimage_emulator.stats()["requests"]["imagine"] == 1


def test_missing_key_is_caught_before_any_call(monkeypatch: pytest.MonkeyPatch, lotimage_emulator) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_LOTIMAGE_DEFAULT", json.dumps({"conn_type": "lotimage", "host": lotimage_emulator.url})
    )
    with pytest.raises(AuthError, match="no API key"):
        LotImageHook().imagine("a cat")
    assert lotimage_emulator.stats()["requests"]["imagine"] == 0


def test_banned_prompt(hook: LotImageHook) -> None:
    with pytest.raises(InvalidRequestError, match="Banned prompt detected"):
        hook.imagine("something nsfw")


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"prompt": "  "}, "prompt"),
        ({"prompt": "x" * 4001}, "prompt"),
        ({"prompt": "ok", "webhook": "ftp://x"}, "webhook"),
        ({"prompt": "ok", "cutting": "false"}, "cutting"),
    ],
)
def test_bad_input_never_reaches_the_service(
    hook: LotImageHook, lotimage_emulator, kwargs: dict, name: str
) -> None:
    prompt = kwargs.pop("prompt")
    with pytest.raises(LotImageInputError, match=name):
        hook.imagine(prompt, **kwargs)
    with pytest.raises(LotImageInputError, match="button"):
        hook.press_button("t", "u1")
    assert lotimage_emulator.stats()["requests"] == {"imagine": 0, "progress": 0, "button": 0}


def test_quota_exhausted(
    lotimage_emulator_factory, lotimage_api_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator = lotimage_emulator_factory(daily_quota=2)
    hook = connect(monkeypatch, emulator.url, lotimage_api_key)
    hook.imagine("one")
    hook.imagine("two")
    with pytest.raises(QuotaExhaustedError, match="Daily request limit reached"):
        hook.imagine("three")
    assert submissions(emulator)["imagine"] == 2


def test_unknown_task(hook: LotImageHook) -> None:
    with pytest.raises(TaskNotFoundError, match="Task not found"):
        hook.get_task_progress("no-such-task")


def test_failed_task_quotes_err_message(hook: LotImageHook, lotimage_emulator) -> None:
    lotimage_emulator.add_fault(
        "fail_task", err_message="Request cancelled due to output filters", progress=31
    )
    task_id = hook.imagine("a cat")
    with pytest.raises(TaskFailedError, match="Request cancelled due to output filters"):
        hook.wait_for_task(task_id, poll_interval=0.2, timeout=30)


def test_stall_is_detected(hook: LotImageHook, lotimage_emulator) -> None:
    lotimage_emulator.add_fault("stall", progress=93)
    task_id = hook.imagine("a cat")
    with pytest.raises(TaskStalledError, match="stalled at 93%"):
        hook.wait_for_task(task_id, poll_interval=0.2, timeout=30, stall_timeout=2)


def test_overall_timeout(hook: LotImageHook, lotimage_emulator) -> None:
    lotimage_emulator.add_fault("stall", progress=0)
    with pytest.raises(TaskTimeoutError, match="did not finish within 1 s"):
        hook.wait_for_task(hook.imagine("a cat"), poll_interval=0.2, timeout=1, stall_timeout=None)


@pytest.mark.parametrize("retry_after", [1.0, None], ids=["with-retry-after", "without-retry-after"])
def test_429_burst_is_retried(hook: LotImageHook, lotimage_emulator, retry_after: float | None) -> None:
    lotimage_emulator.add_fault("http_429", count=2, retry_after=retry_after)
    task_id = hook.imagine("a cat")
    assert task_id
    assert submissions(lotimage_emulator)["imagine"] == 1
    assert lotimage_emulator.stats()["requests"]["imagine"] == 3


def test_429_retry_after_is_honoured(hook: LotImageHook, lotimage_emulator) -> None:
    lotimage_emulator.add_fault("http_429", count=1, retry_after=1.5, endpoint="progress")
    started = time.monotonic()
    with pytest.raises(TaskNotFoundError):
        hook.get_task_progress("nope")
    assert time.monotonic() - started >= 1.5


def test_429_that_never_ends_gives_up(hook: LotImageHook, lotimage_emulator) -> None:
    lotimage_emulator.add_fault("http_429", count=None, retry_after=0)
    with pytest.raises(RateLimitedError):
        hook.imagine("a cat")
    assert submissions(lotimage_emulator)["imagine"] == 0


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "http_status", "status": 500},
        {"kind": "http_status", "status": 503},
        {"kind": "http_status", "status": 502, "html": True},
        {"kind": "http_status", "status": 504, "body_only": True},
        {"kind": "malformed_json"},
        {"kind": "drop_connection"},
    ],
)
def test_progress_recovers_from_transient_faults(hook: LotImageHook, lotimage_emulator, fault: dict) -> None:
    task_id = hook.imagine("a cat")
    lotimage_emulator.add_fault(fault.pop("kind"), endpoint="progress", count=2, **fault)
    assert hook.wait_for_task(task_id, poll_interval=0.2, timeout=30).is_finished


def test_imagine_503_is_resent_safely(hook: LotImageHook, lotimage_emulator) -> None:
    lotimage_emulator.add_fault("http_status", endpoint="imagine", status=503, count=1)
    assert hook.imagine("a cat")
    assert submissions(lotimage_emulator)["imagine"] == 1


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "drop_connection", "after_processing": True},
        {"kind": "http_status", "status": 502, "after_processing": True},
        {"kind": "http_status", "status": 504, "after_processing": True},
        {"kind": "malformed_json", "after_processing": True},
    ],
)
def test_ambiguous_submit_is_never_resent(hook: LotImageHook, lotimage_emulator, fault: dict) -> None:
    lotimage_emulator.add_fault(fault.pop("kind"), endpoint="imagine", count=1, **fault)
    with pytest.raises(AmbiguousSubmitError, match="may have created a paid LotImage task") as info:
        hook.imagine("a cat")
    assert "TaskProgressSensor" in str(info.value)
    assert lotimage_emulator.stats()["requests"]["imagine"] == 1
    assert submissions(lotimage_emulator)["imagine"] == 1


def test_read_timeout_after_submit_is_ambiguous(
    monkeypatch: pytest.MonkeyPatch, lotimage_emulator, lotimage_api_key
) -> None:
    hook = connect(monkeypatch, lotimage_emulator.url, lotimage_api_key, timeout=1)
    lotimage_emulator.add_fault("delay", endpoint="button", seconds=3, after_processing=True)
    parent = hook.wait_for_task(hook.imagine("a cat"), poll_interval=0.2, timeout=30)
    with pytest.raises(AmbiguousSubmitError, match="read timeout"):
        hook.press_button(parent.task_id, "U1")
    assert lotimage_emulator.stats()["requests"]["button"] == 1


@pytest.fixture
def refused_url() -> Iterator[str]:
    """A loopback URL that refuses connections: its port stays bound, not listening, for the test.

    Linux answers a connection with a reset, and no other process (another pytest-xdist worker,
    say) can start listening there meanwhile.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{s.getsockname()[1]}"


def test_connection_refused_is_safe_to_resend(monkeypatch: pytest.MonkeyPatch, refused_url: str) -> None:
    hook = connect(monkeypatch, refused_url, "k")
    with pytest.raises(ServiceUnreachableError):
        hook.imagine("a cat")


@pytest.mark.parametrize("mirror", [False, True], ids=["http-200", "http-mirrors-body"])
def test_both_http_status_styles(hook: LotImageHook, lotimage_emulator, mirror: bool) -> None:
    lotimage_emulator.set_config(mirror_http_status=mirror)
    with pytest.raises(TaskNotFoundError):
        hook.get_task_progress("missing")
    parent = hook.wait_for_task(hook.imagine("a cat"), poll_interval=0.2, timeout=30)
    upscale = hook.wait_for_task(hook.press_button(parent.task_id, "U1"), poll_interval=0.2, timeout=30)
    with pytest.raises(InvalidRequestError, match="Button not found"):
        hook.press_button(upscale.task_id, "U1")
    statuses = lotimage_emulator.stats()["http_statuses"]
    assert ("404" in statuses and "400" in statuses) == mirror


@pytest.mark.parametrize("fmt", ["float", "percent_string"])
def test_progress_formats(hook: LotImageHook, lotimage_emulator, fmt: str) -> None:
    lotimage_emulator.add_fault("progress_format", format=fmt)
    lotimage_emulator.add_fault("preview_url")
    seen: list[int] = []
    done = hook.wait_for_task(hook.imagine("a cat"), poll_interval=0.1, timeout=30, on_progress=seen.append)
    assert done.progress == 100 and done.image_url
    assert all(0 <= p < 100 for p in seen)


def test_no_image_url_at_100_fails(hook: LotImageHook, lotimage_emulator) -> None:
    lotimage_emulator.add_fault("no_image_url")
    with pytest.raises(TaskFailedError, match="no imageUrl"):
        hook.wait_for_task(hook.imagine("a cat"), poll_interval=0.2, timeout=30)


def test_limiter_keeps_the_key_under_its_rate(hook: LotImageHook, lotimage_emulator) -> None:
    for _ in range(10):
        with pytest.raises(TaskNotFoundError):
            hook.get_task_progress("missing")
    stats = lotimage_emulator.stats()
    assert stats["rate_limited"] == 0
    assert max(stats["peak_calls_per_second"].values()) <= 3


def test_async_progress_shares_one_session(hook: LotImageHook, lotimage_emulator) -> None:
    task_id = hook.imagine("a cat")

    async def main() -> list:
        hooks = [LotImageHook(retry_policy=FAST) for _ in range(5)]
        results = await asyncio.gather(*(h.aget_task_progress(task_id) for h in hooks))
        assert shared_sessions.count() == 0
        return results

    results = asyncio.run(main())
    assert {r.task_id for r in results} == {task_id}
    assert lotimage_emulator.stats()["rate_limited"] == 0


def test_async_errors_map_like_sync(hook: LotImageHook, lotimage_emulator) -> None:
    lotimage_emulator.add_fault("drop_connection", endpoint="progress", count=1)

    async def main() -> None:
        with pytest.raises(TaskNotFoundError):
            await LotImageHook(retry_policy=FAST).aget_task_progress("missing")
        lotimage_emulator.add_fault("http_status", endpoint="progress", status=500, count=None)
        with pytest.raises(TransientError):
            await LotImageHook(retry_policy=FAST).aget_task_progress("missing")

    asyncio.run(main())


# -- every retry loop, spent with the real policy ----------------------------------------------------

#: The policy every hook gets by default: the test exercises its decisions, not a faster copy.
REAL = RetryPolicy()
#: Loops that read progress, and how each ends once its attempts are spent.
READS_GIVEN_BACK = ("poll_once", "apoll_once")
READS_RAISED = ("get_task_progress", "aget_task_progress")
PAID = ("imagine", "press_button")
#: Outages that last longer than a loop: the emulator's fault (``None``: a port that refuses
#: connections), the error a read ends with, and whether a paid call may be resent after it.
OUTAGES: dict[str, tuple[dict[str, object] | None, type[Exception], bool]] = {
    "503": ({"kind": "http_status", "status": 503}, TransientError, True),
    "429": ({"kind": "http_429", "retry_after": None}, RateLimitedError, True),
    "refused": (None, ServiceUnreachableError, True),
    "502": ({"kind": "http_status", "status": 502}, TransientError, False),
}
ENDPOINT = {"imagine": "imagine", "press_button": "button"}


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[float]]:
    """Record the back-offs tenacity would sleep, and the holds a 429 puts on the limiter.

    Only tenacity's sleep is replaced, on the loops :class:`RetryPolicy` builds: its stop, wait
    and retry decisions are the real ones, and the limiter still paces every attempt.
    """
    seen: dict[str, list[float]] = {"slept": [], "held": []}
    sync_loop, async_loop = RetryPolicy.retrying, RetryPolicy.aretrying

    def retrying(self: RetryPolicy, *args: object, **kwargs: object) -> object:
        loop = sync_loop(self, *args, **kwargs)  # type: ignore[arg-type]
        loop.sleep = lambda seconds: seen["slept"].append(float(seconds))
        return loop

    def aretrying(self: RetryPolicy, *args: object, **kwargs: object) -> object:
        loop = async_loop(self, *args, **kwargs)  # type: ignore[arg-type]

        async def sleep(seconds: float) -> None:
            seen["slept"].append(float(seconds))

        loop.sleep = sleep
        return loop

    monkeypatch.setattr(RetryPolicy, "retrying", retrying)
    monkeypatch.setattr(RetryPolicy, "aretrying", aretrying)
    return seen


def _spend(
    hook: LotImageHook, loop: str, monkeypatch: pytest.MonkeyPatch, held: list[float]
) -> tuple[str, object]:
    """Run one call of ``loop``: ``("returned", value)`` or ``("raised", error)``."""
    limiter = hook.limiter
    monkeypatch.setattr(limiter, "block_for", held.append)

    async def ablock_for(seconds: float) -> None:
        held.append(seconds)

    monkeypatch.setattr(limiter, "ablock_for", ablock_for)
    task_id = "0o2f4ja2a1-ka2e-ow1c-br93-9al9ad2"
    call = {
        "imagine": lambda: hook.imagine("An owl with cat ears hanging on a tree"),
        "press_button": lambda: hook.press_button(task_id, "U1"),
    }.get(loop) or (lambda: getattr(hook, loop)(task_id))
    try:
        outcome = call()
        return "returned", asyncio.run(outcome) if asyncio.iscoroutine(outcome) else outcome
    except Exception as error:  # the outcome under test
        return "raised", error


def _backoffs_follow_the_policy(slept: list[float]) -> None:
    """The real policy's back-off: 1, 2, 4, 8, 16 s (capped at 30) times 0.5-1 of jitter."""
    assert len(slept) == REAL.max_attempts - 1, slept
    for attempt, seconds in enumerate(slept, 1):
        full = min(REAL.max_delay, REAL.base_delay * 2 ** (attempt - 1))
        assert 0.5 * full <= seconds <= full, (attempt, slept)


@pytest.mark.parametrize("outage", list(OUTAGES))
@pytest.mark.parametrize("loop", READS_GIVEN_BACK + READS_RAISED + PAID)
def test_every_retry_loop_ends_as_documented(
    lotimage_emulator_factory,
    lotimage_api_key: str,
    monkeypatch: pytest.MonkeyPatch,
    waits: dict[str, list[float]],
    capfd: pytest.CaptureFixture[str],
    refused_url: str,
    loop: str,
    outage: str,
) -> None:
    """An outage outlasts one call's retries, sync and async, paid and read, with the default policy.

    A waiting loop's read gives the last error back (counted as "no progress"); any other read
    raises it; a paid call is resent only while the failure proves nothing was created (429, 503,
    a refused connection) and then raises the last error, and otherwise stops at once with
    :class:`AmbiguousSubmitError`: never a resend that could pay twice.
    """
    fault, read_error, resendable = OUTAGES[outage]
    emulator = lotimage_emulator_factory(rate_limit=100.0)
    url = emulator.url
    if fault is None:
        url = refused_url
    else:
        emulator.add_fault(str(fault["kind"]), count=None, **{k: v for k, v in fault.items() if k != "kind"})
    conn = {"conn_type": "lotimage", "host": url, "password": lotimage_api_key}
    conn["extra"] = {"rate_limit": 100, "rate_limit_scope": "process"}  # type: ignore[assignment]
    monkeypatch.setenv("AIRFLOW_CONN_LOTIMAGE_DEFAULT", json.dumps(conn))
    hook = LotImageHook()
    assert hook.retry_policy == REAL

    how, outcome = _spend(hook, loop, monkeypatch, waits["held"])

    paid = loop in PAID
    attempts = REAL.max_attempts if resendable or not paid else 1
    if paid and not resendable:
        assert (how, type(outcome)) == ("raised", AmbiguousSubmitError), outcome
        assert waits["slept"] == []
    else:
        ending = "returned" if loop in READS_GIVEN_BACK else "raised"
        assert (how, type(outcome)) == (ending, read_error), outcome
        _backoffs_follow_the_policy(waits["slept"])
    given_back = f"failed {REAL.max_attempts} times in a row ({outcome}); the wait counts it as no progress"
    assert capfd.readouterr().out.count(given_back) == (loop in READS_GIVEN_BACK)
    held = waits["slept"] if outage == "429" else []
    assert waits["held"] == held, "a 429 holds the key back for the coming back-off, nothing else does"
    stats = emulator.stats()
    endpoint = ENDPOINT.get(loop, "progress")
    assert stats["requests"][endpoint] == (0 if fault is None else attempts)
    assert stats["submissions"] == {"imagine": 0, "button": 0}


def test_a_paid_call_is_never_given_back(hook: LotImageHook, lotimage_emulator) -> None:
    """Only a waiting loop's read may end in "no progress": a paid call's failure is always raised."""
    call = Call("imagine", "/midjourney/v1/imagine", {"prompt": "a cat"}, paid=True, parse=lambda reply: "id")
    sent: list[str] = []
    with pytest.raises(ValueError, match="never given back"):
        REAL.run(call, hook.limiter, hook.log, lambda: sent.append("imagine"), give_back=True)
    assert sent == []
    assert lotimage_emulator.stats()["requests"]["imagine"] == 0
