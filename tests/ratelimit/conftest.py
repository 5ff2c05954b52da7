"""Fixtures of the cluster-wide rate budget tests: a real, password-protected ``redis-server`` on loopback.

No Redis is mocked: every test talks to a private ``redis-server`` (``airflow_harness.redis_server``)
that the Airflow connection ``redis_default`` points at through ``AIRFLOW_CONN_REDIS_DEFAULT``.
Without ``redis-server`` the tests are skipped, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_harness.redis_server import RedisServer, redis_server_program
from tests.ratelimit.processes import Workers

#: The Redis password of the fixture server: it must never show in a log, an error or in Redis.
REDIS_PASSWORD = "redis-pw-DO-NOT-LEAK"


def _require_redis_server() -> None:
    if redis_server_program() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is not installed, and CI=true requires these tests to run")
        pytest.skip("redis-server is not installed (Debian package redis-server)")


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A started ``redis-server`` requiring :data:`REDIS_PASSWORD`, stopped at teardown."""
    _require_redis_server()
    server = RedisServer(tmp_path / "redis", "redis", password=REDIS_PASSWORD).start()
    yield server
    server.stop()
    server.service.reap()


@pytest.fixture
def redis_connection(redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the Airflow connection ``redis_default`` at the fixture server; returns its id."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_REDIS_DEFAULT",
        json.dumps(
            {"conn_type": "redis", "host": "127.0.0.1", "port": redis_server.port, "password": REDIS_PASSWORD}
        ),
    )
    return "redis_default"


@pytest.fixture
def redis_client(redis_server: RedisServer):
    """A plain redis-py client of the fixture server, to look at what the budget stored."""
    import redis

    client = redis.Redis(host="127.0.0.1", port=redis_server.port, password=REDIS_PASSWORD)
    yield client
    client.close()


@pytest.fixture
def host_tmpdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temp dir of this test's own, so the ``host`` fallback's lock file is not another test's."""
    folder = tmp_path / "host-tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture
def api_key() -> str:
    """A LotImage key of this test's own: limiters are kept per key for the life of a process."""
    return f"lotimage-key-{uuid.uuid4().hex}"


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    """Starts worker processes (each with a TMPDIR of its own); kills what is left at teardown."""
    pool = Workers(tmp_path / "workers")
    yield pool
    pool.close()
