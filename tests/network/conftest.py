"""Fixtures for tests that reach the emulator through a real proxy or over HTTPS with a private CA.

- ``test_ca`` (session): a :class:`~tests.network.tls.TestCA`, PEM paths ``ca_cert``,
  ``server_cert``, ``server_key``, ``client_cert``, ``client_key`` (and ``ca_key``), plus
  ``server_context()`` / ``client_context()``.
- ``tls_emulator``: an :class:`Emulator` with the settings of the ``lotimage_emulator`` fixture
  (``TEST_DEFAULTS``: key ``lotimage_api_key``, ~1 s imagine, 256 px grids, 3 calls/s) served over
  HTTPS with the test CA's server certificate; ``url`` is ``https://127.0.0.1:PORT``.
- ``forward_proxy``: a running :class:`~tests.network.proxy.TinyProxy` (``url``, ``log_text()``,
  ``requests()``, ``request_lines()``, ``wait_for_request()``, ``mark()``); fails, with how to
  install it, when tinyproxy is missing.
- ``dead_proxy_url``: ``http://127.0.0.1:PORT`` where nothing listens (connections are refused).
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

import pytest
from lotimage_emulator import Emulator
from lotimage_emulator.pytest_plugin import TEST_DEFAULTS

from .proxy import TinyProxy, TinyProxyNotInstalled
from .tls import TestCA, make_test_ca

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    """A CA made for this session, with a server certificate for 127.0.0.1/localhost and a client one."""
    return make_test_ca(tmp_path_factory.mktemp("test-ca"))


@pytest.fixture
def tls_emulator(test_ca: TestCA) -> Iterator[Emulator]:
    """An emulator like ``lotimage_emulator``, but over HTTPS with ``test_ca``'s server certificate."""
    emulator = Emulator(**TEST_DEFAULTS, ssl_context=test_ca.server_context())
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def forward_proxy(tmp_path: Path) -> Iterator[TinyProxy]:
    """A tinyproxy on loopback; its config and log stay in the test's ``tmp_path/tinyproxy``."""
    proxy = TinyProxy(directory=tmp_path / "tinyproxy")
    try:
        proxy.start()
    except TinyProxyNotInstalled as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture
def dead_proxy_url() -> Iterator[str]:
    """A loopback proxy URL that refuses connections.

    The port stays bound, but not listening, for the whole test: Linux answers a connection with
    a reset (refused), and no other process can start listening there meanwhile.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
