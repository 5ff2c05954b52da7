"""The emulator's settings and their one validation.

Every way a config comes to exist ends in :meth:`EmulatorConfig.__post_init__`: the constructor
(the CLI builds one from its arguments), ``dataclasses.replace`` (``Emulator(**overrides)``) and
:meth:`EmulatorConfig.changed` (``Engine.set_config``, hence ``Emulator.set_config`` and the admin
``POST /_emulator/config``). Checking types and ranges there, and nowhere else, means a rule added
once holds for every path, and a JSON value of the wrong type is refused before it is stored.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lotimage_emulator.models import key_id

#: Config fields that only make sense at start-up: the socket is bound by the time anyone changes
#: the config at runtime.
STARTUP_ONLY = frozenset({"host", "port"})


def _number(value: Any) -> bool:
    """Accept an int or a float; ``bool`` is an ``int`` to Python but never a meaningful number here."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _integer(value: Any) -> bool:
    """Accept an int that is not a bool (JSON ``true`` must not become a count of 1)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    """``check``, or ``None``, which switches the knob off."""
    return lambda value: value is None or check(value)


def _strings(value: Any) -> bool:
    """Accept a JSON list (or tuple) of strings, as keys and banned words arrive."""
    return isinstance(value, list | tuple) and all(isinstance(item, str) for item in value)


#: The type every field accepts, checked before anything is stored because values come untyped
#: from JSON bodies and command lines.
_FIELD_TYPES: dict[str, Callable[[Any], bool]] = {
    "host": _optional(lambda value: isinstance(value, str)),
    "port": _integer,
    "keys": _optional(_strings),
    "rate_limit": _optional(_number),
    "daily_quota": _optional(_integer),
    "max_running": _integer,
    "time_scale": _number,
    "imagine_seconds": _number,
    "variation_seconds": _number,
    "upscale_seconds": _number,
    "grid_size": _integer,
    "image_ttl_seconds": _number,
    "mirror_http_status": lambda value: isinstance(value, bool),
    "banned_words": _strings,
    "webhook_timeout": _number,
    "public_url": _optional(lambda value: isinstance(value, str)),
    "render_cache_entries": _integer,
    "png_compress_level": _integer,
}


@dataclass(frozen=True)
class EmulatorConfig:
    """Every knob of the emulator. Durations are the real service's; ``time_scale`` shrinks them.

    ``keys``: accepted API keys (``None`` or empty: any non-empty key). ``rate_limit``: calls a
    second per key over a sliding 1 s window (``None``/0: off). ``daily_quota``: calls a UTC day per
    key, all endpoints (``None``: off). ``max_running``: tasks a key runs at once; the rest queue at
    progress 0. ``image_ttl_seconds`` is real time (not scaled). ``mirror_http_status``: HTTP status
    equals the body ``status`` instead of the sibling services' "HTTP 200, error in body".
    ``public_url`` overrides the base of picture URLs (default: the Host the client used).
    """

    host: str = "127.0.0.1"
    port: int = 0
    keys: tuple[str, ...] | None = None
    rate_limit: float | None = 3.0
    daily_quota: int | None = None
    max_running: int = 3
    time_scale: float = 1.0
    imagine_seconds: float = 45.0
    variation_seconds: float = 45.0
    upscale_seconds: float = 10.0
    grid_size: int = 2048
    image_ttl_seconds: float = 86400.0
    mirror_http_status: bool = False
    banned_words: tuple[str, ...] = ("nsfw",)
    webhook_timeout: float = 5.0
    public_url: str | None = None
    render_cache_entries: int = 64
    png_compress_level: int = 1

    def __post_init__(self) -> None:
        """Do the one validation of a config: types first, then normalisation, then ranges."""
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if not _FIELD_TYPES[item.name](value):
                raise TypeError(f"bad value for {item.name}: {value!r}")
        # Accept lists from JSON/CLI but store tuples so the config stays hashable and immutable.
        if self.keys is not None:
            object.__setattr__(self, "keys", tuple(self.keys))
        object.__setattr__(self, "banned_words", tuple(word.lower() for word in self.banned_words))
        if self.grid_size < 16 or self.grid_size % 2:
            raise ValueError("grid_size must be an even number of at least 16")
        if self.max_running < 1:
            raise ValueError("max_running must be at least 1")
        if self.time_scale < 0:
            raise ValueError("time_scale must not be negative")
        if self.rate_limit is not None and self.rate_limit < 0:
            raise ValueError("rate_limit must not be negative")
        if self.daily_quota is not None and self.daily_quota < 0:
            raise ValueError("daily_quota must not be negative")
        if not 0 <= self.png_compress_level <= 9:
            raise ValueError("png_compress_level must be 0..9")

    def changed(self, **changes: Any) -> EmulatorConfig:
        """Return a copy with runtime ``changes``, validated by ``__post_init__`` like any new config.

        Only which fields may change is decided here: host and port name a socket that is already
        bound, and an unknown name is refused with a clearer message than the constructor's.
        """
        bad = set(changes) & STARTUP_ONLY
        if bad:
            raise ValueError(f"cannot change {', '.join(sorted(bad))} while running")
        unknown = set(changes) - {item.name for item in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"unknown config field(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)

    def task_seconds(self, kind: str) -> float:
        """How long a new task of ``kind`` runs here: the service's duration times the scale."""
        if kind == "upscale":
            base = self.upscale_seconds
        else:
            base = self.imagine_seconds if kind == "imagine" else self.variation_seconds
        return base * self.time_scale

    def public_dict(self) -> dict[str, Any]:
        """Return the config as JSON, with keys replaced by their fingerprints (never echo secrets)."""
        data = dataclasses.asdict(self)
        data["keys"] = None if self.keys is None else [key_id(key) for key in self.keys]
        data["banned_words"] = list(self.banned_words)
        return data
