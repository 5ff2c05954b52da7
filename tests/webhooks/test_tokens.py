"""Webhook completion's pure parts: tokens, delivery records, the connection extra, the fallback."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from airflow_provider_lotimage.client.progress import ProgressWatch
from airflow_provider_lotimage.client.schedule import (
    FINISH_MARGIN,
    KIND_IMAGINE,
    KIND_UPSCALE,
    MAX_POLL_FACTOR,
    WEBHOOK_FALLBACK_FACTOR,
)
from airflow_provider_lotimage.client.settings import read_settings
from airflow_provider_lotimage.client.webhook import (
    TOKEN_PATTERN,
    Delivery,
    delivered_task_id,
    mint_token,
    token_key,
    webhook_url,
    well_formed,
)
from airflow_provider_lotimage.exceptions import ConnectionConfigError

T0 = 1_000_000.0


def test_tokens_are_unguessable_and_only_their_hash_is_kept() -> None:
    tokens = {mint_token() for _ in range(1000)}
    assert len(tokens) == 1000
    assert all(well_formed(token) and TOKEN_PATTERN.fullmatch(token) for token in tokens)
    token = next(iter(tokens))
    key = token_key(token)
    assert len(key) == 64 and token not in key and key == token_key(token)
    assert webhook_url("https://airflow.example.com/", token).endswith(f"/deliveries?token={token}")


@pytest.mark.parametrize("token", ["", "a" * 42, "a" * 44, "a" * 42 + "/", "a" * 42 + "=", " " + "a" * 42])
def test_anything_else_is_not_a_token(token: str) -> None:
    assert not well_formed(token)


def test_a_delivery_record_round_trips_and_junk_is_nothing() -> None:
    delivery = Delivery("task-1", T0)
    assert Delivery.from_json(delivery.to_json()) == delivery
    assert Delivery.from_json(None) is None
    assert Delivery.from_json(b"{") is None
    assert Delivery.from_json('{"lotimage_task_id": "x"}') is None


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"taskId": "abc-123", "percentage": 100}', "abc-123"),
        (b'{"taskId": " abc-123 "}', "abc-123"),
        (b'{"taskId": ""}', None),
        (b'{"taskId": 5}', None),
        (b"[1]", None),
        (b"\xff", None),
    ],
)
def test_a_delivery_names_its_task_or_nothing(body: bytes, expected: str | None) -> None:
    assert delivered_task_id(body) == expected


def conn(**extra: object) -> tuple[SimpleNamespace, dict[str, object]]:
    return SimpleNamespace(conn_id="c", host="http://emu:1", port=None, password="k"), extra


def test_the_connection_turns_webhooks_on() -> None:
    assert read_settings(*conn()).webhook_base_url is None
    assert read_settings(*conn(webhook_base_url="")).webhook_base_url is None
    on = read_settings(*conn(webhook_base_url=" https://airflow.example.com "))
    assert on.webhook_base_url == "https://airflow.example.com"


@pytest.mark.parametrize("value", ["airflow.example.com", "ftp://x", 5, "http://"])
def test_a_bad_webhook_base_url_is_named_before_any_call(value: object) -> None:
    with pytest.raises(ConnectionConfigError, match="webhook_base_url"):
        read_settings(*conn(webhook_base_url=value))


def test_with_webhooks_polling_backs_off_as_the_fallback() -> None:
    """The delivery says when to read: the first read, and the upper bound, come four times as late."""
    poll = 10.0
    plain = ProgressWatch.resume("t", started_at=T0, now=T0, kind=KIND_UPSCALE)
    hinted = ProgressWatch.resume("t", started_at=T0, now=T0, kind=KIND_UPSCALE, hinted=True)
    assert plain.next_poll_in(poll, now=T0) == pytest.approx(10.0 * (1 + FINISH_MARGIN))
    assert hinted.next_poll_in(poll, now=T0) == pytest.approx(
        WEBHOOK_FALLBACK_FACTOR * 10.0 * (1 + FINISH_MARGIN)
    )
    grid = ProgressWatch.resume("t", started_at=T0, now=T0, kind=KIND_IMAGINE, hinted=True)
    assert grid.next_poll_in(poll, now=T0) == pytest.approx(poll * MAX_POLL_FACTOR * WEBHOOK_FALLBACK_FACTOR)
    # The stall deadline still gets its read on time.
    stalling = ProgressWatch.resume(
        "t", started_at=T0, now=T0, kind=KIND_IMAGINE, hinted=True, stall_timeout=5.0
    )
    assert stalling.next_poll_in(poll, now=T0) == pytest.approx(5.0)
    assert ProgressWatch.from_dict(hinted.to_dict()).hinted is True
