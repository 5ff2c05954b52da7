"""Fixtures of the webhook tests: a real Redis, and Airflow's api-server app serving the route.

The api-server is Airflow's own app (``create_app("core")``: the core API, the plugins, the auth
manager) served by uvicorn on loopback in a thread of the test process, so the emulator POSTs its
deliveries to the route exactly as the service would reach a deployment, and the test can count
the SQL statements the app runs while it is flooded. Redis is a private ``redis-server``.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from airflow_harness.processes import free_port
from airflow_harness.redis_server import RedisServer
from tests.ratelimit.conftest import REDIS_PASSWORD, _require_redis_server

REDIS_URL_ENV = "AIRFLOW_CONN_REDIS_DEFAULT"


@pytest.fixture(scope="module")
def webhook_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A private ``redis-server`` requiring a password, for the whole module."""
    _require_redis_server()
    server = RedisServer(tmp_path_factory.mktemp("redis"), "redis", password=REDIS_PASSWORD).start()
    yield server
    server.stop()
    server.service.reap()


@pytest.fixture(scope="module")
def webhook_env(webhook_redis: RedisServer) -> Iterator[pytest.MonkeyPatch]:
    """The module's settings: ``redis_default`` points at the fixture Redis; an api-server secret."""
    conn = {"conn_type": "redis", "host": "127.0.0.1", "port": webhook_redis.port, "password": REDIS_PASSWORD}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(REDIS_URL_ENV, json.dumps(conn))
        patch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", secrets.token_urlsafe(64))
        patch.setenv("AIRFLOW__CORE__MIN_SERIALIZED_DAG_UPDATE_INTERVAL", "0")
        yield patch


class ServedApp:
    """Airflow's api-server app, served by uvicorn in a thread on a free loopback port."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> ServedApp:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "the api-server did not start"
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture(scope="module")
def api_server(airflow_db: None, webhook_env: pytest.MonkeyPatch) -> Iterator[ServedApp]:
    """Airflow's api-server app with the plugin, on loopback (its address is the webhook base URL)."""
    from airflow.api_fastapi.app import create_app

    from airflow_provider_lotimage.gallery.plugin import LotImageGalleryPlugin

    # The plugin's apps are built once per process, on their first request; this module's Redis
    # is not the one an earlier module's app found.
    for entry in LotImageGalleryPlugin.fastapi_apps:
        entry["app"]._app = None
    served = ServedApp(create_app("core")).start()
    yield served
    served.stop()


@pytest.fixture
def redis_client(webhook_redis: RedisServer) -> Iterator[Any]:
    """A plain redis-py client of the fixture Redis, to look at what was stored."""
    import redis

    client = redis.Redis(host="127.0.0.1", port=webhook_redis.port, password=REDIS_PASSWORD)
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def minted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every token the operators mint during the test (the real function, its results kept)."""
    from airflow_provider_lotimage.webhooks import completion

    tokens: list[str] = []
    real = completion.mint_token

    def mint() -> str:
        tokens.append(real())
        return tokens[-1]

    monkeypatch.setattr(completion, "mint_token", mint)
    return tokens


@pytest.fixture
def sql_statements() -> Iterator[Callable[[], int]]:
    """``count()``: SQL statements this process's metadata-DB engine ran since the fixture began."""
    from airflow import settings
    from sqlalchemy import event

    seen = [0]

    def count_one(*_args: Any) -> None:
        seen[0] += 1

    engine = settings.engine
    event.listen(engine, "before_cursor_execute", count_one)
    yield lambda: seen[0]
    event.remove(engine, "before_cursor_execute", count_one)


def post(url: str, body: Any, **kwargs: Any) -> requests.Response:
    """POST a delivery as the service does: the JSON body of a ``task/progress`` answer."""
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    return requests.post(url, data=data, headers={"Content-Type": "application/json"}, timeout=10, **kwargs)


def redis_commands(client: Any, name: str) -> int:
    """How many times Redis has run command ``name`` (``INFO commandstats``)."""
    return int(client.info("commandstats").get(f"cmdstat_{name}", {}).get("calls", 0))
