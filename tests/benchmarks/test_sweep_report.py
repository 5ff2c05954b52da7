"""The size sweep's reporting on synthetic results: per-task figures, targets, table, chart, options.

No deployment or emulator is started here; the sweep itself is ``python -m benchmarks``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from benchmarks.__main__ import parse_args
from benchmarks.chart import COLOURS
from benchmarks.sweep import (
    DEFAULT_SIZES,
    paid_tasks,
    parse_sizes,
    side_summary,
    size_record,
    table,
    target_lines,
    targets_summary,
)
from benchmarks.sweep_chart import HEIGHT, PANEL_HEIGHT, PANEL_WIDTH, PANELS, WIDTH, draw_sweep, series
from benchmarks.trigger_profile import comparison, trigger_options


def _figures(prompts: int, **overrides: Any) -> dict[str, Any]:
    """What :func:`benchmarks.pipelines.run_pipeline` returns for a provider run that met every target."""
    paid = paid_tasks(prompts)
    figures: dict[str, Any] = {
        "state": "success",
        "wall_seconds": 105.0,
        "floor_seconds": 100.0,
        "wall_over_floor": 1.05,
        "calls": {"imagine": prompts, "button": 4 * prompts, "progress": paid, "images": paid},
        "answers_429": 0,
        "duplicate_submissions": {"imagine": 0, "button": 0},
        "worker_slot_seconds": 1.0 * paid,
    }
    return figures | overrides


def _baseline(prompts: int, **overrides: Any) -> dict[str, Any]:
    paid = paid_tasks(prompts)
    return _figures(prompts, wall_seconds=110.0, worker_slot_seconds=50.0 * paid, answers_429=9, **overrides)


def _runs(prompts: int, **kinds: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The three runs of a size, each meeting every target unless given (``provider_webhooks=...``)."""
    runs = {
        "provider": _figures(prompts),
        "provider-webhooks": _figures(prompts),
        "baseline": _baseline(prompts),
    }
    return runs | {name.replace("_", "-"): figures for name, figures in kinds.items()}


TARGETS = (
    "wall_within_1.05x_floor",
    "wall_below_the_baseline",
    "zero_429",
    "zero_duplicate_paid_calls",
    "progress_reads_per_paid_task_at_most_{reads}",
    "worker_slot_seconds_at_most_0.03x_baseline",
)


def _names(kind: str, reads: float) -> list[str]:
    return [f"{kind}: {name.format(reads=reads)}" for name in TARGETS]


def test_summary_divides_by_the_paid_tasks_of_the_batch() -> None:
    figures = _figures(6, calls={"imagine": 7, "button": 26, "progress": 42, "images": 30})
    summary = side_summary(figures, paid_tasks(6))
    assert paid_tasks(6) == 30
    assert summary["calls_per_paid_task"] == round((7 + 26 + 42) / 30, 3)
    assert summary["progress_reads_per_paid_task"] == 1.4
    assert summary["worker_slot_seconds_per_paid_task"] == 1.0
    assert summary["duplicate_paid_calls"] == 0


def test_a_size_that_meets_every_target() -> None:
    record = size_record(24, _runs(24))
    assert record["paid_tasks"] == 120
    assert list(record["targets"]) == _names("provider", 1.5) + _names("provider-webhooks", 1.05)
    assert all(target["met"] for target in record["targets"].values())
    assert record["targets"]["provider: worker_slot_seconds_at_most_0.03x_baseline"]["value"] == 0.02
    assert record["targets"]["provider-webhooks: wall_below_the_baseline"]["value"] == round(105 / 110, 4)
    assert record["provider-webhooks"]["figures"]["state"] == "success"
    assert targets_summary([record]) == {"all_met": True, "not_met": []}


def test_a_size_that_misses_every_target() -> None:
    provider = _figures(
        6,
        wall_seconds=120.0,
        wall_over_floor=1.2,
        answers_429=3,
        duplicate_submissions={"imagine": 0, "button": 1},
        calls={"imagine": 6, "button": 24, "progress": 60},
        worker_slot_seconds=60.0,
    )
    record = size_record(6, _runs(6, provider=provider, provider_webhooks=provider))
    targets = record["targets"]
    assert not any(target["met"] for target in targets.values())
    assert targets["provider: wall_within_1.05x_floor"] == {"value": 1.2, "target": 1.05, "met": False}
    assert targets["provider: wall_below_the_baseline"] == {
        "value": round(120 / 110, 4),
        "target": "< 1",
        "met": False,
    }
    assert targets["provider: progress_reads_per_paid_task_at_most_1.5"]["value"] == 2.0
    assert targets["provider-webhooks: progress_reads_per_paid_task_at_most_1.05"]["value"] == 2.0
    assert targets["provider: worker_slot_seconds_at_most_0.03x_baseline"]["value"] == 0.04
    summary = targets_summary([record])
    assert summary["all_met"] is False
    assert "6 prompts: provider-webhooks: zero_429" in summary["not_met"] and len(summary["not_met"]) == 12


def test_the_two_provider_runs_are_held_to_their_own_read_targets() -> None:
    """1.4 reads a paid task meets the polling run's 1.5 but not the webhook run's 1.05."""
    reads = _figures(6, calls={"progress": 42})
    targets = size_record(6, _runs(6, provider=reads, provider_webhooks=reads))["targets"]
    assert targets["provider: progress_reads_per_paid_task_at_most_1.5"]["met"] is True
    assert targets["provider-webhooks: progress_reads_per_paid_task_at_most_1.05"]["met"] is False


def test_targets_at_the_boundary_are_met_but_a_tie_with_the_baseline_is_not() -> None:
    provider = _figures(6, calls={"progress": 45}, worker_slot_seconds=45.0)
    webhooks = _figures(6, calls={"progress": 31.5}, worker_slot_seconds=45.0)
    baseline = _figures(6, wall_seconds=105.0, worker_slot_seconds=1500.0)
    record = size_record(6, _runs(6, provider=provider, provider_webhooks=webhooks, baseline=baseline))
    not_met = targets_summary([record])["not_met"]
    assert not_met == [
        "6 prompts: provider: wall_below_the_baseline",
        "6 prompts: provider-webhooks: wall_below_the_baseline",
    ]


def test_a_run_that_raised_misses_its_targets_without_breaking_the_report() -> None:
    record = size_record(6, _runs(6, provider={"state": "error", "error": "boom"}))
    assert record["provider"]["wall_over_floor"] is None
    assert not any(
        target["met"] for name, target in record["targets"].items() if name.startswith("provider:")
    )
    assert all(
        target["met"] for name, target in record["targets"].items() if name.startswith("provider-webhooks:")
    )
    assert "| run state | error | success | success |" in table([record])
    assert targets_summary([]) == {"all_met": None, "not_met": []}


def test_a_failed_run_meets_no_target_however_good_its_figures() -> None:
    record = size_record(2, _runs(2, provider_webhooks=_figures(2, state="failed")))
    assert record["targets"]["provider-webhooks: wall_within_1.05x_floor"] == {
        "value": 1.05,
        "target": 1.05,
        "met": False,
        "note": "a run did not succeed",
    }
    assert "NOT MET  provider-webhooks: zero_429: 0 (a run did not succeed)" in target_lines([record])
    failed_baseline = size_record(2, _runs(2, baseline=_baseline(2, state="failed")))
    assert failed_baseline["targets"]["provider: zero_429"]["met"] is True
    assert failed_baseline["targets"]["provider: wall_below_the_baseline"]["met"] is False
    assert failed_baseline["targets"]["provider: worker_slot_seconds_at_most_0.03x_baseline"]["met"] is False


def test_table_and_target_lines_have_a_column_per_kind_and_lines_per_size() -> None:
    records = [size_record(n, _runs(n)) for n in (6, 24)]
    lines = table(records).splitlines()
    head = " | ".join(
        f"{n} prompts: {kind}" for n in (6, 24) for kind in ("provider", "provider-webhooks", "baseline")
    )
    assert lines[0] == f"| | {head} |"
    assert "| 429 answers | 0 | 0 | 9 | 0 | 0 | 9 |" in lines
    text = target_lines(records)
    assert len(text.splitlines()) == 24 and "NOT MET" not in text


def _sweep(sizes: tuple[int, ...]) -> dict[str, Any]:
    records = [size_record(n, _runs(n)) for n in sizes]
    return {"settings": {"pipeline": {"time_scale": 0.5}}, "sizes": records}


@pytest.mark.parametrize("sizes", [(6, 24, 60), (2,)])
def test_chart_is_a_png_of_four_panels_with_a_line_per_kind(tmp_path: Path, sizes: tuple[int, ...]) -> None:
    path = draw_sweep(_sweep(sizes), tmp_path / "sweep.png")
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == (WIDTH, HEIGHT) == (2 * PANEL_WIDTH, 70 + 2 * PANEL_HEIGHT)
        colours = {colour for _, colour in image.getcolors(maxcolors=1 << 20) or []}
    assert len(PANELS) == 4
    assert {COLOURS[kind] for kind in ("provider", "provider-webhooks", "baseline")} <= colours


def test_chart_series_run_by_paid_tasks_and_skip_missing_figures() -> None:
    result = _sweep((24, 6))
    result["sizes"].append(size_record(60, _runs(60, provider={"state": "error"})))
    lines = series(result["sizes"], "answers_429")
    assert lines["provider"] == [(30, 0.0), (120, 0.0)]
    assert lines["provider-webhooks"] == [(30, 0.0), (120, 0.0), (300, 0.0)]
    assert lines["baseline"] == [(30, 9.0), (120, 9.0), (300, 9.0)]


def test_profile_compares_adaptive_with_fixed() -> None:
    modes = {
        "adaptive": {"cpu_seconds_per_1000_reads": 2.0, "bytes_per_trigger": 6000},
        "fixed": {"cpu_seconds_per_1000_reads": 4.0, "bytes_per_trigger": 6000},
    }
    assert comparison(modes) == {"cpu_seconds_per_1000_reads": 0.5, "bytes_per_trigger": 1.0}
    assert comparison({"fixed": modes["fixed"], "adaptive": {"skipped": "no"}})["bytes_per_trigger"] is None


def test_profile_passes_only_the_options_the_trigger_takes() -> None:
    both = {"kind", "adaptive_polling", "poll_interval"}
    assert trigger_options(False, both) == {"kind": "imagine", "adaptive_polling": False}
    assert trigger_options(True, {"poll_interval"}) == {}


@pytest.mark.parametrize(
    ("text", "sizes"), [("6,24,60", (6, 24, 60)), ("60, 6", (6, 60)), ("2", (2,)), ("3,", (3,))]
)
def test_sizes_parse_to_distinct_counts_smallest_first(text: str, sizes: tuple[int, ...]) -> None:
    assert parse_sizes(text) == sizes


@pytest.mark.parametrize("text", ["", ",", "0", "6,-1", "6,6", "six", "6;24", "2.5"])
def test_bad_sizes_are_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_sizes(text)


def test_the_default_local_run_is_the_sweep_and_prompts_asks_for_one_size() -> None:
    args = parse_args([])
    assert args.sweep is True and args.sizes == DEFAULT_SIZES == (6, 24, 60)
    assert args.triggers == 1000 and args.profile_window == 60.0
    args = parse_args(["--sizes", "2", "--triggers", "50", "--profile-window", "5"])
    assert (args.sizes, args.triggers, args.profile_window) == ((2,), 50, 5.0)
    single = parse_args(["--prompts", "24"])
    assert single.sweep is False and single.sizes is None and single.prompts == 24
    assert parse_args(["--topology", "distributed"]).sweep is False


@pytest.mark.parametrize(
    "argv",
    [
        ["--sizes", "6,6"],
        ["--sizes", "0"],
        ["--sizes", "6", "--prompts", "6"],
        ["--prompts", "6", "--profile-window", "10"],
        ["--profile-window", "0"],
        ["--triggers", "-1"],
        ["--topology", "distributed", "--sizes", "6"],
        ["--topology", "distributed", "--profile-window", "10"],
    ],
)
def test_bad_sweep_command_lines_are_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args(argv)
    assert exited.value.code == 2
