"""Reading a LotImage connection: every network extra, and every mistake named before any call."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_provider_lotimage.client.async_transport import ssl_for
from airflow_provider_lotimage.client.redaction import hide, secret_forms
from airflow_provider_lotimage.client.settings import read_settings
from airflow_provider_lotimage.client.transport import requests_session
from airflow_provider_lotimage.exceptions import AuthError, ConnectionConfigError


def conn(**fields: Any) -> SimpleNamespace:
    return SimpleNamespace(**{"conn_id": "my_lotimage", "host": "http://emu:1", "port": None, **fields})


def test_defaults_follow_requests() -> None:
    settings = read_settings(conn(password="k-3f9Q"), {})
    assert (settings.verify, settings.cert, settings.trust_env, dict(settings.proxies)) == (
        True,
        None,
        True,
        {},
    )
    assert settings.rate_limit == 3.0 and settings.rate_limit_scope == "host" and settings.timeout == 30.0
    assert "k-3f9Q" not in repr(settings)


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


@pytest.mark.parametrize(
    "password", ["k-0123456789\n", "k-0123456789\r\n", " k-0123456789\t", "k-0123456789\u00a0"]
)
def test_key_loses_surrounding_whitespace(password: str) -> None:
    """A key read from a secret file ends in a newline; a pasted one may carry spaces: dropped."""
    assert read_settings(conn(password=password), {}).api_key == "k-0123456789"


@pytest.mark.parametrize(
    ("password", "what"),
    [
        ("sk-first\r\nX-Injected: 1", "a control character (U+000D) at character 9"),
        ("sk-first\x00second", "a control character (U+0000) at character 9"),
        ("sk-first\x7fsecond", "a control character (U+007F) at character 9"),
        ("sk-first second", "a space (U+0020) at character 9"),
        ("sk-firsté", "a non-ASCII character (U+00E9) at character 9"),
        ("sk-first€", "a non-ASCII character (U+20AC) at character 9"),
        ("sk-first\udcff", "a non-ASCII character (U+DCFF) at character 9"),
    ],
)
def test_key_no_header_can_carry_is_refused_without_showing_it(password: str, what: str) -> None:
    with pytest.raises(ConnectionConfigError) as info:
        read_settings(conn(password=password), {})
    message = str(info.value)
    assert message.startswith("Connection 'my_lotimage': its API key (the password field) holds " + what)
    assert "sk-first" not in message and "second" not in message
    assert info.value.__cause__ is None and info.value.__context__ is None


def test_secret_forms_cover_the_header_and_escaped_text() -> None:
    forms = secret_forms('sk-a\\b"c')
    assert {'sk-a\\b"c', 'Bearer sk-a\\b"c', 'sk-a\\\\b"c', 'Bearer sk-a\\\\b"c'} <= set(forms)
    assert hide("b'Bearer sk-a\\\\b\"c' refused", forms) == "b'***' refused"


@pytest.mark.parametrize("mode", ["requests", "aiohttp"])
def test_a_request_that_cannot_be_built_never_shows_the_key(lotimage_emulator: Any, mode: str) -> None:
    """The transports' backstop, below the key check: settings built around it with a key that
    ``http.client`` and ``aiohttp`` refuse. Nothing is sent; the error and its chain lack the key."""
    import asyncio

    from airflow_provider_lotimage.client import contract as api
    from airflow_provider_lotimage.client.async_transport import AsyncTransport, shared_sessions
    from airflow_provider_lotimage.client.settings import ConnectionSettings
    from airflow_provider_lotimage.client.transport import Call, SyncTransport

    key = "sk-lotimage-BACKSTOP-0123456789abcdef"
    settings = ConnectionSettings(conn_id="my_lotimage", base_url=lotimage_emulator.url, api_key=key + "\n")
    call = Call("task/progress", api.PROGRESS_PATH, {"taskId": "t"}, paid=False, parse=lambda reply: reply)

    async def send_async() -> Any:
        transport = AsyncTransport(settings)
        async with shared_sessions.use(trust_env=False) as session:
            return await transport.send(session, call, 0.0)

    with pytest.raises(ConnectionConfigError, match="could not build the request to LotImage") as info:
        if mode == "requests":
            SyncTransport(settings).send(call)
        else:
            asyncio.run(send_async())
    error = info.value
    assert "nothing was sent" in str(error) and error.final
    chain: list[BaseException | None] = [error]
    while chain:
        current = chain.pop()
        if current is not None:
            assert key not in f"{current} {current!r} {current.args!r} {vars(current)!r}"
            chain += [current.__cause__, current.__context__]
    assert lotimage_emulator.stats()["requests"]["progress"] == 0
