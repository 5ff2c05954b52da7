"""Reading a LotImage connection: every network extra, and every mistake named before any call."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_provider_lotimage.async_transport import ssl_for
from airflow_provider_lotimage.connection import read_settings
from airflow_provider_lotimage.exceptions import AuthError, ConnectionConfigError
from airflow_provider_lotimage.transport import requests_session


def conn(**fields: Any) -> SimpleNamespace:
    return SimpleNamespace(**{"conn_id": "my_lotimage", "host": "http://emu:1", "port": None, **fields})


def test_defaults_follow_requests() -> None:
    settings = read_settings(conn(password="k"), {})
    assert (settings.verify, settings.cert, settings.trust_env, dict(settings.proxies)) == (
        True,
        None,
        True,
        {},
    )
    assert settings.rate_limit == 3.0 and settings.rate_limit_scope == "host" and settings.timeout == 30.0
    assert "k" not in repr(settings)


def test_network_extras_reach_both_transports(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not read until a handshake")
    extra = {"proxy": {"https": "http://p:3128"}, "verify_ssl": str(ca), "trust_env": "false", "timeout": "5"}
    settings = read_settings(conn(password="k"), extra)
    assert dict(settings.proxies) == {"https": "http://p:3128"} and settings.verify == str(ca)
    assert settings.trust_env is False and settings.timeout == 5.0
    session = requests_session(settings, with_key=False)
    assert (session.proxies, session.verify, session.trust_env, session.auth) == (
        {"https": "http://p:3128"},
        str(ca),
        False,
        None,
    )
    assert ssl_for(read_settings(conn(password="k"), {"verify": False})) is False


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"rate_limit": "fast"}, "rate_limit"),
        ({"rate_limit": 0}, "rate_limit"),
        ({"timeout": "-1"}, "timeout"),
        ({"rate_limit_scope": "cluster"}, "rate_limit_scope"),
        ({"proxies": "http://p:3128"}, "proxies"),
        ({"verify": "/no/such/bundle.pem"}, "verify"),
        ({"cert": "/no/such/client.pem"}, "cert"),
        ({"cert": ["a", "b", "c"]}, "cert"),
        ({"trust_env": "sometimes"}, "trust_env"),
        ({"rate_limit_scope": "redis", "rate_limit_redis_conn_id": ""}, "rate_limit_redis_conn_id"),
        ({"rate_limit_scope": "redis", "rate_limit_redis_conn_id": "  "}, "rate_limit_redis_conn_id"),
        ({"rate_limit_scope": "redis", "rate_limit_redis_conn_id": 5}, "rate_limit_redis_conn_id"),
        ({"rate_limit_redis_conn_id": ["redis_default"]}, "rate_limit_redis_conn_id"),
    ],
)
def test_bad_extra_names_connection_and_field(extra: dict[str, Any], field: str) -> None:
    with pytest.raises(ConnectionConfigError, match=f"'my_lotimage', extra '{field}'") as info:
        read_settings(conn(password="k"), extra)
    assert info.value.ends_task(resubmits=True)  # no Airflow retry fixes a connection


def test_redis_scope_and_its_connection() -> None:
    settings = read_settings(conn(password="k"), {"rate_limit_scope": "redis"})
    assert (settings.rate_limit_scope, settings.rate_limit_redis_conn_id) == ("redis", "redis_default")
    named = read_settings(conn(password="k"), {"rate_limit_scope": "redis", "rate_limit_redis_conn_id": "rl"})
    assert named.rate_limit_redis_conn_id == "rl"
    # Unused by other scopes, an empty id (what a form may save) is no mistake there.
    assert read_settings(conn(password="k"), {"rate_limit_redis_conn_id": ""}).rate_limit_scope == "host"


def test_missing_key() -> None:
    with pytest.raises(AuthError, match="'my_lotimage' has no API key"):
        read_settings(conn(password=None), {})
