"""pytest fixtures that put a LotImage emulator on loopback (registered as ``lotimage_emulator``).

Fixtures: ``lotimage_emulator_factory`` (start emulators with config overrides; all stopped at
teardown), ``lotimage_emulator`` (one started with :data:`TEST_DEFAULTS`: an imagine takes about
1 s), ``lotimage_api_key`` (the key it accepts) and ``lotimage_connection`` (points the
``lotimage_default`` Airflow connection at it through ``AIRFLOW_CONN_LOTIMAGE_DEFAULT``).

pytest loads the module (entry point ``pytest11``) into every run of an environment where
``lotimage-emulator`` is installed, so it imports nothing heavy at import time and nothing of Airflow
at all; the connection is plain JSON in an environment variable.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from lotimage_emulator import Emulator

#: The key the fixture emulator accepts.
TEST_API_KEY = "lotimage-test-key-0123456789"
#: Test-friendly settings: one key, ~1 s imagine (45 s x 1/45), small 256 px grids, 3 calls/s.
TEST_DEFAULTS: dict[str, Any] = {
    "keys": (TEST_API_KEY,),
    "time_scale": 1.0 / 45.0,
    "grid_size": 256,
    "rate_limit": 3.0,
}
CONN_ID = "lotimage_default"


@pytest.fixture
def lotimage_api_key() -> str:
    """Provide the API key the fixture emulators accept."""
    return TEST_API_KEY


@pytest.fixture
def lotimage_emulator_factory() -> Iterator[Callable[..., Emulator]]:
    """``factory(**overrides) -> Emulator``: started with :data:`TEST_DEFAULTS` plus overrides."""
    from lotimage_emulator import Emulator

    started: list[Emulator] = []

    def factory(**overrides: Any) -> Emulator:
        emulator = Emulator(**{**TEST_DEFAULTS, **overrides})
        emulator.start()
        started.append(emulator)
        return emulator

    yield factory
    for emulator in reversed(started):
        emulator.stop()


@pytest.fixture
def lotimage_emulator(lotimage_emulator_factory: Callable[..., Emulator]) -> Emulator:
    """Provide a started emulator with :data:`TEST_DEFAULTS`."""
    return lotimage_emulator_factory()


@pytest.fixture
def lotimage_connection(
    lotimage_emulator: Emulator, lotimage_api_key: str, monkeypatch: pytest.MonkeyPatch
) -> str:
    """Point connection ``lotimage_default`` at the fixture emulator; returns the conn id."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_LOTIMAGE_DEFAULT",
        json.dumps({"conn_type": "lotimage", "host": lotimage_emulator.url, "password": lotimage_api_key}),
    )
    return CONN_ID
