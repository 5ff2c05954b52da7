"""``make bench``: the provider's batch DAG against the HTTP-provider baseline, and 1,000 triggers.

Writes ``benchmarks/results/bench-<UTC time>.json`` and ``latest.json``, the chart
``comparison.png``, and prints the table the README's performance section shows. Targets are
reported beside the figures, not asserted.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import many_triggers
from benchmarks.chart import draw_comparison
from benchmarks.pipelines import PipelineSettings, compare

RESULTS = Path(__file__).resolve().parent / "results"


def _log(message: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", flush=True)


def targets(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each target of the benchmark with the measured value and whether it was met."""
    found: dict[str, dict[str, Any]] = {}
    provider, baseline = result.get("provider"), result.get("baseline")
    if provider:
        ratio = provider["wall_over_floor"]
        dupes = sum(provider["duplicate_submissions"].values())
        found["wall_within_1.3x_floor"] = {"value": ratio, "met": ratio is not None and ratio <= 1.3}
        found["zero_429"] = {"value": provider["answers_429"], "met": provider["answers_429"] == 0}
        found["zero_duplicates"] = {"value": dupes, "met": dupes == 0}
    if provider and baseline and baseline["worker_slot_seconds"]:
        share = provider["worker_slot_seconds"] / baseline["worker_slot_seconds"]
        found["slot_seconds_at_most_0.1x_baseline"] = {"value": round(share, 3), "met": share <= 0.1}
    if result.get("many_triggers"):
        per = result["many_triggers"]["bytes_per_waiting_trigger"]
        found["under_20KB_per_waiting_trigger"] = {"value": per, "met": per < 20 * 1024}
    return found


def table(result: dict[str, Any]) -> str:
    """The comparison as a Markdown table (what the README shows)."""
    provider, baseline = result.get("provider", {}), result.get("baseline", {})

    def calls(figures: dict[str, Any]) -> str:
        c = figures.get("calls", {})
        return f"{c.get('imagine', 0)} / {c.get('button', 0)} / {c.get('progress', 0)}"

    def dupes(figures: dict[str, Any]) -> int:
        return sum(figures.get("duplicate_submissions", {}).values())

    rows = [
        ("run state", lambda f: f.get("state")),
        ("wall time, first submit to last picture (s)", lambda f: f.get("wall_seconds")),
        ("floor from the API limits (s)", lambda f: f.get("floor_seconds")),
        ("wall / floor", lambda f: f.get("wall_over_floor")),
        ("calls: imagine / button / progress", calls),
        ("429 answers", lambda f: f.get("answers_429")),
        ("duplicate submissions", dupes),
        ("pictures stored", lambda f: f.get("pictures_stored")),
        ("worker-slot-seconds (running, from the DB)", lambda f: f.get("worker_slot_seconds")),
        ("task executions (worker processes)", lambda f: f.get("task_executions")),
        ("triggerer peak memory (MiB)", lambda f: round(f.get("triggerer_peak_rss_bytes", 0) / 2**20)),
    ]
    lines = ["| | this provider | HttpOperator + HttpSensor |", "|---|---:|---:|"]
    lines += [f"| {name} | {get(provider)} | {get(baseline)} |" for name, get in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    defaults = PipelineSettings()
    parser.add_argument("--prompts", type=int, default=defaults.prompts, help="prompts per DAG run")
    parser.add_argument("--time-scale", type=float, default=defaults.time_scale)
    parser.add_argument("--poll-interval", type=float, default=defaults.poll_interval)
    parser.add_argument("--pool-slots", type=int, default=defaults.pool_slots)
    parser.add_argument("--parallelism", type=int, default=defaults.parallelism)
    parser.add_argument("--triggers", type=int, default=1000, help="triggers in the microbenchmark (0: skip)")
    parser.add_argument("--skip-dags", action="store_true", help="only the trigger microbenchmark")
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder for the JSON and the chart")
    args = parser.parse_args(argv)
    if args.prompts < 1:
        parser.error("--prompts must be at least 1")

    settings = PipelineSettings(
        prompts=args.prompts,
        time_scale=args.time_scale,
        poll_interval=args.poll_interval,
        pool_slots=args.pool_slots,
        parallelism=args.parallelism,
    )
    started = datetime.now(UTC)
    result: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
    }
    if not args.skip_dags:
        result |= compare(settings, _log)
    if args.triggers:
        _log(f"many triggers: {args.triggers} waiting at once")
        result["many_triggers"] = many_triggers.run(args.triggers)
        _log(f"many triggers: {json.dumps(result['many_triggers'])}")
    result["targets"] = targets(result)

    args.results.mkdir(parents=True, exist_ok=True)
    stamped = args.results / f"bench-{started:%Y%m%dT%H%M%SZ}.json"
    text = json.dumps(result, indent=2) + "\n"
    stamped.write_text(text)
    (args.results / "latest.json").write_text(text)
    written = [stamped, args.results / "latest.json"]
    if not args.skip_dags:
        written.append(draw_comparison(result, args.results / "comparison.png"))
    print(table(result) if not args.skip_dags else "")
    print(json.dumps(result["targets"], indent=2))
    print("written:", *(str(path) for path in written), sep="\n  ")
    failed = [
        kind
        for kind in ("provider", "baseline")
        if result.get(kind, {}).get("state") not in (None, "success")
    ]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
