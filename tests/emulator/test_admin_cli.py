"""Admin endpoints, lifecycle and thread safety, the pytest fixtures and the command line."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import pytest
import requests
from lotimage_emulator import Emulator, EmulatorConfig, run_emulator

from .helpers import KEY, Client

if TYPE_CHECKING:
    from collections.abc import Callable

STATS_KEYS = {
    "timeline",
    "requests",
    "submissions",
    "answers",
    "answers_by_endpoint",
    "http_statuses",
    "rate_limited",
    "peak_calls_per_second",
    "max_calls_per_second",
    "webhooks",
    "tasks",
    "faults",
    "config",
    "events",
    "quota_used",
    "calls_by_key",
    "renders",
    "rate_limited_by_limiter",
}


def _emulator_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("lotimage-")]


def test_health_stats_tasks_config(emu: Emulator, client: Client) -> None:
    assert requests.get(emu.url + "/_emulator/health", timeout=5).json() == {"status": "ok"}
    task = client.submit(cutting=True)
    client.progress(task)
    client.imagine("")
    stats = requests.get(emu.url + "/_emulator/stats", timeout=5).json()
    assert set(stats) == STATS_KEYS
    assert stats["requests"] == {"imagine": 2, "progress": 1, "button": 0}
    assert stats["submissions"] == {"imagine": 1, "button": 0}
    assert set(stats["timeline"]) == {"first_submit", "last_submit"}, "no picture was served yet"
    assert stats["answers"] == {"200": 2, "400": 1}
    assert stats["answers_by_endpoint"]["imagine"] == {"200": 1, "400": 1}
    assert stats["http_statuses"] == {"200": 3}
    assert set(stats["tasks"]) == {"queued", "running", "finished", "failed", "stalled", "total"}
    assert stats["tasks"]["total"] == 1
    assert stats["webhooks"] == {"attempted": 0, "succeeded": 0, "failed": 0, "suppressed": 0}
    [listed] = requests.get(emu.url + "/_emulator/tasks", timeout=5).json()["tasks"]
    assert listed["taskId"] == task and listed["kind"] == "imagine" and listed["cutting"] is True
    config = requests.get(emu.url + "/_emulator/config", timeout=5).json()
    assert KEY not in json.dumps(config) and KEY not in json.dumps(stats), "keys are never echoed"
    assert config["keys"] == [emu.key_id(KEY)]
    assert requests.post(emu.url + "/_emulator/config", json={"port": 1}, timeout=5).status_code == 400
    assert requests.post(emu.url + "/_emulator/config", json=[1], timeout=5).status_code == 400


def test_reset_clears_everything(emu: Emulator, client: Client) -> None:
    task = client.submit()
    emu.add_fault("http_status", count=None, endpoint="button")
    emu.set_config(mirror_http_status=True)
    assert requests.post(emu.url + "/_emulator/reset", timeout=5).json() == {"status": 200}
    stats = emu.stats()
    assert stats["tasks"]["total"] == 0 and stats["requests"]["imagine"] == 0 and stats["faults"] == []
    assert emu.config.mirror_http_status is False, "reset restores the start-up config"
    assert client.progress(task).json()["status"] == 404
    emu.add_fault("delay")
    emu.reset()
    assert emu.faults() == []


def test_lifecycle_is_clean(make_emulator: Callable[..., Emulator]) -> None:
    before = len(_emulator_threads())
    emulator = Emulator(EmulatorConfig(keys=(KEY,), time_scale=0.002, grid_size=64))
    with pytest.raises(RuntimeError):
        _ = emulator.url
    with emulator:
        assert emulator.start() is emulator, "start is idempotent"
        assert emulator.running and emulator.url.startswith("http://127.0.0.1:")
        Client(emulator.url).wait(Client(emulator.url).submit())
        assert len(_emulator_threads()) > before
        port = emulator.port
        with pytest.raises(OSError):
            Emulator(port=port).start()
    emulator.stop()
    assert not emulator.running
    assert len(_emulator_threads()) == before, "no thread outlives stop()"
    with socket.socket() as sock:  # the port is free again
        sock.bind(("127.0.0.1", port))
    with run_emulator(port=port, keys=(KEY,)) as again:
        assert again.port == port and again.api_key == KEY
    assert len(_emulator_threads()) == before


def test_stop_does_not_wait_for_a_delayed_request(make_emulator: Callable[..., Emulator]) -> None:
    emu = make_emulator()
    emu.add_fault("delay", seconds=30)

    def call() -> None:
        with pytest.raises(requests.RequestException):
            Client(emu.url).imagine()

    caller = threading.Thread(target=call)
    caller.start()
    time.sleep(0.2)
    started = time.monotonic()
    emu.stop()
    assert time.monotonic() - started < 3
    caller.join(5)


def test_concurrent_clients_and_controls(emu: Emulator) -> None:
    def worker(n: int) -> list[str]:
        client = Client(emu.url)
        return [client.submit(f"owl {n}-{i}") for i in range(8)]

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(worker, n) for n in range(8)]
        for _ in range(20):
            emu.stats()
            emu.set_config(rate_limit=None)
        ids = [task for future in futures for task in future.result()]
    assert len(set(ids)) == 64
    assert emu.stats()["submissions"]["imagine"] == 64


def test_fixture_defaults(
    lotimage_emulator: Emulator, lotimage_api_key: str, lotimage_connection: str
) -> None:
    conn = json.loads(os.environ["AIRFLOW_CONN_LOTIMAGE_DEFAULT"])
    assert lotimage_connection == "lotimage_default"
    assert conn == {"conn_type": "lotimage", "host": lotimage_emulator.url, "password": lotimage_api_key}
    config = lotimage_emulator.config
    assert config.keys == (lotimage_api_key,) and config.grid_size == 256 and config.rate_limit == 3
    client = Client(lotimage_emulator.url, key=lotimage_api_key)
    started = time.monotonic()
    task = client.submit()
    body = client.wait(task, interval=0.55)  # stays under 3 calls a second
    assert 0.9 <= time.monotonic() - started < 2.0, "an imagine takes about a second"
    assert body["progress"] == 100 and lotimage_emulator.stats()["rate_limited"] == 0


def test_factory_overrides(lotimage_emulator_factory: Callable[..., Emulator]) -> None:
    first = lotimage_emulator_factory(grid_size=64, keys=("a",))
    second = lotimage_emulator_factory(mirror_http_status=True)
    assert first.port != second.port and first.config.grid_size == 64 and first.api_key == "a"
    assert second.config.mirror_http_status and second.config.time_scale == pytest.approx(1 / 45)


def _start_cli(*args: str) -> tuple[subprocess.Popen[str], str]:
    command = [sys.executable, "-m", "lotimage_emulator", *args]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    return process, line


@pytest.mark.parametrize("launcher", ["module", "script"])
def test_cli_serves_and_stops_on_sigterm(launcher: str) -> None:
    secret = "cli-secret-key-42"
    args = [
        "--port",
        "0",
        "--key",
        secret,
        "--key",
        "second",
        "--time-scale",
        "0.002",
        "--grid-size",
        "64",
        "--rate-limit",
        "0",
        "--image-ttl",
        "60",
        "--banned-word",
        "forbidden",
        "--log-level",
        "WARNING",
    ]
    if launcher == "script":
        script = shutil.which("lotimage-emulator", path=os.path.dirname(sys.executable))
        if script is None:
            pytest.skip("console script not installed")
        process = subprocess.Popen(
            [script, *args, "--mirror-http-status"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert process.stdout is not None
        line = process.stdout.readline().strip()
    else:
        process, line = _start_cli(*args)
    try:
        match = re.fullmatch(r"LotImage emulator listening on (http://127\.0\.0\.1:(\d+))", line)
        assert match, line
        url = match.group(1)
        assert int(match.group(2)) > 0
        client = Client(url, key=secret)
        task = client.submit()
        assert client.wait(task)["progress"] == 100
        banned = client.imagine("forbidden owl")
        assert banned.json()["errMessage"] == "Banned prompt detected"
        assert banned.status_code == (400 if launcher == "script" else 200)
        assert Client(url, key="second").imagine().json()["status"] == 200
        assert Client(url, key="third").imagine().json()["status"] == 401
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=15)
    assert process.returncode == 0, err
    assert secret not in out + err and secret not in line


def test_cli_sigint_and_bad_arguments() -> None:
    process, line = _start_cli("--port", "0", "--log-level", "ERROR")
    assert line.startswith("LotImage emulator listening on http://127.0.0.1:")
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=15)
    assert process.returncode == 0
    bad = subprocess.run(
        [sys.executable, "-m", "lotimage_emulator", "--grid-size", "15"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "grid_size" in bad.stderr
