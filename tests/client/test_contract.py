"""The one response parser: normalisation, the error rows of the contract, and fuzzing."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_lotimage.client import contract as api
from airflow_provider_lotimage.exceptions import (
    AuthError,
    InvalidRequestError,
    LotImageError,
    MalformedResponseError,
    QuotaExhaustedError,
    RateLimitedError,
    TaskFailedError,
    TaskNotFoundError,
    TransientError,
)

FINISHED = {
    "taskId": "t-1",
    "prompt": "An owl with cat ears hanging on a tree",
    "imageUrl": "https://cdn.example/x.png",
    "progress": 100,
    "createdAt": "2023-08-01T14:03:01.817Z",
    "buttons": list(api.GRID_BUTTONS),
    "originatingMessageId": "m-1",
    "ref": "",
}


def body(**changes: object) -> str:
    return json.dumps({**FINISHED, **changes})


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (0, 0),
        (45, 45),
        (45.7, 45),
        ("45%", 45),
        (" 62 % ", 62),
        ("93", 93),
        ("100%", 100),
        (100.0, 100),
        (None, 0),
        ("", 0),
        (150, 100),
        (-3, 0),
    ],
)
def test_progress_variants_normalise(raw: object, expected: int) -> None:
    assert api.normalise_progress(raw) == expected


@pytest.mark.parametrize("raw", [True, "half", [], {}, float("nan"), "45%%"])
def test_unreadable_progress_is_malformed(raw: object) -> None:
    with pytest.raises(MalformedResponseError):
        api.normalise_progress(raw)


def test_finished_task_parses_to_result_dict() -> None:
    result = api.parse_progress(200, body(status=200)).to_result()
    assert result == {
        "lotimage_task_id": "t-1",
        "prompt": FINISHED["prompt"],
        "image_url": FINISHED["imageUrl"],
        "image_urls": [],
        "progress": 100,
        "buttons": list(api.GRID_BUTTONS),
        "created_at": FINISHED["createdAt"],
        "originating_task_id": "m-1",
    }


def test_cutting_urls_are_kept_in_button_order() -> None:
    urls = [f"https://cdn.example/{n}.png" for n in range(1, 5)]
    assert api.parse_progress(200, body(imageUrls=urls)).image_urls == tuple(urls)


def test_preview_url_below_100_is_not_finished() -> None:
    progress = api.parse_progress(200, body(progress="62%", imageUrl="https://cdn.example/preview.webp"))
    assert progress.progress == 62
    assert not progress.is_finished


def test_100_without_image_url_is_a_failure() -> None:
    with pytest.raises(TaskFailedError, match="no imageUrl"):
        api.parse_progress(200, body(imageUrl=""))


@pytest.mark.parametrize("http_status", [200, 400])
def test_failed_task_quotes_err_message(http_status: int) -> None:
    text = body(status=400, progress=46, imageUrl="", errMessage="Banned prompt detected")
    with pytest.raises(TaskFailedError, match="Banned prompt detected") as info:
        api.parse_progress(http_status, text)
    assert info.value.task_id == "t-1"


@pytest.mark.parametrize(
    ("status", "message", "error"),
    [
        (401, "Key verification failed, please check whether the key is correct", AuthError),
        (400, "Invalid parameter", InvalidRequestError),
        (400, "Button not found", InvalidRequestError),
        (403, "Daily request limit reached", QuotaExhaustedError),
        (404, "Task not found", TaskNotFoundError),
        (429, "Too many requests", RateLimitedError),
        (500, "Internal error", TransientError),
        (502, "Bad gateway", TransientError),
        (503, "Queue full", TransientError),
        (504, "Gateway timeout", TransientError),
    ],
)
@pytest.mark.parametrize("mirrored", [False, True], ids=["http-200", "http-mirrors-body"])
def test_error_rows(status: int, message: str, error: type[LotImageError], mirrored: bool) -> None:
    text = json.dumps({"status": status, "errMessage": message})
    http_status = status if mirrored else 200
    with pytest.raises(error, match=message.split(",")[0]) as info:
        api.parse_submit(http_status, text)
    assert info.value.status == status
    with pytest.raises(error):
        api.parse_progress(http_status, text, task_id="t-1")


def test_http_error_with_success_body_is_still_an_error() -> None:
    with pytest.raises(TransientError):
        api.parse_submit(503, json.dumps({"status": 200, "taskId": "t"}))


def test_submit_without_task_id_is_malformed() -> None:
    with pytest.raises(MalformedResponseError):
        api.parse_submit(200, json.dumps({"status": 200}))


@pytest.mark.parametrize("text", ["<html>Bad gateway</html>", "", "{", "[1, 2]", "null"])
def test_unreadable_bodies(text: str) -> None:
    with pytest.raises(TransientError):
        api.parse_submit(200, text)
    with pytest.raises(TransientError):
        api.parse_progress(502, text)


def test_retry_after_header() -> None:
    assert api.parse_retry_after("2") == 2.0
    assert api.parse_retry_after("0.5") == 0.5
    assert api.parse_retry_after(None) is None
    assert api.parse_retry_after("Wed, 21 Oct 2026 07:28:00 GMT") is None
    assert api.parse_retry_after("100000") == 300.0


def test_rate_limited_keeps_retry_after() -> None:
    with pytest.raises(RateLimitedError) as info:
        api.parse_progress(
            429, json.dumps({"status": 429, "errMessage": "Too many requests"}), retry_after=1.5
        )
    assert info.value.retry_after == 1.5


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=20,
)
TASK_KEYS = st.sampled_from(
    ["taskId", "status", "progress", "imageUrl", "imageUrls", "buttons", "errMessage", "prompt", "createdAt"]
)
TASKISH = st.dictionaries(TASK_KEYS, JSON, max_size=9)


@settings(max_examples=400, deadline=None)
@given(
    http_status=st.sampled_from([200, 201, 400, 401, 403, 404, 429, 500, 502, 503, 504, 302]),
    payload=st.one_of(JSON, TASKISH),
    as_text=st.booleans(),
)
def test_parser_returns_typed_result_or_own_error(http_status: int, payload: object, as_text: bool) -> None:
    text = json.dumps(payload) if as_text else json.dumps(payload).encode()
    for parse in (
        lambda: api.parse_progress(http_status, text, task_id="t"),
        lambda: api.parse_submit(http_status, text),
    ):
        try:
            outcome = parse()
        except LotImageError:
            continue
        assert isinstance(outcome, api.TaskProgress | str)
        if isinstance(outcome, api.TaskProgress):
            assert 0 <= outcome.progress <= 100
            json.dumps(outcome.to_result())


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_parser_survives_arbitrary_bytes(data: bytes) -> None:
    try:
        outcome = api.parse_progress(200, data, task_id="t")
    except LotImageError:
        return
    assert isinstance(outcome, api.TaskProgress)
