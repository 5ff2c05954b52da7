"""End to end: several processes submit and poll through one key with scope ``redis``, and the
emulator (3 calls/s, like LotImage) never answers 429. The same processes then do the same work with
scope ``host`` and a temp dir each (as on separate machines); those 429s are reported, not asserted."""

from __future__ import annotations

import json

import pytest

from tests.ratelimit.processes import Workers

PROCESSES = 3
READS = 3


def test_processes_through_one_key_draw_no_429(
    workers: Workers,
    redis_connection: str,
    lotimage_emulator,
    lotimage_api_key: str,
    monkeypatch: pytest.MonkeyPatch,
    record_property,
) -> None:
    for conn_id, scope in (("lotimage_redis", "redis"), ("lotimage_host", "host")):
        connection = {"conn_type": "lotimage", "host": lotimage_emulator.url, "password": lotimage_api_key}
        connection["extra"] = {"rate_limit_scope": scope}
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(connection))
    names = [f"machine-{i}" for i in range(PROCESSES)]
    procs = workers.start_ready(names, "hook", conn_id="lotimage_redis")

    results = Workers.all_run(procs, timeout=60, conn_id="lotimage_redis", imagine=1, reads=READS)
    assert all(len(r["tasks"]) == 1 and len(r["reads"]) == READS for r in results)
    stats = lotimage_emulator.stats()
    assert stats["requests"] == {"imagine": PROCESSES, "progress": PROCESSES * READS, "button": 0}
    assert stats["rate_limited"] == 0
    assert stats["max_calls_per_second"] <= 3

    Workers.all_run(procs, timeout=60, conn_id="lotimage_host", imagine=1, reads=READS)
    answers_429 = lotimage_emulator.stats()["rate_limited"]
    record_property("answers_429_scope_host", answers_429)
    print(f"\nscope host, {PROCESSES} processes with a temp dir each: {answers_429} answers 429")
