"""The ``slow_body`` fault: a picture link's body spread over time, so a download can be cut mid-way."""

from __future__ import annotations

import socket
import time
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest
import requests
from lotimage_emulator import FaultRule
from lotimage_emulator.faults import FaultError

if TYPE_CHECKING:
    from lotimage_emulator import Emulator

    from .helpers import Client


def _grid_url(client: Client) -> str:
    body = client.wait(client.submit())
    assert body["progress"] == 100
    return str(body["imageUrl"])


def test_slow_body_spreads_the_picture_over_the_seconds_asked(emu: Emulator, client: Client) -> None:
    url = _grid_url(client)
    fast = client.get(url)
    rule = emu.add_fault("slow_body", seconds=1.0)
    started = time.monotonic()
    pieces: list[tuple[float, int]] = []
    with requests.get(url, stream=True, timeout=10) as response:
        assert response.status_code == 200
        assert int(response.headers["Content-Length"]) == len(fast.content)
        while chunk := response.raw.read1(1024 * 1024):  # whatever has arrived
            pieces.append((time.monotonic() - started, len(chunk)))
    body_time = pieces[-1][0]
    assert sum(size for _, size in pieces) == len(fast.content)  # the same, whole picture
    assert len(pieces) > 5, "the body arrived in pieces"
    assert body_time >= 0.9  # spread over the second asked (an upper bound would be a timing test)
    assert pieces[0][0] < body_time / 2  # the first bytes came early: a client sees a download going on
    assert rule.used == 1 and emu.stats()["events"]["slow_bodies"] == 1
    again = time.monotonic()
    assert client.get(url).content == fast.content
    assert time.monotonic() - again < body_time, "count=1: the next download is not slowed"


def test_client_hanging_up_mid_body_leaves_the_emulator_serving(emu: Emulator, client: Client) -> None:
    url = _grid_url(client)
    emu.add_fault("slow_body", seconds=3.0)
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
        sock.sendall(f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode())
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
    # The client is gone mid-body; the emulator goes on answering.
    assert client.get(url).status_code == 200
    assert client.progress("no-such-task").status_code in (200, 404)


def test_slow_body_rule_validation() -> None:
    rule = FaultRule.build("slow_body", seconds=2.5, count=None)
    assert rule.stage == "image" and rule.count is None
    assert FaultRule.from_dict(rule.to_dict()).seconds == 2.5
    with pytest.raises(FaultError, match="picture links"):
        FaultRule.build("slow_body", endpoint="imagine")
    with pytest.raises(FaultError, match="seconds"):
        FaultRule.build("slow_body", seconds=-1)
