"""The webhook route on Airflow's api-server, attacked as the public would: only its tokens count.

Every request goes over HTTP to Airflow's own api-server app (the plugin mounted as Airflow
mounts it), with a real Redis behind. The route must answer a wrong token cheaply (no metadata-DB
statement, at most one Redis ``GET``), refuse what a token was not bound to, bound the body it
reads, and forget a token whose wait ended.
"""

from __future__ import annotations

import concurrent.futures
import statistics
import time
from typing import Any

import pytest
import requests

from airflow_provider_lotimage.client.webhook import (
    WEBHOOK_PREFIX,
    Delivery,
    mint_token,
    token_key,
    webhook_url,
)
from airflow_provider_lotimage.webhooks.redis_store import (
    Registration,
    WebhookStore,
    delivery_key,
    registration_key,
    store_for,
)

from .conftest import ServedApp, post, redis_commands

OWNER = Registration("dag", "task", "run", -1)
TASK = "task-0001-abcd"


@pytest.fixture
def store(api_server: ServedApp, redis_client: Any) -> WebhookStore:
    return store_for("redis_default")


def url_of(api_server: ServedApp, token: str) -> str:
    return webhook_url(api_server.url, token)


def registered(store: WebhookStore, *, bound: str | None = TASK) -> str:
    """A token registered for OWNER (bound to ``bound`` when given); returns the token."""
    token = mint_token()
    assert store.register(token_key(token), OWNER, ttl=60)
    if bound is not None:
        store.bind(token_key(token), bound)
    return token


def delivered(redis_client: Any, token: str) -> Delivery | None:
    return Delivery.from_json(redis_client.get(delivery_key(token_key(token))))


def test_a_delivery_for_its_token_is_recorded(
    api_server: ServedApp, store: WebhookStore, redis_client: Any
) -> None:
    token = registered(store)
    before = time.time()
    answer = post(url_of(api_server, token), {"taskId": TASK, "status": "finished", "percentage": 100})
    assert answer.status_code == 204, answer.text
    assert answer.headers["cache-control"] == "no-store"
    record = delivered(redis_client, token)
    assert record is not None and record.lotimage_task_id == TASK and record.received_at >= before
    # Stored under the token's SHA-256 only: the token itself is nowhere in Redis.
    keys = [key.decode() for key in redis_client.keys("*")]
    assert sorted(keys) == sorted([registration_key(token_key(token)), delivery_key(token_key(token))])
    assert all(token not in str(redis_client.get(key)) for key in keys)
    # Its life is the registration's, not longer.
    assert 0 < redis_client.ttl(delivery_key(token_key(token))) <= 60


def test_a_token_registered_before_its_task_is_known_takes_the_delivery(
    api_server: ServedApp, store: WebhookStore, redis_client: Any
) -> None:
    """The service may answer before the worker bound the taskId: the delivery still counts."""
    token = registered(store, bound=None)
    assert post(url_of(api_server, token), {"taskId": TASK}).status_code == 204
    assert delivered(redis_client, token) is not None


@pytest.mark.parametrize(
    "token",
    [
        "short",
        "x" * 44,
        "a" * 42 + "!",
        "..%2F..%2Fetc%2Fpasswd",
        "%00" * 15,
        "a" * 4000,
    ],
)
def test_a_malformed_token_is_refused_before_any_lookup(
    api_server: ServedApp, store: WebhookStore, redis_client: Any, token: str
) -> None:
    gets = redis_commands(redis_client, "get")
    answer = post(url_of(api_server, token), {"taskId": TASK})
    assert answer.status_code == 404
    assert redis_commands(redis_client, "get") == gets


def test_wrong_tokens_cost_one_redis_get_and_no_database_statement(
    api_server: ServedApp, store: WebhookStore, redis_client: Any, sql_statements: Any
) -> None:
    registered(store)  # a real token exists: the wrong ones must not find it
    gets = redis_commands(redis_client, "get")
    statements = sql_statements()
    wrong = [mint_token() for _ in range(200)]
    with requests.Session() as session:
        codes = {
            session.post(url_of(api_server, token), json={"taskId": TASK}, timeout=10).status_code
            for token in wrong
        }
    assert codes == {404}
    assert redis_commands(redis_client, "get") - gets == len(wrong)
    assert sql_statements() == statements, "the route touched the metadata database"
    assert redis_client.keys("*:delivered") == []


def test_a_flood_of_wrong_tokens_does_not_slow_the_api_server(
    api_server: ServedApp, store: WebhookStore, redis_client: Any, sql_statements: Any
) -> None:
    """2,000 wrong tokens from 8 clients at once: a real delivery meanwhile is answered promptly."""

    def flood(count: int) -> set[int]:
        with requests.Session() as session:
            return {
                session.post(url_of(api_server, mint_token()), json={"taskId": TASK}, timeout=30).status_code
                for _ in range(count)
            }

    def timed_delivery() -> float:
        token = registered(store)
        started = time.monotonic()
        assert post(url_of(api_server, token), {"taskId": TASK}).status_code == 204
        return time.monotonic() - started

    quiet = statistics.median(timed_delivery() for _ in range(10))
    statements = sql_statements()
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        floods = [pool.submit(flood, 250) for _ in range(8)]
        during = []
        while not all(f.done() for f in floods):
            during.append(timed_delivery())
            time.sleep(0.05)
        codes = set().union(*(f.result() for f in floods))
    elapsed = time.monotonic() - started
    assert codes == {404}
    assert sql_statements() == statements
    assert len(during) >= 3, elapsed
    # Answered while 8 clients flood: within half a second, whatever the quiet time was.
    rate, meanwhile = 2000 / elapsed, statistics.median(during)
    print(
        f"flood: {rate:.0f} wrong tokens/s; a delivery took {quiet:.4f} s quiet, {meanwhile:.4f} s meanwhile"
    )
    assert meanwhile < max(0.5, 20 * quiet), (quiet, during)
    assert rate > 40, f"the route answered only {rate:.0f} wrong tokens a second"


def test_a_delivery_naming_another_task_is_refused(
    api_server: ServedApp, store: WebhookStore, redis_client: Any
) -> None:
    token = registered(store)
    assert post(url_of(api_server, token), {"taskId": "task-9999-other"}).status_code == 404
    assert delivered(redis_client, token) is None


@pytest.mark.parametrize(
    "body", [b"not json", b"[]", b'{"taskId": 7}', b'{"status": "finished"}', b'{"taskId": ""}']
)
def test_a_body_without_a_task_is_refused(
    api_server: ServedApp, store: WebhookStore, redis_client: Any, body: bytes
) -> None:
    token = registered(store)
    assert post(url_of(api_server, token), body).status_code == 400
    assert delivered(redis_client, token) is None


def test_a_body_too_large_is_not_read_past_its_bound(
    api_server: ServedApp, store: WebhookStore, redis_client: Any
) -> None:
    token = registered(store)
    big = b'{"taskId": "' + TASK.encode() + b'", "pad": "' + b"x" * 200_000 + b'"}'
    assert post(url_of(api_server, token), big).status_code == 413
    # Without a declared length (chunked), the same bound holds as the body streams in.
    chunked = requests.post(
        url_of(api_server, token),
        data=iter([big[i : i + 8192] for i in range(0, len(big), 8192)]),
        timeout=10,
    )
    assert chunked.status_code == 413
    assert delivered(redis_client, token) is None


def test_a_token_whose_wait_ended_is_useless(
    api_server: ServedApp, store: WebhookStore, redis_client: Any
) -> None:
    token = registered(store)
    assert post(url_of(api_server, token), {"taskId": TASK}).status_code == 204
    store.forget(token_key(token))
    assert redis_client.keys("*") == []
    assert post(url_of(api_server, token), {"taskId": TASK}).status_code == 404
    assert redis_client.keys("*") == []


def test_only_post_is_served(api_server: ServedApp, store: WebhookStore) -> None:
    token = registered(store)
    assert requests.get(url_of(api_server, token), timeout=10).status_code == 405
    assert post(f"{api_server.url}{WEBHOOK_PREFIX}/{token}", {"taskId": TASK}).status_code == 404
    assert requests.get(f"{api_server.url}{WEBHOOK_PREFIX}/docs", timeout=10).status_code in (404, 405)
    assert requests.get(f"{api_server.url}{WEBHOOK_PREFIX}/openapi.json", timeout=10).status_code in (
        404,
        405,
    )
