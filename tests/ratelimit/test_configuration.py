"""A rate-limit set-up that cannot work fails before any paid call, naming the connection and the
field; a Redis that is merely away does not fail anything."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import textwrap
import time

import pytest

from airflow_provider_lotimage.client.retry import RetryPolicy
from airflow_provider_lotimage.exceptions import ConnectionConfigError
from airflow_provider_lotimage.hooks.lotimage import LotImageHook
from airflow_provider_lotimage.ratelimit.redis_budget import RedisBudget
from tests.ratelimit.processes import REPO_ROOT


def lotimage(monkeypatch: pytest.MonkeyPatch, emulator, key: str, **extra: object) -> LotImageHook:
    monkeypatch.setenv(
        "AIRFLOW_CONN_LOTIMAGE_DEFAULT",
        json.dumps({"conn_type": "lotimage", "host": emulator.url, "password": key, "extra": extra}),
    )
    return LotImageHook(retry_policy=RetryPolicy(max_attempts=2, base_delay=0.05))


def no_call_reached(emulator) -> bool:
    return sum(emulator.stats()["requests"].values()) == 0


def test_missing_redis_connection_fails_before_any_call(
    monkeypatch: pytest.MonkeyPatch, lotimage_emulator, lotimage_api_key: str
) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_REDIS_DEFAULT", raising=False)
    hook = lotimage(monkeypatch, lotimage_emulator, lotimage_api_key, rate_limit_scope="redis")
    expected = (
        "'lotimage_default', extra 'rate_limit_redis_conn_id': Redis connection 'redis_default' does not"
    )
    with pytest.raises(ConnectionConfigError, match=expected) as info:
        hook.imagine("a cat")
    assert info.value.ends_task(resubmits=True)
    with pytest.raises(ConnectionConfigError, match="'rate_limit_redis_conn_id'"):
        asyncio.run(hook.aget_task_progress("some-task"))
    assert no_call_reached(lotimage_emulator)


def test_a_named_redis_connection_is_looked_up(
    monkeypatch: pytest.MonkeyPatch, lotimage_emulator, lotimage_api_key: str
) -> None:
    hook = lotimage(
        monkeypatch,
        lotimage_emulator,
        lotimage_api_key,
        rate_limit_scope="redis",
        rate_limit_redis_conn_id="rate_budget",
    )
    with pytest.raises(ConnectionConfigError, match="Redis connection 'rate_budget' does not exist"):
        hook.get_task_progress("some-task")
    assert no_call_reached(lotimage_emulator)


def test_missing_redis_provider_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, lotimage_emulator, lotimage_api_key: str
) -> None:
    monkeypatch.setitem(sys.modules, "airflow.providers.redis.hooks.redis", None)
    hook = lotimage(monkeypatch, lotimage_emulator, lotimage_api_key, rate_limit_scope="redis")
    with pytest.raises(
        ConnectionConfigError,
        match=r"extra 'rate_limit_scope'.*pip install 'airflow-provider-lotimage\[redis\]'",
    ):
        hook.imagine("a cat")
    assert no_call_reached(lotimage_emulator)


def test_a_redis_cluster_connection_is_refused(
    monkeypatch: pytest.MonkeyPatch, lotimage_emulator, lotimage_api_key: str
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_REDIS_DEFAULT",
        json.dumps({"conn_type": "redis", "host": "127.0.0.1", "port": 1, "extra": {"cluster": True}}),
    )
    hook = lotimage(monkeypatch, lotimage_emulator, lotimage_api_key, rate_limit_scope="redis")
    with pytest.raises(ConnectionConfigError, match=r"'rate_limit_redis_conn_id'.*Redis Cluster"):
        hook.imagine("a cat")
    assert no_call_reached(lotimage_emulator)


def test_unknown_scope_fails_before_any_call(
    monkeypatch: pytest.MonkeyPatch, lotimage_emulator, lotimage_api_key: str
) -> None:
    hook = lotimage(monkeypatch, lotimage_emulator, lotimage_api_key, rate_limit_scope="cluster")
    with pytest.raises(ConnectionConfigError, match="'lotimage_default', extra 'rate_limit_scope'"):
        hook.imagine("a cat")
    assert no_call_reached(lotimage_emulator)


def test_a_wrong_redis_password_is_an_outage_not_a_failure(
    monkeypatch: pytest.MonkeyPatch, redis_server, api_key: str, host_tmpdir, caplog
) -> None:
    """Redis refusing the password is found on the first call, mid-task: warn and fall back."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_REDIS_DEFAULT",
        json.dumps(
            {"conn_type": "redis", "host": "127.0.0.1", "port": redis_server.port, "password": "wrong-pw-XYZ"}
        ),
    )
    caplog.set_level(logging.WARNING, logger="airflow_provider_lotimage.ratelimit.redis_link")
    from types import SimpleNamespace

    from airflow_provider_lotimage.client.settings import read_settings
    from airflow_provider_lotimage.ratelimit.registry import limiter_of

    conn = SimpleNamespace(
        conn_id="lotimage_default", host="http://lotimage.invalid", port=None, password=api_key
    )
    limiter = limiter_of(read_settings(conn, {"rate_limit_scope": "redis"}))
    assert isinstance(limiter, RedisBudget)
    started = time.monotonic()
    limiter.acquire()
    assert time.monotonic() - started < 1.0
    assert "'redis_default'" in caplog.text and "wrong-pw-XYZ" not in caplog.text


_WITHOUT_REDIS = textwrap.dedent(
    """
    import sys
    from types import SimpleNamespace
    for name in ("redis", "airflow.providers.redis.hooks"):  # as if neither were installed
        sys.modules[name] = None
    from airflow_provider_lotimage.client.settings import read_settings
    from airflow_provider_lotimage.ratelimit.registry import limiter_of
    from airflow_provider_lotimage.exceptions import ConnectionConfigError
    import airflow_provider_lotimage.hooks.lotimage, airflow_provider_lotimage.triggers.task_progress

    conn = SimpleNamespace(conn_id="c", host="http://127.0.0.1:1", port=None, password="k")
    limiter_of(read_settings(conn, {}))
    try:
        limiter_of(read_settings(conn, {"rate_limit_scope": "redis"}))
    except ConnectionConfigError as exc:
        print(exc)
    """
)


def test_the_provider_works_without_redis_installed() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_REDIS], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "pip install 'airflow-provider-lotimage[redis]'" in done.stdout
