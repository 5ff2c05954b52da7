"""A thousand triggers in one event loop stay under the key's 3 calls/s: zero 429 answers."""

from __future__ import annotations

import json

import pytest

from benchmarks.many_triggers import RATE, run


@pytest.mark.timeout(1200)
def test_thousand_triggers_share_the_key_rate(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_LOTIMAGE_DEFAULT", "")  # run() points it at its own emulator
    figures = run(1000, time_scale=0.1, poll_interval=5.0)
    with capsys.disabled():
        print("\n1,000 waiting triggers:", json.dumps(figures))
    assert figures["succeeded"] == 1000
    assert figures["answers_429"] == 0
    assert figures["calls_per_second"] <= RATE
    assert figures["progress_calls"] >= 1000
    assert figures["bytes_per_waiting_trigger"] > 0
