"""Fixtures of the emulator tests: a fast emulator, a client for it, a webhook receiver."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from .helpers import FAST, KEY, Client, Receiver

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from lotimage_emulator import Emulator


@pytest.fixture
def make_emulator(lotimage_emulator_factory: Callable[..., Emulator]) -> Callable[..., Emulator]:
    """Fast emulator with no rate limit unless a test asks for one."""

    def make(**overrides: Any) -> Emulator:
        settings: dict[str, Any] = {"keys": (KEY,), "time_scale": FAST, "rate_limit": None, "grid_size": 256}
        return lotimage_emulator_factory(**{**settings, **overrides})

    return make


@pytest.fixture
def emu(make_emulator: Callable[..., Emulator]) -> Emulator:
    return make_emulator()


@pytest.fixture
def client(emu: Emulator) -> Client:
    return Client(emu.url)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hook = Receiver()
    yield hook
    hook.close()
