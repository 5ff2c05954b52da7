"""Lone surrogates (``"\\ud800"`` in JSON) in keys, banned words and prompts never break an answer."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

import requests
from lotimage_emulator import key_id

from .helpers import KEY, Client, Receiver

if TYPE_CHECKING:
    from collections.abc import Callable

    from lotimage_emulator import Emulator

ODD_KEY = "key-\udc80-with-a-lone-surrogate"


def test_stats_of_a_key_with_a_lone_surrogate(make_emulator: Callable[..., Emulator]) -> None:
    emu = make_emulator(keys=(KEY, ODD_KEY))
    stats = emu.stats()
    json.dumps(stats)
    assert stats["config"]["keys"] == [key_id(KEY), key_id(ODD_KEY)]
    assert key_id(ODD_KEY) != key_id("key-\udc81-with-a-lone-surrogate")
    assert key_id(KEY) == "key-" + hashlib.sha256(KEY.encode()).hexdigest()[:10], "labels unchanged"
    assert "udc80" not in json.dumps(stats) and "surrogate" not in json.dumps(stats)


def test_admin_config_and_stats_with_lone_surrogates_over_http(emu: Emulator) -> None:
    raw = '{"keys": ["test-key-emulator", "a\\ud800b"], "banned_words": ["nsfw", "x\\udfffy"]}'
    answer = requests.post(emu.url + "/_emulator/config", data=raw.encode(), timeout=5)
    assert answer.status_code == 200, answer.text
    assert answer.json()["banned_words"] == ["nsfw", "x\udfffy"]
    assert answer.json()["keys"] == [key_id(KEY), key_id("a\ud800b")]
    stats = requests.get(emu.url + "/_emulator/stats", timeout=5)
    assert stats.status_code == 200 and stats.json()["config"]["keys"] == answer.json()["keys"]


def test_a_prompt_with_a_lone_surrogate_is_answered_back(emu: Emulator, receiver: Receiver) -> None:
    client = Client(emu.url)
    raw = '{"prompt": "An owl \\ud83d alone \U0001f989", "webhook": ' + json.dumps(receiver.url) + "}"
    created = client.post(
        "/midjourney/v1/imagine", data=raw.encode(), headers={"Content-Type": "application/json"}
    )
    task = created.json()["taskId"]
    body = client.wait(task)
    assert body["prompt"] == "An owl \ud83d alone \U0001f989"
    assert "\U0001f989".encode() in client.progress(task).content, "other characters stay UTF-8"
    [delivered] = receiver.wait_for(1)
    assert delivered["prompt"] == body["prompt"]
    [listed] = requests.get(emu.url + "/_emulator/tasks", timeout=5).json()["tasks"]
    assert listed["prompt"] == body["prompt"]
