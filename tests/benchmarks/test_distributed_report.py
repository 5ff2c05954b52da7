"""``python -m benchmarks --topology distributed``: its command line, figures, targets and table.

No deployment is started here; the run itself is ``python -m benchmarks --topology distributed``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks.__main__ import parse_args
from benchmarks.distributed import (
    ACTED,
    SCOPES,
    DistributedSettings,
    acting_hosts,
    connection_body,
    redis_connection,
    scope_figures,
    table,
    targets,
)
from benchmarks.pipelines import PipelineSettings, floor_seconds, scaled_poll_interval


def test_default_topology_is_local_with_the_local_defaults() -> None:
    args = parse_args([])
    local = PipelineSettings()
    assert args.topology == "local"
    assert (args.prompts, args.time_scale, args.poll_interval) == (24, 0.5, 5.0)
    assert (args.prompts, args.pool_slots, args.parallelism) == (local.prompts, local.pool_slots, 8)
    assert args.triggers == 1000 and args.skip_dags is False
    assert parse_args(["--topology", "local", "--triggers", "0", "--skip-dags"]).skip_dags is True


def test_the_poll_interval_follows_the_time_scale_unless_given() -> None:
    assert PipelineSettings().poll_interval == scaled_poll_interval(PipelineSettings().time_scale)
    assert parse_args(["--time-scale", "1.0", "--prompts", "6"]).poll_interval == 10.0
    assert parse_args(["--time-scale", "0.25", "--topology", "distributed"]).poll_interval == 2.5
    assert parse_args(["--time-scale", "1.0", "--poll-interval", "4"]).poll_interval == 4.0


def test_distributed_topology_takes_its_own_defaults_and_options() -> None:
    args = parse_args(["--topology", "distributed"])
    assert args.prompts == DistributedSettings().prompts == 12
    assert args.scopes == SCOPES == ("host", "redis", "webhooks")
    assert args.worker_concurrency == 4
    args = parse_args(["--topology", "distributed", "--scopes", "redis, host", "--prompts", "3"])
    assert args.scopes == ("redis", "host") and args.prompts == 3


@pytest.mark.parametrize(
    "argv",
    [
        ["--topology", "cluster"],
        ["--topology", "distributed", "--triggers", "10"],
        ["--topology", "distributed", "--skip-dags"],
        ["--scopes", "redis"],
        ["--topology", "distributed", "--scopes", "redis,cluster"],
        ["--topology", "distributed", "--scopes", "redis,redis"],
        ["--topology", "distributed", "--prompts", "0"],
        ["--topology", "distributed", "--worker-concurrency", "0"],
    ],
)
def test_bad_command_lines_are_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args(argv)
    assert exited.value.code == 2


def test_floor_is_the_local_benchmarks_floor() -> None:
    settings = DistributedSettings(prompts=12, time_scale=0.5)
    assert settings.floor() == floor_seconds(PipelineSettings(prompts=12, time_scale=0.5))
    # 12 x (45 + 4 x 10) s of rendering x 0.5, three at a time.
    assert settings.floor()["floor_seconds"] == pytest.approx(170.0)


def test_connections_name_the_scope_and_the_budget_redis() -> None:
    redis = json.loads(redis_connection("redis://127.0.0.1:6399/0"))
    assert redis == {"conn_type": "redis", "host": "127.0.0.1", "port": 6399, "extra": {"db": 0}}
    body = connection_body("http://127.0.0.1:1234", "redis")
    assert body["host"] == "http://127.0.0.1:1234" and body["conn_type"] == "lotimage"
    assert json.loads(body["extra"]) == {
        "rate_limit": 3.0,
        "rate_limit_scope": "redis",
        "rate_limit_redis_conn_id": "redis_default",
    }
    assert json.loads(connection_body("http://x", "host")["extra"]) == {
        "rate_limit": 3.0,
        "rate_limit_scope": "host",
    }
    webhooks = json.loads(connection_body("http://x", "webhooks", "http://127.0.0.1:8080")["extra"])
    assert webhooks == {
        "rate_limit": 3.0,
        "rate_limit_scope": "redis",
        "rate_limit_redis_conn_id": "redis_default",
        "webhook_base_url": "http://127.0.0.1:8080",
    }
    with pytest.raises(ValueError, match="api-server"):
        connection_body("http://x", "webhooks")


def test_deliveries_acted_on_are_counted_by_the_triggerer_in_the_log_files_name() -> None:
    def record(file: str, event: str) -> dict[str, Any]:
        return {"_file": file, "event": event}

    records = [
        record("task_id=batch.imagine/map_index=0/attempt=1.log.trigger.7.log", f"LotImage task a: {ACTED}"),
        record("task_id=batch.U1/map_index=0/attempt=1.log.trigger.7.log", f"LotImage task b: {ACTED}"),
        record("task_id=batch.U2/map_index=1/attempt=1.log.trigger.9.log", f"LotImage task c: {ACTED}"),
        record("task_id=batch.U2/map_index=1/attempt=1.log.trigger.9.log", "LotImage task c: 100%"),
        record("task_id=batch.U3/map_index=1/attempt=1.log", f"LotImage task d: {ACTED}"),
        record("task_id=batch.U4/map_index=2/attempt=1.log.trigger.11.log", f"LotImage task e: {ACTED}"),
    ]
    hosts = {7: "triggerer-1", 9: "triggerer-2"}
    assert acting_hosts(records, hosts) == {"job 11": 1, "triggerer-1": 2, "triggerer-2": 1}


def _figures(scope: str, *, wall: float, answers_429: int, duplicate: bool = False) -> dict[str, Any]:
    tasks = [{"kind": "imagine", "prompt": "a", "parentId": None, "button": None}]
    if duplicate:
        tasks.append({"kind": "imagine", "prompt": "a", "parentId": None, "button": None})
    stats = {
        "timeline": {"first_submit": 100.0, "last_image": 100.0 + wall},
        "requests": {"imagine": 12, "button": 48, "progress": 200},
        "events": {"images_served": 60},
        "rate_limited": answers_429,
        "submissions": {"imagine": 12, "button": 48},
    }
    slots = {
        "worker_slot_seconds": 90.5,
        "worker_slot_seconds_by_task": {"imagine": 40.0},
        "worker_process_seconds": 150.0,
        "task_executions": 125,
    }
    instances = [
        {"task_id": "imagine", "hostname": "worker-1", "try_number": 1},
        {"task_id": "upscale", "hostname": "worker-2", "try_number": 2},
        {"task_id": "upscale", "hostname": "worker-2", "try_number": 1},
    ]
    return scope_figures(
        scope,
        DistributedSettings(prompts=12, time_scale=0.5),
        state="success",
        run_seconds=250.04,
        stats=stats,
        tasks=tasks,
        slots=slots,
        instances=instances,
        pictures_stored=60,
        load_average=[[1.0, 1.0, 1.0], [2.0, 1.5, 1.0]],
    )


def test_scope_figures_come_from_emulator_db_and_output() -> None:
    figures = _figures("host", wall=204.0, answers_429=17, duplicate=True)
    assert figures["wall_seconds"] == 204.0
    assert figures["floor_seconds"] == 170.0
    assert figures["wall_over_floor"] == 1.2
    assert figures["answers_429"] == 17
    assert figures["duplicate_submissions"] == {"imagine": 1, "button": 0}
    assert figures["calls"] == {"imagine": 12, "button": 48, "progress": 200, "images": 60}
    assert figures["task_instances_by_host"] == {"worker-1": 1, "worker-2": 2}
    assert figures["tasks_retried"] == {"upscale": 1}
    assert figures["worker_slot_seconds"] == 90.5 and figures["task_executions"] == 125
    assert figures["run_seconds"] == 250.0


def _result(**scopes: dict[str, Any]) -> dict[str, Any]:
    return {"scopes": scopes}


def test_targets_judge_the_redis_scope_and_only_report_the_host_scope() -> None:
    result = _result(
        host=_figures("host", wall=300.0, answers_429=40),
        redis=_figures("redis", wall=204.0, answers_429=0),
    )
    found = targets(result)
    assert found["redis_zero_429"] == {"value": 0, "met": True}
    assert found["redis_wall_within_1.3x_floor"] == {"value": 1.2, "met": True}
    assert found["redis_zero_duplicates"] == {"value": 0, "met": True}
    assert found["host_zero_429"] == {"value": 40, "met": None}
    assert found["host_wall_within_1.3x_floor"] == {"value": 1.765, "met": None}
    assert found["host_zero_duplicates"] == {"value": 0, "met": True}


def test_the_webhooks_run_is_judged_and_every_delivery_must_be_acted_on() -> None:
    webhooks = _figures("webhooks", wall=204.0, answers_429=0)
    webhooks["deliveries_acted_on_by_host"] = {"triggerer-1": 31, "triggerer-2": 29}
    found = targets(_result(webhooks=webhooks))
    assert found["webhooks_zero_429"] == {"value": 0, "met": True}
    assert found["webhooks_wall_within_1.3x_floor"] == {"value": 1.2, "met": True}
    assert found["webhooks_every_delivery_acted_on"] == {"value": "60/60", "met": True}
    webhooks["deliveries_acted_on_by_host"] = {"triggerer-1": 59}
    assert targets(_result(webhooks=webhooks))["webhooks_every_delivery_acted_on"]["met"] is False
    assert "| webhook deliveries acted on, per triggerer | triggerer-1 59 |" in table(
        _result(webhooks=webhooks)
    )


def test_targets_missed_by_the_redis_scope() -> None:
    found = targets(_result(redis=_figures("redis", wall=255.0, answers_429=3, duplicate=True)))
    assert found["redis_zero_429"] == {"value": 3, "met": False}
    assert found["redis_wall_within_1.3x_floor"] == {"value": 1.5, "met": False}
    assert found["redis_zero_duplicates"] == {"value": 1, "met": False}
    errored = targets(_result(redis={"scope": "redis", "state": "error", "error": "TimeoutError"}))
    assert errored["redis_wall_within_1.3x_floor"] == {"value": None, "met": False}
    assert errored["redis_zero_429"]["met"] is False


def test_table_puts_the_scopes_side_by_side() -> None:
    result = _result(
        host=_figures("host", wall=300.0, answers_429=40),
        redis=_figures("redis", wall=204.0, answers_429=0),
    )
    lines = table(result).splitlines()
    assert lines[0] == "| | scope `host` | scope `redis` |"
    assert lines[1] == "|---|---:|---:|"
    assert "| 429 answers | 40 | 0 |" in lines
    assert "| wall / floor | 1.765 | 1.2 |" in lines
    assert "| floor from the API limits (s) | 170.0 | 170.0 |" in lines
    assert "| calls: imagine / button / progress | 12 / 48 / 200 | 12 / 48 / 200 |" in lines
    assert "| duplicate paid calls | 0 | 0 |" in lines
    assert "| task instances per worker | worker-1 1, worker-2 2 | worker-1 1, worker-2 2 |" in lines
    assert all(line.count("|") == 4 for line in lines)


def test_results_json_of_the_last_run_has_a_figure_per_scope() -> None:
    """The committed run, when there is one, carries what the README's table is made of."""
    latest = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "distributed-latest.json"
    if not latest.exists():
        pytest.skip("no distributed run recorded yet")
    result = json.loads(latest.read_text())
    assert tuple(result["scopes"]) == SCOPES
    assert "load_average_start" in result["machine"]
    assert table(result).count("\n") >= 10
    assert set(targets(result)) >= {"redis_zero_429", "webhooks_every_delivery_acted_on"}
