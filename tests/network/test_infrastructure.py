"""The network fixtures work with plain ``requests`` and ``aiohttp`` clients.

They prove what the provider's proxy and private-CA tests will rely on: the HTTPS emulator is
trusted only with the test CA, the forward proxy really carries the traffic (and logs it), and a
dead proxy fails the way each client library reports it.
"""

from __future__ import annotations

import asyncio
import re
import signal
import ssl
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
import requests
from lotimage_emulator import run_emulator
from lotimage_emulator.pytest_plugin import TEST_API_KEY, TEST_DEFAULTS

from airflow_provider_lotimage.client.contract import IMAGINE_PATH, PROGRESS_PATH

from .proxy import TinyProxy, parse_requests

if TYPE_CHECKING:
    from lotimage_emulator import Emulator

    from .tls import TestCA

AUTH = {"Authorization": f"Bearer {TEST_API_KEY}"}
UNKNOWN_TASK = {"taskId": "no-such-task"}


def post_progress(base_url: str, **kwargs: Any) -> requests.Response:
    return requests.post(base_url + PROGRESS_PATH, json=UNKNOWN_TASK, headers=AUTH, timeout=10, **kwargs)


def assert_not_found(body: dict[str, Any]) -> None:
    """The documented answer for an unknown ``taskId``: body status 404, ``Task not found``."""
    assert body["status"] == 404 and body["errMessage"] == "Task not found", body


async def aio_progress(url: str, **kwargs: Any) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url + PROGRESS_PATH, json=UNKNOWN_TASK, headers=AUTH, **kwargs) as response,
    ):
        body: dict[str, Any] = await response.json()
        return body


# ------------------------------------------------------------------------------------ HTTPS
def test_https_emulator_trusted_only_with_the_test_ca(tls_emulator: Emulator, test_ca: TestCA) -> None:
    assert tls_emulator.url == f"https://127.0.0.1:{tls_emulator.port}"
    assert_not_found(post_progress(tls_emulator.url, verify=str(test_ca.ca_cert)).json())
    with pytest.raises(requests.exceptions.SSLError):
        post_progress(tls_emulator.url)
    localhost = tls_emulator.url.replace("127.0.0.1", "localhost")
    assert_not_found(post_progress(localhost, verify=str(test_ca.ca_cert)).json())


def test_aiohttp_trusts_the_test_ca_through_an_ssl_context(tls_emulator: Emulator, test_ca: TestCA) -> None:
    assert_not_found(asyncio.run(aio_progress(tls_emulator.url, ssl=test_ca.client_context())))
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        asyncio.run(aio_progress(tls_emulator.url))


def test_mutual_tls_needs_the_client_certificate(test_ca: TestCA) -> None:
    context = test_ca.server_context(require_client_cert=True)
    with run_emulator(**TEST_DEFAULTS, ssl_context=context) as emulator:
        verify = str(test_ca.ca_cert)
        cert = (str(test_ca.client_cert), str(test_ca.client_key))
        assert_not_found(post_progress(emulator.url, verify=verify, cert=cert).json())
        # TLS 1.3 reports a missing client certificate after the handshake: SSLError or a reset.
        with pytest.raises(requests.exceptions.ConnectionError):
            post_progress(emulator.url, verify=verify)
        body = asyncio.run(aio_progress(emulator.url, ssl=test_ca.client_context(with_client_cert=True)))
        assert_not_found(body)


def test_https_emulator_hands_out_https_picture_links(tls_emulator: Emulator, test_ca: TestCA) -> None:
    # verify goes on every call: with $REQUESTS_CA_BUNDLE set (as on this machine) requests lets
    # the environment override Session.verify (psf/requests#3829).
    session = requests.Session()
    session.headers.update(AUTH)
    verify = str(test_ca.ca_cert)
    submitted = session.post(
        tls_emulator.url + IMAGINE_PATH, json={"prompt": "owl"}, timeout=10, verify=verify
    ).json()
    task_id = submitted["taskId"]
    deadline = time.monotonic() + 20
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        time.sleep(0.4)  # stays under the fixture's 3 calls a second
        answer = session.post(
            tls_emulator.url + PROGRESS_PATH, json={"taskId": task_id}, timeout=10, verify=verify
        )
        body = answer.json()
        if body.get("progress") == 100 and body.get("imageUrl"):
            break
    assert body.get("progress") == 100, body
    assert body["imageUrl"].startswith(tls_emulator.url + "/"), body["imageUrl"]
    picture = session.get(body["imageUrl"], timeout=10, verify=verify)
    assert picture.status_code == 200 and picture.content.startswith(b"\x89PNG")


# ------------------------------------------------------------------------------------ proxy
def test_plain_http_through_the_proxy_is_logged(
    lotimage_emulator: Emulator, forward_proxy: TinyProxy
) -> None:
    since = forward_proxy.mark()
    response = post_progress(lotimage_emulator.url, proxies={"http": forward_proxy.url})
    assert_not_found(response.json())
    target = lotimage_emulator.url + PROGRESS_PATH
    logged = forward_proxy.wait_for_request("POST", target, since=since)
    assert logged.target == target and logged.version == "HTTP/1.1"
    assert f"POST {target} HTTP/1.1" in forward_proxy.request_lines()
    assert lotimage_emulator.stats()["requests"]["progress"] == 1


def test_https_through_the_proxy_is_a_connect_tunnel(
    tls_emulator: Emulator, test_ca: TestCA, forward_proxy: TinyProxy
) -> None:
    proxies = {"https": forward_proxy.url}
    assert_not_found(post_progress(tls_emulator.url, proxies=proxies, verify=str(test_ca.ca_cert)).json())
    logged = forward_proxy.wait_for_request("CONNECT", f"127.0.0.1:{tls_emulator.port}")
    # urllib3 tunnels with http.client, which sends "CONNECT host:port HTTP/1.0" before Python 3.12
    # and HTTP/1.1 since (as aiohttp does).
    version = "HTTP/1.1" if sys.version_info >= (3, 12) else "HTTP/1.0"
    assert logged.line == f"CONNECT 127.0.0.1:{tls_emulator.port} {version}"
    # The tunnel is opaque to the proxy: no absolute-form request line for the API path.
    assert not any(PROGRESS_PATH in line for line in forward_proxy.request_lines())


def test_aiohttp_through_the_proxy(
    lotimage_emulator: Emulator, tls_emulator: Emulator, test_ca: TestCA, forward_proxy: TinyProxy
) -> None:
    assert_not_found(asyncio.run(aio_progress(lotimage_emulator.url, proxy=forward_proxy.url)))
    forward_proxy.wait_for_request("POST", lotimage_emulator.url + PROGRESS_PATH)
    body = asyncio.run(aio_progress(tls_emulator.url, proxy=forward_proxy.url, ssl=test_ca.client_context()))
    assert_not_found(body)
    forward_proxy.wait_for_request("CONNECT", f"127.0.0.1:{tls_emulator.port}")


def test_proxy_basic_auth(lotimage_emulator: Emulator, tmp_path: Any) -> None:
    with TinyProxy(basic_auth=("lotimage", "s3cret"), directory=tmp_path / "auth-proxy") as proxy:
        health = lotimage_emulator.url + "/_emulator/health"
        assert requests.get(health, proxies={"http": proxy.url}, timeout=10).status_code == 407
        # tinyproxy closes without reading a refused POST's body, so requests sees a reset, not 407.
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            post_progress(lotimage_emulator.url, proxies={"http": proxy.url})
        assert_not_found(post_progress(lotimage_emulator.url, proxies={"http": proxy.auth_url}).json())
    assert lotimage_emulator.stats()["requests"]["progress"] == 1


def test_dead_proxy_fails_as_a_proxy_error(lotimage_emulator: Emulator, dead_proxy_url: str) -> None:
    with pytest.raises(requests.exceptions.ProxyError):
        post_progress(lotimage_emulator.url, proxies={"http": dead_proxy_url, "https": dead_proxy_url})
    with pytest.raises(aiohttp.ClientProxyConnectionError):
        asyncio.run(aio_progress(lotimage_emulator.url, proxy=dead_proxy_url))
    assert lotimage_emulator.stats()["requests"]["progress"] == 0


def test_parse_requests_reads_tinyproxys_format() -> None:
    log = (
        "CONNECT   Nov 21 13:50:12.344 [4335]: Connect (file descriptor 5): 127.0.0.1\n"
        "CONNECT   Nov 21 13:50:12.344 [4335]: Request (file descriptor 5): "
        "POST http://127.0.0.1:8765/p?x=1 HTTP/1.1\n"
        "INFO      Nov 21 13:50:12.345 [4335]: No upstream proxy for 127.0.0.1\n"
        "CONNECT   Nov 21 13:50:12.356 [4335]: Request (file descriptor 7): CONNECT 127.0.0.1:8443 HTTP/1.0\n"
    )
    assert [(r.method, r.target, r.version, r.fd) for r in parse_requests(log)] == [
        ("POST", "http://127.0.0.1:8765/p?x=1", "HTTP/1.1", 5),
        ("CONNECT", "127.0.0.1:8443", "HTTP/1.0", 7),
    ]


# ------------------------------------------------------------------------------------ CLI
def test_cli_serves_https(test_ca: TestCA) -> None:
    command = [sys.executable, "-m", "lotimage_emulator", "--port", "0"]
    tls = ["--tls-cert", str(test_ca.server_cert), "--tls-key", str(test_ca.server_key)]
    process = subprocess.Popen(
        [*command, *tls, "--key", TEST_API_KEY, "--log-level", "WARNING"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        match = re.fullmatch(r"LotImage emulator listening on (https://127\.0\.0\.1:\d+)", line)
        assert match, line
        assert_not_found(post_progress(match.group(1), verify=str(test_ca.ca_cert)).json())
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=15)
    assert process.returncode == 0

    half = subprocess.run([*command, tls[0], tls[1]], capture_output=True, text=True, timeout=60)
    assert half.returncode == 2 and "--tls-cert and --tls-key go together" in half.stderr
    swapped = [tls[0], str(test_ca.client_cert), tls[2], str(test_ca.server_key)]
    mismatched = subprocess.run([*command, *swapped], capture_output=True, text=True, timeout=60)
    assert mismatched.returncode == 2 and "cannot load" in mismatched.stderr


def test_client_context_checks_hostnames(test_ca: TestCA) -> None:
    context = test_ca.client_context()
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
