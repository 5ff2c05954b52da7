"""Body sniffing: whatever encoding a client picks, the emulator reads the same fields."""

from __future__ import annotations

import json

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st
from lotimage_emulator.app import decode_params
from lotimage_emulator.rules import parse_bool

PROMPTS = st.text(st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=80)


def _prepared(encoding: str, prompt: str, cutting: bool) -> tuple[bytes, str]:
    if encoding == "json":
        request = requests.Request("POST", "http://x/", json={"prompt": prompt, "cutting": cutting})
    elif encoding == "form":
        request = requests.Request("POST", "http://x/", data={"prompt": prompt, "cutting": cutting})
    else:
        request = requests.Request(
            "POST",
            "http://x/",
            files={"prompt": (None, prompt.encode("utf-8")), "cutting": (None, str(cutting).lower())},
        )
    prepared = request.prepare()
    body = prepared.body
    assert body is not None
    raw = body.encode("utf-8") if isinstance(body, str) else body
    return raw, prepared.headers.get("Content-Type", "")


@settings(max_examples=60, deadline=None)
@given(prompt=PROMPTS, cutting=st.booleans(), encoding=st.sampled_from(["json", "form", "multipart"]))
def test_every_encoding_round_trips(prompt: str, cutting: bool, encoding: str) -> None:
    raw, content_type = _prepared(encoding, prompt, cutting)
    for header in (content_type, "application/json", None):  # the header is not trusted
        fields = decode_params(raw, header)
        assert fields is not None
        assert fields["prompt"] == prompt
        assert parse_bool(fields["cutting"]) is cutting


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"", {}),
        (b"   ", {}),
        (b'{"taskId": "abc"}', {"taskId": "abc"}),
        (b"taskId=abc&x=", {"taskId": "abc", "x": ""}),
        (b"[1]", None),
        (b'{"broken', None),
        (b"no equals sign", None),
        (b"\xff\xfe\x00", None),
    ],
)
def test_decode_edge_cases(raw: bytes, expected: object) -> None:
    assert decode_params(raw, "application/json") == expected


def test_parse_bool() -> None:
    assert [parse_bool(v) for v in (True, False, "true", " FALSE ", "True")] == [
        True,
        False,
        True,
        False,
        True,
    ]
    assert [parse_bool(v) for v in ("yes", 1, None, "")] == [None, None, None, None]
    assert json.loads('{"cutting": true}')["cutting"] is True
