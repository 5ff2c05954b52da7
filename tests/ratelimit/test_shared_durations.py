"""Learned durations shared through the rate budget's Redis (scope ``redis``), on a real ``redis-server``.

Two processes of one key are two books on one Redis; what one learns, the other reads within
``SHARED_FRESH_SECONDS``; a thousand waits starting at once read Redis once; Redis away (killed)
costs nothing but the sharing; neither the key nor a prompt is ever in Redis.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from airflow_harness.redis_server import RedisServer
from airflow_provider_lotimage.client.durations import (
    SHARED_FRESH_SECONDS,
    WINDOW,
    DurationBook,
    Observation,
)
from airflow_provider_lotimage.client.schedule import KIND_IMAGINE, KIND_UPSCALE, TYPICAL_SECONDS
from airflow_provider_lotimage.client.settings import ConnectionSettings, read_settings
from airflow_provider_lotimage.ratelimit import redis_durations, redis_link
from airflow_provider_lotimage.ratelimit.base import key_identity
from airflow_provider_lotimage.ratelimit.redis_durations import KEY_PREFIX, TTL, RedisDurations
from airflow_provider_lotimage.ratelimit.registry import durations_of
from tests.ratelimit.conftest import REDIS_PASSWORD

URL = "http://lotimage.invalid"
PRIOR = TYPICAL_SECONDS[KIND_UPSCALE]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def settings(api_key: str, scope: str = "redis") -> ConnectionSettings:
    conn = SimpleNamespace(conn_id="lotimage_default", host=URL, port=None, password=api_key)
    return read_settings(conn, {"rate_limit_scope": scope})


def shared(book: DurationBook) -> RedisDurations:
    assert isinstance(book.shared, RedisDurations)
    return book.shared


def other_process(conn_id: str, api_key: str, clock: Clock) -> DurationBook:
    """The book another process of the key has: its own, on the same Redis."""
    return DurationBook(redis_durations.shared_durations(conn_id, key_identity(URL, api_key)), clock=clock)


def learn(book: DurationBook, seconds: float, count: int = 12) -> None:
    for _ in range(count):
        book.record(KIND_UPSCALE, Observation(seconds, measured=True))
    shared(book).flush()


def test_what_one_process_learns_the_others_read(redis_connection: str, api_key: str, redis_client) -> None:
    book = durations_of(settings(api_key))
    assert durations_of(settings(api_key)) is book
    assert durations_of(settings(api_key, "host")) is not book
    clock = Clock()
    other = other_process(redis_connection, api_key, clock)
    assert other.expected(KIND_UPSCALE, probe=False) == PRIOR
    learn(book, 2.0)
    assert other.expected(KIND_UPSCALE, probe=False) == PRIOR  # its read is fresh a few seconds
    clock.now += SHARED_FRESH_SECONDS
    assert other.expected(KIND_UPSCALE, probe=False) == pytest.approx(2.0, abs=0.01)
    assert other.expected(KIND_IMAGINE, probe=False) == TYPICAL_SECONDS[KIND_IMAGINE]
    key = shared(book).key(KIND_UPSCALE)
    assert redis_client.lrange(key, 0, -1) == [b"2.000 1"] * 12
    assert 0 < redis_client.ttl(key) <= TTL


def test_redis_keeps_only_the_window(redis_connection: str, api_key: str, redis_client) -> None:
    book = durations_of(settings(api_key))
    learn(book, 3.0, count=WINDOW * 2)
    assert redis_client.llen(shared(book).key(KIND_UPSCALE)) == WINDOW


def test_a_thousand_waits_starting_at_once_read_redis_once(
    redis_connection: str, api_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    book = other_process(redis_connection, api_key, clock)
    reads = []
    recent = RedisDurations.recent
    monkeypatch.setattr(RedisDurations, "recent", lambda self, kind: reads.append(kind) or recent(self, kind))
    for _ in range(1000):
        book.expected(KIND_UPSCALE)
    assert reads == [KIND_UPSCALE]
    clock.now += SHARED_FRESH_SECONDS
    book.expected(KIND_UPSCALE)
    assert reads == [KIND_UPSCALE] * 2


def test_neither_the_key_nor_a_prompt_reaches_redis(
    redis_connection: str, api_key: str, redis_client
) -> None:
    book = durations_of(settings(api_key))
    learn(book, 2.5)
    book.record(KIND_IMAGINE, Observation(30.0, measured=False))
    shared(book).flush()
    keys = sorted(key.decode() for key in redis_client.keys("*"))
    identity = key_identity(URL, api_key)
    assert keys == [f"{KEY_PREFIX}{identity}:{KIND_IMAGINE}", f"{KEY_PREFIX}{identity}:{KIND_UPSCALE}"]
    values = [value.decode() for key in keys for value in redis_client.lrange(key, 0, -1)]
    for text in (*keys, *values):
        assert api_key not in text and REDIS_PASSWORD not in text
    assert all(Observation.from_text(value) is not None for value in values)


def test_redis_away_leaves_the_process_its_own_book_and_never_waits(
    redis_connection: str,
    api_key: str,
    redis_server: RedisServer,
    redis_client,
    host_tmpdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=redis_link.__name__)
    monkeypatch.setattr(redis_link, "RETRY_REDIS_EVERY", 0.5)
    clock = Clock()
    book = other_process(redis_connection, api_key, clock)
    learn(book, 4.0)
    redis_server.kill()
    clock.now += SHARED_FRESH_SECONDS
    started = time.monotonic()
    for _ in range(12):
        book.record(KIND_UPSCALE, Observation(2.0, measured=True))  # pushes queue, never block
    assert time.monotonic() - started < 0.1
    started = time.monotonic()
    assert book.expected(KIND_UPSCALE, probe=False) == pytest.approx(2.0, rel=0.05)  # its own 24
    assert time.monotonic() - started < redis_link.REDIS_TIMEOUT * 2 + 0.3
    shared(book).flush()

    redis_server.start()
    time.sleep(0.6)
    clock.now += SHARED_FRESH_SECONDS
    assert book.expected(KIND_UPSCALE, probe=False) == PRIOR  # a fresh Redis: shared again, empty
    learn(book, 3.0)
    assert redis_client.llen(shared(book).key(KIND_UPSCALE)) == 12
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "learns LotImage task durations on its own" in warnings[0]
    assert any("durations book is shared again" in r.getMessage() for r in caplog.records)
    assert REDIS_PASSWORD not in caplog.text and api_key not in caplog.text
