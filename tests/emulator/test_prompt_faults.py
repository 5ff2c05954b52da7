"""Fault rules that pick a prompt: one batch, each prompt its own fate, whatever the order."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pytest
import requests
from lotimage_emulator import FaultRule
from lotimage_emulator.faults import FaultError

from .helpers import Client

if TYPE_CHECKING:
    from collections.abc import Callable

    from lotimage_emulator import Emulator

BANNED = {"status": 400, "errMessage": "Banned prompt detected"}
FILTERED = "Request cancelled due to output filters"
PROMPTS = ("An owl on a branch", "A castle at dusk", "A dragon in the rain", "A ghost ship", "A lamp")


def _batch_rules(emu: Emulator) -> list[FaultRule]:
    """Reject the castle at submission, fail the dragon at 46 %, stall the ghost, lose the lamp's link."""
    return [
        emu.add_fault(
            "http_status",
            endpoint="imagine",
            status=400,
            err_message="Banned prompt detected",
            body_only=None,
            prompt_contains="castle",
        ),
        emu.add_fault("fail_task", err_message=FILTERED, progress=46, prompt_contains="dragon"),
        emu.add_fault("stall", progress=93, prompt_contains="ghost"),
        emu.add_fault("no_image_url", prompt_contains="lamp"),
    ]


@pytest.mark.parametrize("order", [(0, 1, 2, 3, 4), (4, 3, 2, 1, 0), (2, 4, 1, 0, 3)])
def test_each_prompt_meets_its_own_fault_whatever_the_order(emu: Emulator, order: tuple[int, ...]) -> None:
    client = Client(emu.url)
    rules = _batch_rules(emu)
    answers = {PROMPTS[i]: client.imagine(PROMPTS[i]) for i in order}
    castle = answers.pop("A castle at dusk")
    assert (castle.status_code, castle.json()) == (200, BANNED)
    tasks = {prompt: answer.json()["taskId"] for prompt, answer in answers.items()}
    owl = client.wait(tasks["An owl on a branch"])
    assert owl["status"] == 200 and owl["progress"] == 100 and owl["imageUrl"]
    dragon = client.wait(tasks["A dragon in the rain"])
    assert (dragon["status"], dragon["errMessage"], dragon["progress"]) == (400, FILTERED, 46)
    lamp = client.wait(tasks["A lamp"])
    assert lamp["progress"] == 100 and lamp["imageUrl"] == ""
    time.sleep(0.2)  # twice an imagine at this time scale
    ghost = client.progress(tasks["A ghost ship"]).json()
    assert (ghost["status"], ghost["progress"], ghost["imageUrl"]) == (200, 93, "")
    assert [rule.used for rule in rules] == [1, 1, 1, 1]
    stats = emu.stats()
    assert stats["submissions"]["imagine"] == 4
    assert (stats["tasks"]["failed"], stats["tasks"]["stalled"], stats["tasks"]["finished"]) == (1, 1, 2)


def test_count_and_share_count_matching_calls_only(emu: Emulator) -> None:
    client = Client(emu.url)
    rule = emu.add_fault(
        "http_status", status=400, err_message="Banned prompt detected", count=2, prompt_contains="castle"
    )
    prompts = ["owl", "castle", "owl", "castle", "owl", "castle"]
    assert [client.imagine(p).json()["status"] for p in prompts] == [200, 400, 200, 400, 200, 200]
    assert rule.used == 2 and rule.exhausted
    emu.clear_faults()
    shared = emu.add_fault("http_status", status=503, count=None, share=0.5, prompt_contains="Castle")
    prompts = ["Castle", "owl", "Castle", "castle", "Castle", "owl", "Castle"]
    statuses = [client.imagine(p).status_code for p in prompts]
    assert statuses == [200, 200, 503, 200, 200, 200, 503], "every second 'Castle'; case-sensitive"
    assert (shared.used, shared.seen) == (2, 4)


def test_for_seconds_window_opens_at_the_first_matching_call(emu: Emulator) -> None:
    client = Client(emu.url)
    rule = emu.add_fault("http_status", status=502, for_seconds=0.4, prompt_contains="castle")
    for _ in range(3):
        assert client.imagine("owl").status_code == 200
    time.sleep(0.5)  # longer than the window: it has not opened yet
    assert client.imagine("castle").status_code == 502
    assert client.imagine("owl").status_code == 200
    assert client.imagine("castle").status_code == 502
    time.sleep(0.5)
    assert client.imagine("castle").status_code == 200
    assert rule.used == 2 and rule.exhausted


@pytest.mark.parametrize("mirror", [False, True])
def test_a_banned_prompt_fault_answers_like_the_service(
    make_emulator: Callable[..., Emulator], mirror: bool
) -> None:
    """With ``body_only=None`` the fault's 400 is the service's own refusal, byte for byte."""
    emu = make_emulator(banned_words=("castle",), mirror_http_status=mirror)
    client = Client(emu.url)
    emu.add_fault(
        "http_status",
        status=400,
        err_message="Banned prompt detected",
        body_only=None,
        prompt_contains="dragon",
    )
    genuine, injected = client.imagine("A castle"), client.imagine("A dragon")
    for answer in (genuine, injected):
        assert answer.status_code == (400 if mirror else 200)
        assert answer.json() == BANNED
    assert injected.content == genuine.content
    assert injected.headers["Content-Type"] == genuine.headers["Content-Type"]
    assert emu.stats()["answers_by_endpoint"]["imagine"] == {"400": 2}
    emu.add_fault("http_status", status=400, prompt_contains="dragon")
    default = client.imagine("A dragon")
    assert default.status_code == 400, "body_only=False keeps the HTTP status, whatever the config"
    assert default.json() == {"status": 400, "errMessage": "Invalid parameter"}, "the contract's text"
    emu.add_fault("http_status", status=404, body_only=True)
    assert client.progress("x").json() == {"status": 404, "errMessage": "Task not found"}


def test_button_calls_match_their_parents_prompt(emu: Emulator) -> None:
    client = Client(emu.url)
    owl, dragon = client.submit("An owl"), client.submit("A dragon")
    client.wait(owl)
    client.wait(dragon)
    refused = emu.add_fault(
        "http_status", endpoint="button", status=503, body_only=True, prompt_contains="dragon"
    )
    emu.add_fault("fail_task", endpoint="button", err_message=FILTERED, progress=15, prompt_contains="owl")
    upscale = client.press(owl, "U1")
    assert refused.used == 0, "the owl's press did not match"
    assert client.button(dragon, "U1").json() == {"status": 503, "errMessage": "Queue full"}
    failed = client.wait(upscale)
    assert (failed["status"], failed["errMessage"], failed["progress"]) == (400, FILTERED, 15)
    assert client.wait(client.press(dragon, "U2"))["imageUrl"], "the dragon's upscale finishes"
    assert [task["prompt"] for task in emu.tasks() if task["kind"] == "upscale"] == ["An owl", "A dragon"]


def test_progress_reads_and_pictures_match_their_tasks_prompt(emu: Emulator) -> None:
    client = Client(emu.url)
    owl, dragon = client.submit("An owl"), client.submit("A dragon")
    client.wait(owl)
    client.wait(dragon)
    emu.add_fault("progress_format", format="percent_string", prompt_contains="owl")
    emu.add_fault("http_status", endpoint="progress", status=502, count=None, prompt_contains="dragon")
    assert client.progress(owl).json()["progress"] == "100%"
    assert client.progress(dragon).status_code == 502
    assert client.progress("no-such-task").json()["status"] == 404, "no task, no prompt: no match"
    emu.clear_faults()
    owl_url, dragon_url = client.progress(owl).json()["imageUrl"], client.progress(dragon).json()["imageUrl"]
    emu.add_fault("slow_body", seconds=0.6, prompt_contains="dragon")
    started = time.monotonic()
    assert client.get(owl_url).status_code == 200
    assert time.monotonic() - started < 0.5, "the owl's picture comes at once"
    assert client.get(dragon_url).status_code == 200
    assert time.monotonic() - started >= 0.6
    assert emu.stats()["events"]["slow_bodies"] == 1


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "http_status", "prompt_contains": ""},
        {"kind": "fail_task", "prompt_contains": 5},
        {"kind": "stall", "prompt_contains": ["ghost"]},
        {"kind": "no_image_url", "prompt_contains": True},
        {"kind": "http_status", "body_only": "yes"},
        {"kind": "http_status", "status": 399, "prompt_contains": "castle"},
    ],
)
def test_bad_matchers_are_refused(emu: Emulator, body: dict[str, Any]) -> None:
    answer = requests.post(emu.url + "/_emulator/faults", json=body, timeout=5)
    assert answer.status_code == 400 and answer.json()["errMessage"]
    assert emu.faults() == []


def test_matcher_over_admin_and_python_api(emu: Emulator) -> None:
    answer = requests.post(
        emu.url + "/_emulator/faults", json={"kind": "stall", "prompt_contains": "ghost"}, timeout=5
    )
    assert answer.status_code == 200, answer.text
    [shown] = answer.json()["rules"]
    assert (shown["prompt_contains"], shown["body_only"]) == ("ghost", False)
    rule = FaultRule.from_dict({"kind": "http_status", "body_only": None, "prompt_contains": "castle"})
    assert rule.matches("imagine", "A castle") and not rule.matches("imagine", "A Castle")
    assert not rule.matches("imagine", None)
    assert FaultRule.from_dict(rule.to_dict()).prompt_contains == "castle"
    with pytest.raises(FaultError, match="prompt_contains"):
        emu.add_fault("stall", prompt_contains="")
