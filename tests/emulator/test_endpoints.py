"""The three endpoints, the vendor's sample requests in every encoding, auth and the error rows."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_lotimage.client.contract import (
    BUTTON_PATH,
    GRID_BUTTONS,
    IMAGINE_PATH,
    PROGRESS_PATH,
    REROLL_BUTTON,
    UPSCALED_BUTTONS,
    parse_progress,
    parse_submit,
)

from .helpers import KEY, Client

if TYPE_CHECKING:
    from collections.abc import Callable

    from lotimage_emulator import Emulator

SAMPLE_PROMPT = "An owl with cat ears hanging on a tree"
PROGRESS_KEYS = {
    "taskId",
    "prompt",
    "imageUrl",
    "progress",
    "createdAt",
    "buttons",
    "originatingMessageId",
    "ref",
    "status",
}
TASK_ID = re.compile(r"^[a-z0-9]{10}-[a-z0-9]{4}-[a-z0-9]{4}-[a-z0-9]{4}-[a-z0-9]{7}$")
CREATED_AT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def _send(client: Client, path: str, fields: dict[str, Any], encoding: str) -> dict[str, Any]:
    """Send ``fields`` as the vendor's samples do: node (JSON), Python (form), Java (multipart)."""
    if encoding == "json":
        response = client.post(path, json=fields)
    elif encoding == "form":
        response = client.post(path, data=fields)
    elif encoding == "multipart":
        parts = {
            name: (None, str(value).lower() if isinstance(value, bool) else str(value))
            for name, value in fields.items()
        }
        response = client.post(path, files=parts)
    else:  # the Java sample: multipart body, but a Content-Type header saying JSON
        parts = {
            name: (None, str(value).lower() if isinstance(value, bool) else str(value))
            for name, value in fields.items()
        }
        response = client.post(path, files=parts, headers={"Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    return dict(response.json())


ENCODINGS = ["json", "form", "multipart", "java-multipart"]


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("cutting", [True, False])
def test_vendor_sample_imagine_in_every_encoding(
    emu: Emulator, client: Client, encoding: str, cutting: bool
) -> None:
    body = _send(client, IMAGINE_PATH, {"prompt": SAMPLE_PROMPT, "cutting": cutting}, encoding)
    assert body["status"] == 200 and TASK_ID.match(body["taskId"])
    assert parse_submit(200, f'{{"status": 200, "taskId": "{body["taskId"]}"}}') == body["taskId"]
    [task] = emu.tasks()
    assert task["prompt"] == SAMPLE_PROMPT and task["cutting"] is cutting
    done = _send(client, PROGRESS_PATH, {"taskId": body["taskId"]}, encoding)
    assert done["taskId"] == body["taskId"]
    finished = client.wait(body["taskId"])
    assert ("imageUrls" in finished) is cutting


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_button_in_every_encoding_including_the_reroll_emoji(client: Client, encoding: str) -> None:
    parent = client.submit()
    client.wait(parent)
    body = _send(client, BUTTON_PATH, {"taskId": parent, "button": REROLL_BUTTON}, encoding)
    assert body["status"] == 200
    child = client.wait(body["taskId"])
    assert child["originatingMessageId"] == parent and child["buttons"] == list(GRID_BUTTONS)


@pytest.mark.parametrize("value", ["true", "TRUE", "True", True])
def test_cutting_accepts_booleans_and_true_strings(client: Client, value: Any) -> None:
    task = client.submit(cutting=value)
    assert len(client.wait(task)["imageUrls"]) == 4


def test_progress_answer_matches_the_contract_sample_and_steps_to_100(
    lotimage_emulator_factory: Callable[..., Emulator],
) -> None:
    emu = lotimage_emulator_factory(keys=(KEY,), time_scale=0.02, rate_limit=None)  # ~0.9 s imagine
    client = Client(emu.url)
    task_id = client.submit()
    seen: list[int] = []
    running_bodies = []
    started = time.monotonic()
    while True:
        body = client.progress(task_id).json()
        assert set(body) == PROGRESS_KEYS
        seen.append(body["progress"])
        if body["progress"] == 100:
            break
        running_bodies.append(body)
        assert time.monotonic() - started < 5
        time.sleep(0.03)
    elapsed = time.monotonic() - started
    assert 0.6 < elapsed < 2.5
    assert seen == sorted(seen), "progress never goes back"
    assert set(seen) <= {0, 15, 31, 46, 62, 78, 93, 100}
    assert {15, 46, 93} <= set(seen)
    for running in running_bodies:
        assert running["imageUrl"] == "" and running["buttons"] == [] and running["status"] == 200
    assert body["taskId"] == task_id and body["prompt"] == SAMPLE_PROMPT
    assert body["imageUrl"].startswith(emu.url + "/_emulator/images/")
    assert CREATED_AT.match(body["createdAt"])
    assert body["buttons"] == list(GRID_BUTTONS)
    assert body["originatingMessageId"] == "" and body["ref"] == ""
    assert parse_progress(200, client.progress(task_id).text).is_finished


def test_auth_rows(make_emulator: Callable[..., Emulator]) -> None:
    emu = make_emulator()
    expected = {
        "status": 401,
        "errMessage": "Key verification failed, please check whether the key is correct",
    }
    for key in (None, "wrong-key", ""):
        client = Client(emu.url, key=key)
        for response in (client.imagine(), client.progress("x"), client.button("x", "U1")):
            assert response.status_code == 200 and response.json() == expected
    for header in ("Basic " + KEY, KEY, "Bearer"):
        response = Client(emu.url, key=None).post(
            IMAGINE_PATH, json={"prompt": "x"}, headers={"Authorization": header}
        )
        assert response.json() == expected
    assert (
        Client(emu.url)
        .post(IMAGINE_PATH, json={"prompt": "x"}, headers={"Authorization": f"bearer {KEY}"})
        .json()["status"]
        == 200
    )
    assert emu.stats()["submissions"]["imagine"] == 1


def test_any_non_empty_key_is_accepted_without_configured_keys(
    make_emulator: Callable[..., Emulator],
) -> None:
    emu = make_emulator(keys=None)
    assert Client(emu.url, key="whatever").imagine().json()["status"] == 200
    assert Client(emu.url, key=None).imagine().json()["status"] == 401


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "prompt is required"),
        ({"prompt": ""}, "prompt is required"),
        ({"prompt": "   "}, "prompt is required"),
        ({"prompt": None}, "prompt is required"),
        ({"prompt": 42}, "Invalid parameter"),
        ({"prompt": "x" * 4001}, "Invalid parameter"),
        ({"prompt": "owl", "cutting": "maybe"}, "Invalid parameter"),
        ({"prompt": "owl", "cutting": 1}, "Invalid parameter"),
        ({"prompt": "owl", "webhook": "ftp://example.com"}, "Invalid parameter"),
        ({"prompt": "owl", "webhook": 5}, "Invalid parameter"),
        ({"prompt": "a NSFW owl"}, "Banned prompt detected"),
    ],
)
def test_imagine_bad_requests(emu: Emulator, client: Client, body: dict[str, Any], message: str) -> None:
    response = client.post(IMAGINE_PATH, json=body)
    assert response.status_code == 200
    assert response.json() == {"status": 400, "errMessage": message}
    assert emu.stats()["submissions"]["imagine"] == 0


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b"\xff\xfe", b"just words"])
def test_undecodable_bodies_are_invalid_parameters(client: Client, raw: bytes) -> None:
    response = client.post(IMAGINE_PATH, data=raw, headers={"Content-Type": "application/json"})
    assert response.json() == {"status": 400, "errMessage": "Invalid parameter"}


def test_banned_words_are_configurable(make_emulator: Callable[..., Emulator]) -> None:
    emu = make_emulator(banned_words=("gore", "blood"))
    client = Client(emu.url)
    assert client.imagine("nsfw is fine here").json()["status"] == 200
    assert client.imagine("BLOODY owl").json() == {"status": 400, "errMessage": "Banned prompt detected"}


def test_progress_errors(emu: Emulator, client: Client) -> None:
    not_found = {"status": 404, "errMessage": "Task not found"}
    assert client.progress("0o2f4ja2a1-ka2e-ow1c-br93-9al9ad2").json() == not_found
    assert client.post(PROGRESS_PATH, json={}).json() == {"status": 400, "errMessage": "Invalid parameter"}
    assert client.post(PROGRESS_PATH, json={"taskId": 7}).json()["status"] == 400
    task = client.submit()
    other_key = Client(emu.url, key="another-key")
    emu.set_config(keys=(KEY, "another-key"))
    assert other_key.progress(task).json() == not_found, "tasks are private to the key that made them"


def test_button_error_rows(client: Client) -> None:
    parent = client.submit()
    assert client.button(parent, "U1").json() == {"status": 400, "errMessage": "Task is not finished"}
    client.wait(parent)
    for label in ("u1", "U5", "Upscale", "Zoom Out 3x", "🔁", ""):
        expected = "Invalid parameter" if label == "" else "Button not found"
        assert client.button(parent, label).json() == {"status": 400, "errMessage": expected}, label
    assert client.button("no-such-task", "U1").json() == {"status": 404, "errMessage": "Task not found"}
    assert client.post(BUTTON_PATH, json={"taskId": parent}).json()["errMessage"] == "Invalid parameter"
    assert client.button(parent, "U1", cutting="nope").json()["errMessage"] == "Invalid parameter"
    upscale = client.press(parent, "U2")
    assert client.button(parent, "U2").json() == {"status": 400, "errMessage": "Already requested upscale"}
    client.wait(upscale)
    assert client.button(upscale, "U1").json() == {"status": 400, "errMessage": "Button not found"}


def test_button_semantics(client: Client) -> None:
    parent = client.submit(cutting=True)
    client.wait(parent)
    upscales = [client.press(parent, f"U{n}", cutting=True) for n in (1, 2, 3, 4)]
    grids = {label: client.press(parent, label) for label in GRID_BUTTONS[4:]}
    for task_id in upscales:
        body = client.wait(task_id)
        assert body["buttons"] == list(UPSCALED_BUTTONS)
        assert body["originatingMessageId"] == parent
        assert "imageUrls" not in body, "an upscale is a single picture"
        assert body["imageUrl"]
    for label, task_id in grids.items():
        body = client.wait(task_id)
        assert body["buttons"] == list(GRID_BUTTONS), label
        assert body["originatingMessageId"] == parent
        assert body["prompt"] == SAMPLE_PROMPT
    variation = client.press(parent, "V1")  # variations may be pressed again
    client.wait(variation)
    assert client.wait(client.press(variation, "U1"))["originatingMessageId"] == variation


def test_buttons_of_an_upscale_make_grids(client: Client) -> None:
    parent = client.submit()
    client.wait(parent)
    upscale = client.press(parent, "U4")
    client.wait(upscale)
    for label in UPSCALED_BUTTONS:
        body = client.wait(client.press(upscale, label))
        assert body["buttons"] == list(GRID_BUTTONS) and body["originatingMessageId"] == upscale


def test_button_timing_upscale_is_faster(make_emulator: Callable[..., Emulator]) -> None:
    emu = make_emulator(time_scale=0.01)  # imagine 0.45 s, upscale 0.1 s
    client = Client(emu.url)
    parent = client.submit()
    client.wait(parent)
    started = time.monotonic()
    client.wait(client.press(parent, "U1"), interval=0.02)
    upscale_time = time.monotonic() - started
    started = time.monotonic()
    client.wait(client.press(parent, "V1"), interval=0.02)
    variation_time = time.monotonic() - started
    assert upscale_time < 0.3 < variation_time
