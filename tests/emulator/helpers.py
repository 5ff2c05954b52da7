"""Helpers for the emulator tests: a small HTTP client and a webhook receiver.

The tests talk to a real server on loopback with ``requests``, exactly as a client of the real
service would, so every assertion is about the wire contract rather than internals.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import requests

from airflow_provider_lotimage.client.contract import BUTTON_PATH, IMAGINE_PATH, PROGRESS_PATH

if TYPE_CHECKING:
    from lotimage_emulator import Emulator

KEY = "test-key-emulator"
#: 45 s x 0.002 = an imagine in 0.09 s, an upscale in 0.02 s: fast tests that still step.
FAST = 0.002


class Client:
    """The three API calls plus polling, against one emulator."""

    def __init__(self, base_url: str, key: str | None = KEY) -> None:
        self.base_url = base_url
        self.key = key
        self.session = requests.Session()

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"} if self.key is not None else {}

    def post(self, path: str, timeout: float = 10, **kwargs: Any) -> requests.Response:
        headers = {**self.headers(), **kwargs.pop("headers", {})}
        return self.session.post(self.base_url + path, headers=headers, timeout=timeout, **kwargs)

    def imagine(
        self, prompt: str | None = "An owl with cat ears hanging on a tree", **extra: Any
    ) -> requests.Response:
        body = {"prompt": prompt, **extra} if prompt is not None else dict(extra)
        return self.post(IMAGINE_PATH, json=body)

    def progress(self, task_id: str, **kwargs: Any) -> requests.Response:
        return self.post(PROGRESS_PATH, json={"taskId": task_id}, **kwargs)

    def button(self, task_id: str, button: str, **extra: Any) -> requests.Response:
        return self.post(BUTTON_PATH, json={"taskId": task_id, "button": button, **extra})

    def submit(self, prompt: str = "An owl with cat ears hanging on a tree", **extra: Any) -> str:
        response = self.imagine(prompt, **extra)
        assert response.json()["status"] == 200, response.text
        return str(response.json()["taskId"])

    def press(self, task_id: str, button: str, **extra: Any) -> str:
        response = self.button(task_id, button, **extra)
        assert response.json()["status"] == 200, response.text
        return str(response.json()["taskId"])

    def wait(self, task_id: str, timeout: float = 10.0, interval: float = 0.02) -> dict[str, Any]:
        """Poll until progress 100 or a failure status; return the last body."""
        deadline = time.monotonic() + timeout
        while True:
            body: dict[str, Any] = self.progress(task_id).json()
            if body.get("status") != 200 or body.get("progress") == 100:
                return body
            if time.monotonic() > deadline:
                raise AssertionError(f"task {task_id} did not finish: {body}")
            time.sleep(interval)

    def get(self, url: str) -> requests.Response:
        return self.session.get(url, timeout=10)


def delivered(emu: Emulator, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
    """Wait until the emulator recorded ``count`` webhook POSTs (answered or failed); return them."""
    deadline = time.monotonic() + timeout
    while len(log := emu.webhook_log()) < count:
        assert time.monotonic() < deadline, f"{len(log)} of {count} deliveries recorded: {log}"
        time.sleep(0.02)
    return log


class Receiver:
    """A tiny webhook receiver on loopback that records every POSTed JSON body.

    Any path is accepted; each delivery's path (with its query) and arrival time (epoch seconds)
    are recorded next to its body and headers.
    """

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.paths: list[str] = []
        self.times: list[float] = []
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                data = json.loads(self.rfile.read(length) or b"null")
                with receiver.arrived:
                    receiver.times.append(time.time())
                    receiver.bodies.append(data)
                    receiver.headers.append(dict(self.headers))
                    receiver.paths.append(self.path)
                    receiver.arrived.notify_all()
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.thread = threading.Thread(
            target=self.server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="webhook-receiver",
            daemon=True,
        )
        self.thread.start()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.bodies) >= count, timeout=timeout)
            return list(self.bodies)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
