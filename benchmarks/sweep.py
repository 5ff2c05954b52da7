"""The batch at several sizes, the provider (polling, then told by webhooks) and the baseline at each.

One size is one :func:`benchmarks.pipelines.run_pipeline` per DAG with that many prompts, so every
size gets fresh emulators at the key's real limits and fresh deployments, as the single-size run
does. Figures are divided by the paid tasks the batch needs (5 a prompt), so that sizes compare:
whether the provider's cost per paid task stays flat as the batch grows is what the sweep is for.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from benchmarks.pipelines import UPSCALES_PER_PROMPT, PipelineSettings, floor_seconds, run_pipeline

DEFAULT_SIZES: tuple[int, ...] = (6, 24, 60)
#: The provider polling, the provider told by webhooks, and the plain HTTP baseline, in that order.
KINDS = ("provider", "provider-webhooks", "baseline")
#: The provider's runs, each judged against the baseline of its size.
PROVIDER_KINDS = KINDS[:-1]
#: The targets met at every size by each provider run (reported, not asserted).
WALL_TARGET = 1.05
PROGRESS_READS_TARGETS = {"provider": 1.5, "provider-webhooks": 1.05}
SLOT_SHARE_TARGET = 0.03
#: What the per-paid-task figures mean, written into the results so they read on their own.
DEFINITIONS = {
    "paid_tasks": "tasks the batch pays for: prompts x (1 imagine + 4 upscales); the divisor of every "
    "'per paid task' figure",
    "calls_per_paid_task": "LotImage API calls (imagine + button + progress, 429s included; picture "
    "downloads excluded) / paid tasks",
    "progress_reads_per_paid_task": "task/progress calls / paid tasks",
    "worker_slot_seconds_per_paid_task": "seconds task instances spent running (metadata DB audit log, "
    "deferral excluded) / paid tasks",
    "duplicate_paid_calls": "a prompt imagined twice or a button pressed twice on the same grid",
}

Log = Callable[[str], None]


def parse_sizes(text: str) -> tuple[int, ...]:
    """``--sizes``: distinct prompt counts of at least 1, comma-separated, run smallest first."""
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1 or len(set(sizes)) != len(sizes):
        raise argparse.ArgumentTypeError(f"a comma-separated list of distinct prompt counts >= 1: {text!r}")
    return tuple(sorted(sizes))


def paid_tasks(prompts: int) -> int:
    """Paid tasks of a batch of ``prompts``: one grid and its upscales each."""
    return prompts * (1 + UPSCALES_PER_PROMPT)


def _per(value: float | None, paid: int, digits: int = 3) -> float | None:
    return None if value is None else round(value / paid, digits)


def side_summary(figures: dict[str, Any], paid: int) -> dict[str, Any]:
    """One DAG's figures at one size, per paid task where that makes sizes compare."""
    calls = figures.get("calls", {})
    api_calls = sum(calls.get(name, 0) for name in ("imagine", "button", "progress")) if calls else None
    dupes = figures.get("duplicate_submissions")
    return {
        "state": figures.get("state"),
        "wall_seconds": figures.get("wall_seconds"),
        "floor_seconds": figures.get("floor_seconds"),
        "wall_over_floor": figures.get("wall_over_floor"),
        "calls_per_paid_task": _per(api_calls, paid),
        "progress_reads_per_paid_task": _per(calls.get("progress"), paid),
        "worker_slot_seconds": figures.get("worker_slot_seconds"),
        "worker_slot_seconds_per_paid_task": _per(figures.get("worker_slot_seconds"), paid),
        "answers_429": figures.get("answers_429"),
        "duplicate_paid_calls": None if dupes is None else sum(dupes.values()),
    }


def _target(value: float | None, limit: float, counts: bool, *, exact: bool = False) -> dict[str, Any]:
    met = counts and value is not None and (value == limit if exact else value <= limit)
    return {"value": value, "target": limit, "met": met} | (
        {} if counts else {"note": "a run did not succeed"}
    )


def size_targets(provider: dict[str, Any], baseline: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    """One provider run's targets at one size, from its summary and the baseline's.

    A figure missing is a miss, and so is every figure of a run that did not succeed: a batch that
    stopped half-way can look fast and cheap. Beating the baseline's wall needs both to succeed.
    """
    ok = provider.get("state") == "success"
    both = ok and baseline.get("state") == "success"
    slots, base_slots = provider.get("worker_slot_seconds"), baseline.get("worker_slot_seconds")
    share = round(slots / base_slots, 4) if slots is not None and base_slots else None
    wall, base_wall = provider.get("wall_seconds"), baseline.get("wall_seconds")
    lead = round(wall / base_wall, 4) if wall is not None and base_wall else None
    reads = PROGRESS_READS_TARGETS[kind]
    return {
        f"wall_within_{WALL_TARGET}x_floor": _target(provider.get("wall_over_floor"), WALL_TARGET, ok),
        "wall_below_the_baseline": _below(lead, both),
        "zero_429": _target(provider.get("answers_429"), 0, ok, exact=True),
        "zero_duplicate_paid_calls": _target(provider.get("duplicate_paid_calls"), 0, ok, exact=True),
        f"progress_reads_per_paid_task_at_most_{reads}": _target(
            provider.get("progress_reads_per_paid_task"), reads, ok
        ),
        f"worker_slot_seconds_at_most_{SLOT_SHARE_TARGET}x_baseline": _target(share, SLOT_SHARE_TARGET, both),
    }


def _below(ratio: float | None, counts: bool) -> dict[str, Any]:
    """The provider's wall over the baseline's: met only strictly below 1."""
    met = counts and ratio is not None and ratio < 1.0
    return {"value": ratio, "target": "< 1", "met": met} | (
        {} if counts else {"note": "a run did not succeed"}
    )


def size_record(
    prompts: int, runs: dict[str, dict[str, Any]], elapsed: float | None = None
) -> dict[str, Any]:
    """What the results keep of one size: the summaries, the targets and each run's full figures."""
    paid = paid_tasks(prompts)
    sides = {kind: side_summary(runs.get(kind, {}), paid) | {"figures": runs.get(kind, {})} for kind in KINDS}
    return {
        "prompts": prompts,
        "paid_tasks": paid,
        "elapsed_seconds": elapsed,
        **sides,
        "targets": {
            f"{kind}: {name}": target
            for kind in PROVIDER_KINDS
            for name, target in size_targets(sides[kind], sides["baseline"], kind).items()
        },
    }


def targets_summary(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Whether every target was met at every size (``None``: no size ran), and which were not."""
    missed = [
        f"{record['prompts']} prompts: {name}"
        for record in records
        for name, target in record["targets"].items()
        if not target["met"]
    ]
    return {"all_met": not missed if records else None, "not_met": missed}


def _run_side(kind: str, settings: PipelineSettings, log: Log) -> dict[str, Any]:
    """One DAG at one size; a run that raises is recorded, so the sizes after it still run."""
    try:
        return run_pipeline(kind, settings, log)
    except Exception as err:
        log(f"{kind}: {settings.prompts} prompts failed: {err!r}")
        return {"state": "error", "error": repr(err)}


def run_sweep(settings: PipelineSettings, sizes: Sequence[int], log: Log = print) -> list[dict[str, Any]]:
    """Each kind in turn at each size (:data:`KINDS`), with ``settings`` but for the prompts."""
    records = []
    for prompts in sizes:
        sized = replace(settings, prompts=prompts)
        load = [round(value, 2) for value in os.getloadavg()]
        log(f"sweep: {prompts} prompts ({paid_tasks(prompts)} paid tasks), floor {floor_seconds(sized)}")
        started = time.monotonic()
        runs = {kind: _run_side(kind, sized, log) for kind in KINDS}
        record = size_record(prompts, runs, round(time.monotonic() - started, 1))
        records.append(record | {"load_average_start": load})
    return records


ROWS: tuple[tuple[str, str], ...] = (
    ("state", "run state"),
    ("wall_over_floor", "wall / floor"),
    ("calls_per_paid_task", "calls per paid task"),
    ("progress_reads_per_paid_task", "progress reads per paid task"),
    ("worker_slot_seconds_per_paid_task", "worker-slot-seconds per paid task"),
    ("answers_429", "429 answers"),
    ("duplicate_paid_calls", "duplicate paid calls"),
)


def table(records: Sequence[dict[str, Any]]) -> str:
    """The sweep as a Markdown table: a row per figure, a column per kind and size."""
    head = [f"{r['prompts']} prompts: {side}" for r in records for side in KINDS]
    lines = ["| | " + " | ".join(head) + " |", "|---|" + "---:|" * len(head)]
    for key, label in ROWS:
        cells = [str(record[kind].get(key)) for record in records for kind in KINDS]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def target_lines(records: Sequence[dict[str, Any]]) -> str:
    """One line per target and size: its value and whether it was met."""
    return "\n".join(
        f"{record['prompts']:>4} prompts  {'met    ' if target['met'] else 'NOT MET'}  "
        f"{name}: {target['value']}" + (f" ({target['note']})" if "note" in target else "")
        for record in records
        for name, target in record["targets"].items()
    )
