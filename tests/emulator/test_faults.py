"""Every fault kind, in-process and over the admin API, with endpoint filters and counts."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pytest
import requests
from lotimage_emulator import FaultRule
from lotimage_emulator.faults import FaultError

from airflow_provider_lotimage.client.contract import parse_progress
from airflow_provider_lotimage.exceptions import MalformedResponseError, TaskFailedError, TransientError

from .helpers import Client

if TYPE_CHECKING:
    from lotimage_emulator import Emulator


def _admin(emu: Emulator, method: str, path: str, body: Any = None) -> requests.Response:
    return requests.request(method, emu.url + "/_emulator/" + path, json=body, timeout=5)


def test_http_429_burst_with_and_without_retry_after(emu: Emulator, client: Client) -> None:
    emu.add_fault("http_429", endpoint="imagine", count=2)
    first, second = client.imagine(), client.imagine()
    for response in (first, second):
        assert response.status_code == 429 and response.headers["Retry-After"] == "1"
        assert response.json() == {"status": 429, "errMessage": "Too many requests"}
    assert client.imagine().json()["status"] == 200, "the burst is used up"
    emu.add_fault("http_429", retry_after=None)
    bare = client.imagine()
    assert bare.status_code == 429 and "Retry-After" not in bare.headers
    emu.add_fault("http_429", retry_after=2.5, body_only=True)
    in_body = client.imagine()
    assert in_body.status_code == 200 and in_body.json()["status"] == 429
    assert in_body.headers["Retry-After"] == "2.5"
    stats = emu.stats()
    assert stats["submissions"]["imagine"] == 1 and stats["rate_limited"] == 4


@pytest.mark.parametrize("code", [500, 502, 503, 504])
def test_http_status_json_and_html(emu: Emulator, client: Client, code: int) -> None:
    emu.add_fault("http_status", status=code)
    response = client.imagine()
    assert response.status_code == code
    assert response.json()["status"] == code and response.json()["errMessage"]
    emu.add_fault("http_status", status=code, html=True, endpoint="progress")
    assert client.imagine().json()["status"] == 200, "endpoint filter: imagine is untouched"
    page = client.progress("anything")
    assert page.status_code == code and page.headers["Content-Type"].startswith("text/html")
    assert page.text.lstrip().startswith("<html>")
    with pytest.raises(TransientError):
        parse_progress(page.status_code, page.text)
    emu.add_fault("http_status", status=code, body_only=True, err_message="Queue full")
    in_body = client.progress("anything")
    assert in_body.status_code == 200 and in_body.json() == {"status": code, "errMessage": "Queue full"}
    assert emu.stats()["submissions"]["imagine"] == 1


def test_malformed_json_before_and_after_processing(emu: Emulator, client: Client) -> None:
    emu.add_fault("malformed_json", endpoint="imagine")
    broken = client.imagine()
    assert broken.status_code == 200
    with pytest.raises(ValueError):
        broken.json()
    assert emu.stats()["submissions"]["imagine"] == 0
    emu.add_fault("malformed_json", endpoint="imagine", after_processing=True)
    broken = client.imagine()
    with pytest.raises(ValueError):
        broken.json()
    assert emu.stats()["submissions"]["imagine"] == 1, "processed, then the answer was spoilt"
    emu.add_fault("malformed_json", body="<<not json>>")
    assert client.progress("x").text == "<<not json>>"
    with pytest.raises(MalformedResponseError):
        parse_progress(200, "<<not json>>")
    assert emu.stats()["answers"]["malformed"] == 3


def test_drop_connection_before_and_after_processing(emu: Emulator, client: Client) -> None:
    emu.add_fault("drop_connection", endpoint="imagine")
    with pytest.raises(requests.ConnectionError):
        client.imagine()
    assert emu.stats()["submissions"]["imagine"] == 0 and emu.tasks() == []
    emu.add_fault("drop_connection", endpoint="imagine", after_processing=True)
    with pytest.raises(requests.ConnectionError):
        client.imagine()
    stats = emu.stats()
    assert stats["submissions"]["imagine"] == 1 and len(emu.tasks()) == 1, "the ambiguous case"
    assert stats["events"]["dropped_connections"] == 2 and stats["answers"]["dropped"] == 2
    assert client.imagine().json()["status"] == 200


def test_delay_before_and_after_processing(emu: Emulator, client: Client) -> None:
    emu.add_fault("delay", seconds=0.3, endpoint="progress")
    started = time.monotonic()
    assert client.progress("missing").json()["status"] == 404
    assert time.monotonic() - started >= 0.3
    emu.add_fault("delay", seconds=0.6, endpoint="imagine", after_processing=True)
    with pytest.raises(requests.ReadTimeout):
        client.post("/midjourney/v1/imagine", json={"prompt": "owl"}, timeout=0.2)
    assert emu.stats()["submissions"]["imagine"] == 1, "the task exists although the client timed out"
    emu.add_fault("delay", seconds=0.6, endpoint="imagine")
    with pytest.raises(requests.ReadTimeout):
        client.post("/midjourney/v1/imagine", json={"prompt": "owl"}, timeout=0.2)
    assert emu.stats()["submissions"]["imagine"] == 1, "not yet processed when the client gave up"
    time.sleep(0.6)
    assert emu.stats()["events"]["delays"] == 3


def test_fail_task(emu: Emulator, client: Client) -> None:
    emu.add_fault("fail_task")
    default = client.submit()
    emu.add_fault("fail_task", progress=15, status=500, err_message="Internal error", endpoint="button")
    ok = client.submit()
    body = client.wait(default)
    assert body["status"] == 400 and body["errMessage"] == "Task timeout" and body["progress"] == 62
    assert body["imageUrl"] == "" and body["buttons"] == []
    with pytest.raises(TaskFailedError):
        parse_progress(200, client.progress(default).text)
    assert client.wait(ok)["status"] == 200
    body = client.wait(client.press(ok, "V1"))
    assert (body["status"], body["errMessage"], body["progress"]) == (500, "Internal error", 15)
    assert emu.stats()["tasks"]["failed"] == 2
    assert client.button(default, "U1").json()["errMessage"] == "Task is not finished"


def test_fail_task_content_filter_at_zero(emu: Emulator, client: Client) -> None:
    emu.add_fault("fail_task", progress=0, err_message="Request cancelled due to output filters")
    task = client.submit()
    body = client.wait(task)
    assert body == client.progress(task).json()
    assert (body["status"], body["progress"]) == (400, 0)


@pytest.mark.parametrize("at", [93, 0])
def test_stall(emu: Emulator, client: Client, at: int) -> None:
    emu.add_fault("stall", progress=at)
    stalled, normal = client.submit(), client.submit()
    assert client.wait(normal)["progress"] == 100
    time.sleep(0.2)  # far longer than an imagine at this time scale
    for _ in range(3):
        body = client.progress(stalled).json()
        assert body["status"] == 200 and body["progress"] == at and body["imageUrl"] == ""
    assert emu.stats()["tasks"]["stalled"] == 1


@pytest.mark.parametrize(
    ("style", "check"),
    [
        ("float", lambda value: isinstance(value, float)),
        ("percent_string", lambda value: isinstance(value, str) and value.endswith("%")),
        ("int", lambda value: isinstance(value, int)),
    ],
)
def test_progress_format(emu: Emulator, client: Client, style: str, check: Any) -> None:
    task = client.submit()
    emu.add_fault("progress_format", format=style)
    seen = []
    while True:
        response = client.progress(task)
        value = response.json()["progress"]
        assert check(value), value
        seen.append(value)
        parsed = parse_progress(200, response.text)
        if parsed.progress == 100:
            break
        time.sleep(0.01)
    assert seen[-1] in (100, 100.0, "100%")


def test_preview_url_while_running(make_emulator: Any) -> None:
    emu = make_emulator(time_scale=0.01)
    client = Client(emu.url)
    emu.add_fault("preview_url")
    task = client.submit()
    running = client.progress(task).json()
    assert running["progress"] < 100 and running["imageUrl"], "a preview link while running"
    preview = client.get(running["imageUrl"])
    assert preview.status_code == 200 and preview.content[:4] == b"\x89PNG"
    assert not parse_progress(200, client.progress(task).text).is_finished
    done = client.wait(task)
    assert done["imageUrl"] != running["imageUrl"]


def test_no_image_url(emu: Emulator, client: Client) -> None:
    emu.add_fault("no_image_url")
    task = client.submit(cutting=True)
    body = client.wait(task)
    assert body["progress"] == 100 and body["imageUrl"] == "" and "imageUrls" not in body
    with pytest.raises(TaskFailedError):
        parse_progress(200, client.progress(task).text)
    assert client.wait(client.submit())["imageUrl"]


def test_unlimited_and_exhausted_rules(emu: Emulator, client: Client) -> None:
    rule = emu.add_fault("http_status", status=503, count=None, endpoint="progress")
    for _ in range(4):
        assert client.progress("x").status_code == 503
    assert rule.used == 4 and rule.remaining is None
    assert emu.remove_fault(rule.id)
    assert client.progress("x").status_code == 200
    zero = emu.add_fault("http_status", count=0)
    assert client.progress("x").status_code == 200 and zero.used == 0


def test_fault_for_seconds_is_an_outage_of_that_length(emu: Emulator, client: Client) -> None:
    """A window rule spoils every matching call from its first firing for that long, then stops."""
    rule = emu.add_fault("http_status", status=502, endpoint="progress", for_seconds=0.6)
    assert rule.count is None and rule.opened_at is None, "no count: unlimited within the window"
    assert client.imagine().json()["status"] == 200, "other endpoints are untouched"
    time.sleep(0.3)  # the window opens at the first matching call, not when the rule is added
    opened = time.time()
    statuses = []
    while time.time() - opened < 0.5:
        statuses.append(client.progress("x").status_code)
    assert rule.opened_at is not None and opened - 0.1 <= rule.opened_at <= opened + 0.1
    assert set(statuses) == {502} and len(statuses) == rule.used >= 3
    assert rule.remaining is None and not rule.exhausted
    time.sleep(max(0.0, rule.opened_at + 0.6 - time.time()))
    assert client.progress("x").status_code == 200, "the outage is over"
    assert rule.exhausted and rule.remaining == 0 and rule.used == len(statuses)
    capped = emu.add_fault("http_status", endpoint="progress", for_seconds=60, count=2)
    assert [client.progress("x").status_code for _ in range(3)] == [503, 503, 200], "count still caps"
    assert capped.exhausted
    answer = _admin(emu, "POST", "faults", {"kind": "http_429", "for_seconds": 30, "retry_after": None})
    [shown] = answer.json()["rules"]
    assert (shown["for_seconds"], shown["count"], shown["opened_at"]) == (30, None, None)
    assert client.imagine().status_code == 429
    [*_, live] = _admin(emu, "GET", "faults").json()["rules"]
    assert live["opened_at"] is not None and live["remaining"] is None


def test_admin_fault_endpoints(emu: Emulator, client: Client) -> None:
    answer = _admin(emu, "POST", "faults", {"kind": "http_status", "status": 502, "endpoint": "imagine"})
    assert answer.status_code == 200
    [rule] = answer.json()["rules"]
    assert {"id", "kind", "endpoint", "count", "remaining", "status", "after_processing"} <= set(rule)
    assert client.imagine().status_code == 502
    answer = _admin(
        emu,
        "POST",
        "faults",
        [
            {"kind": "drop_connection", "after_processing": True},
            {"kind": "progress_format", "format": "percent_string"},
        ],
    )
    assert [r["count"] for r in answer.json()["rules"]] == [1, None]
    with pytest.raises(requests.ConnectionError):
        client.imagine()
    assert len(emu.tasks()) == 1
    assert _admin(emu, "GET", "faults").json()["rules"][0]["remaining"] == 0
    answer = _admin(
        emu,
        "POST",
        "faults",
        {"rules": [{"kind": "stall", "progress": 0}], "flags": {"mirror_http_status": True}},
    )
    assert answer.json()["config"]["mirror_http_status"] is True
    assert client.progress("x").status_code == 404
    assert _admin(emu, "DELETE", "faults").json() == {"status": 200}
    assert emu.faults() == []
    assert emu.config.mirror_http_status is True, "clearing faults keeps flags"
    rule_id = _admin(emu, "POST", "faults", {"kind": "delay"}).json()["rules"][0]["id"]
    assert _admin(emu, "DELETE", f"faults/{rule_id}").status_code == 200
    assert _admin(emu, "DELETE", f"faults/{rule_id}").status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "nope"},
        {"kind": "http_status", "status": 200},
        {"kind": "http_status", "endpoint": "upload"},
        {"kind": "stall", "progress": 100},
        {"kind": "fail_task", "endpoint": "progress"},
        {"kind": "progress_format", "format": "roman"},
        {"kind": "delay", "seconds": -1},
        {"kind": "delay", "colour": "red"},
        {"kind": "http_429", "count": -2},
        {"kind": "http_status", "for_seconds": 0},
        {"kind": "http_status", "for_seconds": "a minute"},
        {"rules": [{"kind": "delay"}], "flags": {"no_such_flag": 1}},
        {"flags": {"rate_limit": "fast"}},
        {"flags": {"port": 1}},
        "just a string",
    ],
)
def test_admin_rejects_bad_rules_without_applying_any(emu: Emulator, body: Any) -> None:
    answer = _admin(emu, "POST", "faults", body)
    assert answer.status_code == 400 and answer.json()["errMessage"]
    assert emu.faults() == []


def test_fault_rule_python_api() -> None:
    rule = FaultRule.build("progress_format", format="float")
    assert rule.count is None and rule.stage == "progress"
    assert FaultRule.build("fail_task").err_message == "Task timeout"
    assert FaultRule.from_dict(rule.to_dict()).format == "float"
    with pytest.raises(FaultError):
        FaultRule.build("delay", endpoint="everything")


def test_a_share_of_matching_calls_spread_evenly(emu: Emulator, client: Client) -> None:
    emu.add_fault("http_429", endpoint="progress", count=None, share=0.25)
    answers = [client.progress("no-such-task").status_code for _ in range(12)]
    assert [i for i, status in enumerate(answers) if status == 429] == [3, 7, 11], answers
    assert client.imagine().json()["status"] == 200, "the endpoint filter still applies"
    emu.clear_faults()
    created = _admin(emu, "POST", "faults", {"kind": "http_status", "status": 502, "share": 0.5, "count": 2})
    assert created.status_code == 200, created.text
    statuses = [client.imagine().status_code for _ in range(6)]
    assert statuses == [200, 502, 200, 502, 200, 200], "count still caps the firings"
    for bad in (0, 1.5, "half"):
        with pytest.raises(FaultError, match="share"):
            FaultRule.build("http_429", share=bad)
