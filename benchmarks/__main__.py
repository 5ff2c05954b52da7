"""``make bench``: the provider's batch DAG against the HTTP-provider baseline at several sizes.

``--topology local`` (the default) runs the **size sweep** (:mod:`benchmarks.sweep`): the batch at
6, 24 and 60 prompts (``--sizes`` to choose), provider and baseline side by side at each size,
then the **triggerer profile** (:mod:`benchmarks.trigger_profile`: 1,000 waiting triggers,
adaptive against fixed polling). Writes ``benchmarks/results/sweep-<UTC time>.json``,
``sweep-latest.json`` and the chart ``sweep.png``, and prints the figures and targets.

``--prompts N`` instead runs the older single-size comparison at N prompts, then 1,000 triggers
until all end (:mod:`benchmarks.many_triggers`), and writes ``bench-<UTC time>.json``,
``latest.json`` and ``comparison.png``. Targets are reported beside the figures, not asserted.

``--topology distributed`` instead runs the batch DAG on the distributed topology (two Celery
workers, two triggerers, PostgreSQL, Redis) with rate scope ``host`` and then ``redis``
(:mod:`benchmarks.distributed`), and writes ``distributed-<UTC time>.json`` and
``distributed-latest.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from airflow_provider_lotimage.client.options import WaitOptions
from benchmarks import distributed, many_triggers, sweep, trigger_profile
from benchmarks.chart import draw_comparison
from benchmarks.distributed import DistributedSettings
from benchmarks.pipelines import PipelineSettings, compare, scaled_poll_interval
from benchmarks.sweep_chart import draw_sweep
from benchmarks.trigger_profile import ProfileSettings

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


TOPOLOGIES = ("local", "distributed")
#: Options of one topology only, with the one they belong to.
_ONLY = {
    "triggers": "local",
    "skip_dags": "local",
    "sizes": "local",
    "profile_window": "local",
    "scopes": "distributed",
    "worker_concurrency": "distributed",
}


def _scopes(text: str) -> tuple[str, ...]:
    scopes = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [scope for scope in scopes if scope not in (*distributed.SCOPES, "process")]
    if not scopes or unknown or len(set(scopes)) != len(scopes):
        names = ", ".join((*distributed.SCOPES, "process"))
        raise argparse.ArgumentTypeError(f"a comma-separated list of distinct {names}: {text!r}")
    return scopes


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, each knob left out given its topology's default."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    local, dist = PipelineSettings(), DistributedSettings()

    def both(name: str) -> str:
        return f"default {getattr(local, name)} (local), {getattr(dist, name)} (distributed)"

    parser.add_argument(
        "--topology",
        choices=TOPOLOGIES,
        default="local",
        help="local: provider vs baseline on LocalExecutor at each size, then the triggerer profile "
        "(default); distributed: the provider's batch on CeleryExecutor, rate scope host vs redis",
    )
    parser.add_argument(
        "--sizes",
        type=sweep.parse_sizes,
        help="local: prompts per DAG run at each size of the sweep, comma-separated "
        f"(default {','.join(map(str, sweep.DEFAULT_SIZES))})",
    )
    parser.add_argument(
        "--prompts",
        type=int,
        help=f"prompts per DAG run; local: the single-size run instead of the sweep; {both('prompts')}",
    )
    parser.add_argument("--time-scale", type=float, help=both("time_scale"))
    parser.add_argument(
        "--poll-interval",
        type=float,
        help=f"default the operators' {WaitOptions().poll_interval:g} s times --time-scale "
        f"({both('poll_interval')})",
    )
    parser.add_argument("--pool-slots", type=int, help=both("pool_slots"))
    parser.add_argument("--parallelism", type=int, help=both("parallelism"))
    parser.add_argument(
        "--triggers",
        type=int,
        help="local: triggers in the profile or microbenchmark (0: skip; default 1000)",
    )
    parser.add_argument(
        "--profile-window",
        type=float,
        help=f"local sweep: seconds the triggerer profile measures each mode (default "
        f"{ProfileSettings().window_seconds:g})",
    )
    parser.add_argument("--skip-dags", action="store_true", default=None, help="local: only the triggers")
    parser.add_argument(
        "--scopes",
        type=_scopes,
        help=f"distributed: rate scopes to run, in order (default {','.join(dist.scopes)})",
    )
    parser.add_argument(
        "--worker-concurrency",
        type=int,
        help=f"distributed: slots per Celery worker (default {dist.worker_concurrency})",
    )
    parser.add_argument(
        "--results", type=Path, default=RESULTS, help="folder for the JSON (and the local chart)"
    )
    args = parser.parse_args(argv)
    for option, topology in _ONLY.items():
        if getattr(args, option) is not None and args.topology != topology:
            parser.error(f"--{option.replace('_', '-')} applies to --topology {topology} only")
    _choose_local_mode(parser, args)
    defaults: Any = local if args.topology == "local" else dist
    for name in ("prompts", "time_scale", "pool_slots", "parallelism"):
        if getattr(args, name) is None:
            setattr(args, name, getattr(defaults, name))
    if args.poll_interval is None:
        args.poll_interval = scaled_poll_interval(args.time_scale)
    if args.topology == "local":
        args.triggers = 1000 if args.triggers is None else args.triggers
        args.skip_dags = bool(args.skip_dags)
    else:
        args.scopes = args.scopes or dist.scopes
        if args.worker_concurrency is None:
            args.worker_concurrency = dist.worker_concurrency
        if args.worker_concurrency < 1:
            parser.error("--worker-concurrency must be at least 1")
    if args.prompts < 1:
        parser.error("--prompts must be at least 1")
    if args.topology == "local" and args.triggers < 0:
        parser.error("--triggers must be 0 (skip) or more")
    return args


def _choose_local_mode(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Set ``args.sweep``: the local run is a sweep unless ``--prompts`` asks for one size."""
    args.sweep = args.topology == "local" and args.prompts is None
    if args.sizes is not None and args.prompts is not None:
        parser.error("--sizes (the sweep) and --prompts (one size) exclude each other")
    if args.profile_window is not None and not args.sweep:
        parser.error("--profile-window applies to the sweep only, not to --prompts")
    if args.profile_window is not None and args.profile_window <= 0:
        parser.error("--profile-window must be more than 0 seconds")
    if args.sweep:
        args.sizes = args.sizes or sweep.DEFAULT_SIZES
        args.profile_window = args.profile_window or ProfileSettings().window_seconds


def _source() -> dict[str, Any]:
    """The checkout measured: its commit, and how many files differ from it (a run of work in progress)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=RESULTS, capture_output=True, text=True)
        status = subprocess.run(["git", "status", "--porcelain"], cwd=RESULTS, capture_output=True, text=True)
    except OSError:
        return {}
    return {"commit": commit.stdout.strip(), "files_changed": len(status.stdout.splitlines())}


def _machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average_start": [round(value, 2) for value in os.getloadavg()],
    }


def _pipeline_settings(args: argparse.Namespace, **more: Any) -> PipelineSettings:
    """The batch settings the local benchmark and the sweep take from the command line."""
    return PipelineSettings(
        time_scale=args.time_scale,
        poll_interval=args.poll_interval,
        pool_slots=args.pool_slots,
        parallelism=args.parallelism,
        **more,
    )


def main_local(args: argparse.Namespace) -> int:
    """The local benchmark: provider versus baseline, then the trigger microbenchmark."""
    settings = _pipeline_settings(args, prompts=args.prompts)
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


def main_distributed(args: argparse.Namespace) -> int:
    """The batch DAG on the distributed topology, once per rate scope, on one deployment."""
    settings = DistributedSettings(
        prompts=args.prompts,
        time_scale=args.time_scale,
        poll_interval=args.poll_interval,
        pool_slots=args.pool_slots,
        parallelism=args.parallelism,
        worker_concurrency=args.worker_concurrency,
        scopes=tuple(args.scopes),
    )
    started = datetime.now(UTC)
    result: dict[str, Any] = {"started": started.isoformat(timespec="seconds"), "machine": _machine()}
    _log(f"distributed: {settings.prompts} prompts, scopes {', '.join(settings.scopes)}")
    result |= distributed.compare_scopes(settings, _log)
    result["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    result["machine"]["load_average_end"] = [round(value, 2) for value in os.getloadavg()]
    result["targets"] = distributed.targets(result)

    args.results.mkdir(parents=True, exist_ok=True)
    stamped = args.results / f"distributed-{started:%Y%m%dT%H%M%SZ}.json"
    latest = args.results / "distributed-latest.json"
    text = json.dumps(result, indent=2) + "\n"
    stamped.write_text(text)
    latest.write_text(text)
    print(distributed.table(result))
    print(json.dumps(result["targets"], indent=2))
    print("written:", str(stamped), str(latest), sep="\n  ")
    failed = [scope for scope, figures in result["scopes"].items() if figures.get("state") != "success"]
    return 1 if failed else 0


def _write(folder: Path, prefix: str, started: datetime, result: dict[str, Any]) -> list[Path]:
    """``<prefix>-<UTC time>.json`` and ``<prefix>-latest.json``, the same text."""
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=2) + "\n"
    paths = [folder / f"{prefix}-{started:%Y%m%dT%H%M%SZ}.json", folder / f"{prefix}-latest.json"]
    for path in paths:
        path.write_text(text)
    return paths


def _print_sweep(result: dict[str, Any], written: list[Path]) -> None:
    if result.get("sizes"):
        print(sweep.table(result["sizes"]))
        print(sweep.target_lines(result["sizes"]))
    if result.get("trigger_profile"):
        print(json.dumps(result["trigger_profile"], indent=2))
    print(json.dumps(result["targets"], indent=2))
    print("written:", *(str(path) for path in written), sep="\n  ")


def main_sweep(args: argparse.Namespace) -> int:
    """The size sweep, then the triggerer profile; exit 1 if a DAG run did not succeed."""
    settings = _pipeline_settings(args)
    profile = ProfileSettings(triggers=args.triggers, window_seconds=args.profile_window)
    started = datetime.now(UTC)
    pipeline = {key: value for key, value in asdict(settings).items() if key != "prompts"}
    result: dict[str, Any] = {
        "kind": "sweep",
        "started": started.isoformat(timespec="seconds"),
        "machine": _machine(),
        "source": _source(),
        "settings": {"sizes": list(args.sizes), "pipeline": pipeline, "profile": asdict(profile)},
        "definitions": sweep.DEFINITIONS,
        "sizes": [] if args.skip_dags else sweep.run_sweep(settings, args.sizes, _log),
    }
    if args.triggers:
        result["trigger_profile"] = trigger_profile.run(profile, _log)
    result["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    result["machine"]["load_average_end"] = [round(value, 2) for value in os.getloadavg()]
    result["targets"] = sweep.targets_summary(result["sizes"])
    written = _write(args.results, "sweep", started, result)
    if result["sizes"]:
        written.append(draw_sweep(result, args.results / "sweep.png"))
    _print_sweep(result, written)
    states = [record[kind]["state"] for record in result["sizes"] for kind in sweep.KINDS]
    return 0 if all(state == "success" for state in states) else 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.topology == "distributed":
        return main_distributed(args)
    return main_sweep(args) if args.sweep else main_local(args)


if __name__ == "__main__":
    sys.exit(main())
