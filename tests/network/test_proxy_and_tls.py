"""The provider behind a real forward proxy and against a private CA, on the sync and the async path.

The poke-mode example reaches LotImage with ``requests`` (workers), the deferrable one from its
trigger with ``aiohttp``; both must honour the connection's ``proxies``, ``verify`` and ``cert``, and
both must fail at once, naming the problem, when the proxy is dead or the certificate untrusted.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest
from lotimage_emulator import Emulator
from lotimage_emulator.pytest_plugin import TEST_API_KEY, TEST_DEFAULTS

from airflow_provider_lotimage.client import contract as api
from airflow_provider_lotimage.client.retry import RetryPolicy
from airflow_provider_lotimage.exceptions import ProxyError, TaskNotFoundError, TLSError
from airflow_provider_lotimage.hooks.lotimage import LotImageHook
from tests.dag_helpers import run_dag

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from .proxy import TinyProxy
    from .tls import TestCA

EXAMPLES = {"poke": "example_lotimage_imagine", "deferrable": "example_lotimage_imagine_deferrable"}
#: Far below the 900 s stall timeout a failure that counted as "no progress" would take.
FAST_FAILURE = 60.0
FAST = RetryPolicy(max_attempts=3, base_delay=0.05, max_delay=0.2)


def connect(
    monkeypatch: pytest.MonkeyPatch, url: str, conn_id: str = "lotimage_default", **extra: Any
) -> None:
    """Point ``conn_id`` at ``url`` with the test key and ``extra``."""
    conn = {"conn_type": "lotimage", "host": url, "password": TEST_API_KEY, "extra": extra}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))


def through(proxy_url: str) -> dict[str, str]:
    return {"http": proxy_url, "https": proxy_url}


def api_calls(proxy: TinyProxy) -> Counter[str]:
    """The LotImage calls the proxy forwarded, by path."""
    return Counter(
        urlsplit(r.target).path for r in proxy.requests() if r.method == "POST" and "/midjourney/" in r.target
    )


@pytest.fixture(autouse=True)
def _db(airflow_db: None) -> None:
    return None


@pytest.fixture(autouse=True)
def _environment_ca_bundle(monkeypatch: pytest.MonkeyPatch) -> None:
    """Many machines set ``REQUESTS_CA_BUNDLE``; the connection's ``verify`` must win over it."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")


# ------------------------------------------------------------------------------------ proxy
@pytest.mark.parametrize("mode", EXAMPLES)
def test_example_runs_through_the_proxy(
    mode: str, lotimage_emulator: Emulator, forward_proxy: TinyProxy, monkeypatch, load_example, output_dir
) -> None:
    connect(monkeypatch, lotimage_emulator.url, proxies=through(forward_proxy.url))
    run = load_example(EXAMPLES[mode]).test()
    assert run.state == "success"
    assert len(list(output_dir.glob("*.png"))) == 4
    received = lotimage_emulator.stats()["requests"]
    assert received["imagine"] == 1 and received["progress"] >= 1
    # Every call the emulator received came through the proxy, the trigger's reads included.
    assert api_calls(forward_proxy) == {api.IMAGINE_PATH: 1, api.PROGRESS_PATH: received["progress"]}
    downloads = [
        r for r in forward_proxy.requests() if r.method == "GET" and "/_emulator/images/" in r.target
    ]
    assert len(downloads) == lotimage_emulator.stats()["events"]["image_requests"] > 0


@pytest.mark.parametrize("mode", EXAMPLES)
def test_example_with_a_dead_proxy_fails_at_once(
    mode: str, lotimage_emulator: Emulator, dead_proxy_url: str, monkeypatch, load_example, output_dir
) -> None:
    connect(monkeypatch, lotimage_emulator.url, proxies=through(dead_proxy_url))
    started = time.monotonic()
    run = load_example(EXAMPLES[mode]).test()
    assert time.monotonic() - started < FAST_FAILURE
    assert run.state == "failed"
    assert run.get_task_instance("imagine").state == "failed"
    assert lotimage_emulator.stats()["requests"] == {"imagine": 0, "progress": 0, "button": 0}


def test_dead_proxy_is_named_and_never_counted_as_no_progress(
    lotimage_emulator: Emulator, dead_proxy_url: str, monkeypatch
) -> None:
    connect(monkeypatch, lotimage_emulator.url, proxies=through(dead_proxy_url))
    hook = LotImageHook(retry_policy=FAST)
    with pytest.raises(ProxyError, match="proxy") as sync_error:
        hook.imagine("a cat")  # a paid call the proxy refused: never ambiguous, never resent
    with pytest.raises(ProxyError) as async_error:
        asyncio.run(LotImageHook(retry_policy=FAST).apoll_once("some-task"))
    for error in (sync_error.value, async_error.value):
        assert urlsplit(dead_proxy_url).netloc in str(error) and "'proxies'" in str(error)
    assert lotimage_emulator.stats()["requests"] == {"imagine": 0, "progress": 0, "button": 0}


def test_proxy_credentials_never_show(lotimage_emulator: Emulator, dead_proxy_url: str, monkeypatch) -> None:
    with_password = dead_proxy_url.replace("http://", "http://user:s3cret-proxy-pw@")
    connect(monkeypatch, lotimage_emulator.url, proxies=through(with_password))
    with pytest.raises(ProxyError) as sync_error:
        LotImageHook(retry_policy=FAST).get_task_progress("t")
    with pytest.raises(ProxyError) as async_error:
        asyncio.run(LotImageHook(retry_policy=FAST).aget_task_progress("t"))
    for error in (sync_error.value, async_error.value):
        assert "s3cret-proxy-pw" not in str(error) and "user:" not in str(error)


# ------------------------------------------------------------------------------------ TLS
@pytest.mark.parametrize("mode", EXAMPLES)
def test_example_over_https_with_the_private_ca(
    mode: str, tls_emulator: Emulator, test_ca: TestCA, monkeypatch, load_example, output_dir
) -> None:
    connect(monkeypatch, tls_emulator.url, verify=str(test_ca.ca_cert))
    run = load_example(EXAMPLES[mode]).test()
    assert run.state == "success"
    assert len(list(output_dir.glob("*.png"))) == 4  # downloads over https trust the CA too
    assert tls_emulator.stats()["submissions"] == {"imagine": 1, "button": 0}


@pytest.mark.parametrize("mode", EXAMPLES)
def test_example_over_https_with_default_verify_fails_at_once(
    mode: str, tls_emulator: Emulator, monkeypatch, load_example, output_dir
) -> None:
    connect(monkeypatch, tls_emulator.url)
    started = time.monotonic()
    run = load_example(EXAMPLES[mode]).test()
    assert time.monotonic() - started < FAST_FAILURE
    assert run.state == "failed" and run.get_task_instance("imagine").state == "failed"
    assert run.get_task_instance("imagine").try_number == 1  # final: no Airflow retry either
    assert tls_emulator.stats()["requests"] == {"imagine": 0, "progress": 0, "button": 0}


def test_untrusted_certificate_says_so_on_both_paths(tls_emulator: Emulator, monkeypatch) -> None:
    connect(monkeypatch, tls_emulator.url)
    with pytest.raises(TLSError, match=r"certificate verify failed|unable to get local issuer") as sync_error:
        LotImageHook(retry_policy=FAST).get_task_progress("t")
    with pytest.raises(TLSError) as async_error:
        asyncio.run(LotImageHook(retry_policy=FAST).apoll_once("t"))
    for error in (sync_error.value, async_error.value):
        assert "'verify'" in str(error) and "lotimage_default" in str(error)


@pytest.fixture
def mtls_emulator(test_ca: TestCA) -> Iterator[Emulator]:
    """An HTTPS emulator that refuses clients without a certificate signed by the test CA."""
    with Emulator(**TEST_DEFAULTS, ssl_context=test_ca.server_context(require_client_cert=True)) as emulator:
        yield emulator


@pytest.mark.parametrize("cert", ["pair", "combined"])
def test_client_certificate_on_both_paths(
    mtls_emulator: Emulator, test_ca: TestCA, tmp_path: Path, monkeypatch, cert: str
) -> None:
    if cert == "pair":
        client_cert: Any = [str(test_ca.client_cert), str(test_ca.client_key)]
    else:
        combined = tmp_path / "client.pem"
        combined.write_bytes(test_ca.client_cert.read_bytes() + test_ca.client_key.read_bytes())
        client_cert = str(combined)
    connect(monkeypatch, mtls_emulator.url, verify=str(test_ca.ca_cert), cert=client_cert)
    with pytest.raises(TaskNotFoundError):
        LotImageHook(retry_policy=FAST).get_task_progress("t")
    with pytest.raises(TaskNotFoundError):
        asyncio.run(LotImageHook(retry_policy=FAST).aget_task_progress("t"))
    assert mtls_emulator.stats()["requests"]["progress"] == 2


# ---------------------------------------------------------- the trigger itself, not the submit
@pytest.mark.parametrize("problem", ["dead_proxy", "untrusted_certificate"])
def test_deferred_sensor_fails_at_once(
    problem: str, tls_emulator: Emulator, test_ca: TestCA, dead_proxy_url: str, monkeypatch
) -> None:
    """A task paid through a working connection, followed through a broken one: the deferrable
    sensor's first poke (before any deferral) fails the task at once."""
    from airflow.sdk import DAG

    from airflow_provider_lotimage.sensors.task_progress import TaskProgressSensor

    connect(monkeypatch, tls_emulator.url, verify=str(test_ca.ca_cert))
    task_id = LotImageHook(retry_policy=FAST).imagine("a lighthouse")
    broken = {"verify": str(test_ca.ca_cert), "proxies": through(dead_proxy_url)}
    connect(monkeypatch, tls_emulator.url, "lotimage_broken", **(broken if problem == "dead_proxy" else {}))
    errors: list[str] = []
    with DAG(f"network_deferred_{problem}", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        TaskProgressSensor(
            task_id="wait",
            lotimage_task_id=task_id,
            lotimage_conn_id="lotimage_broken",
            deferrable=True,
            poke_interval=0.3,
            timeout=1800,
            on_failure_callback=lambda context: errors.append(str(context.get("exception"))),
        )
    started = time.monotonic()
    run = run_dag(dag)
    assert time.monotonic() - started < FAST_FAILURE
    assert run.state == "failed"
    expected = "proxy" if problem == "dead_proxy" else "TLS handshake"
    assert errors and expected in errors[0], errors
    assert tls_emulator.stats()["requests"]["progress"] == 0


@pytest.mark.parametrize("problem", ["dead_proxy", "untrusted_certificate"])
def test_trigger_through_a_broken_connection_ends_with_an_error_at_once(
    problem: str, tls_emulator: Emulator, test_ca: TestCA, dead_proxy_url: str, monkeypatch
) -> None:
    """The triggerer's own path: the deferrable sensor now fails in its first poke, so the trigger
    is driven directly, as the triggerer would run it after a deferral."""
    import asyncio

    from airflow_provider_lotimage.triggers.task_progress import TaskProgressTrigger

    connect(monkeypatch, tls_emulator.url, verify=str(test_ca.ca_cert))
    task_id = LotImageHook(retry_policy=FAST).imagine("a lighthouse")
    broken = {"verify": str(test_ca.ca_cert), "proxies": through(dead_proxy_url)}
    connect(monkeypatch, tls_emulator.url, "lotimage_broken", **(broken if problem == "dead_proxy" else {}))
    trigger = TaskProgressTrigger(
        task_id, "lotimage_broken", poll_interval=0.3, end_time=time.time() + 1800, first_poll_at=time.time()
    )
    started = time.monotonic()
    event = asyncio.run(anext(trigger.run()))
    assert time.monotonic() - started < FAST_FAILURE
    expected = "proxy" if problem == "dead_proxy" else "TLS handshake"
    assert event.payload["status"] == "error", event.payload
    assert expected in event.payload["message"], event.payload
    assert event.payload["error_type"] == ("ProxyError" if problem == "dead_proxy" else "TLSError")
    assert tls_emulator.stats()["requests"]["progress"] == 0


def test_proxy_credentials_from_the_url_on_both_paths(
    lotimage_emulator: Emulator, tmp_path: Path, monkeypatch
) -> None:
    from .proxy import TinyProxy

    with TinyProxy(basic_auth=("lotimage", "proxy-pw-123"), directory=tmp_path / "auth-proxy") as proxy:
        connect(monkeypatch, lotimage_emulator.url, proxies=through(proxy.auth_url))
        with pytest.raises(TaskNotFoundError):
            LotImageHook(retry_policy=FAST).get_task_progress("t")
        with pytest.raises(TaskNotFoundError):
            asyncio.run(LotImageHook(retry_policy=FAST).aget_task_progress("t"))
        assert api_calls(proxy) == {api.PROGRESS_PATH: 2}
    assert lotimage_emulator.stats()["requests"]["progress"] == 2


def test_https_through_the_proxy_tunnels_on_both_paths(
    tls_emulator: Emulator, test_ca: TestCA, forward_proxy: TinyProxy, monkeypatch
) -> None:
    connect(monkeypatch, tls_emulator.url, verify=str(test_ca.ca_cert), proxies=through(forward_proxy.url))
    with pytest.raises(TaskNotFoundError):
        LotImageHook(retry_policy=FAST).get_task_progress("t")
    with pytest.raises(TaskNotFoundError):
        asyncio.run(LotImageHook(retry_policy=FAST).aget_task_progress("t"))
    tunnels = [r.target for r in forward_proxy.requests() if r.method == "CONNECT"]
    assert tunnels == [urlsplit(tls_emulator.url).netloc] * 2
    assert tls_emulator.stats()["requests"]["progress"] == 2
