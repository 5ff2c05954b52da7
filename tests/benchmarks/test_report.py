"""The benchmark's arithmetic and reporting: the floor, duplicates, targets, table and chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from benchmarks.__main__ import table, targets
from benchmarks.chart import chart_values, draw_comparison
from benchmarks.pipelines import PipelineSettings, duplicates, floor_seconds, make_prompts, read_timing


def test_floor_is_render_work_over_the_key_slots_when_that_dominates() -> None:
    floor = floor_seconds(PipelineSettings(prompts=24, time_scale=0.5))
    # 24 x (45 + 4 x 10) s of rendering x 0.5, three at a time.
    assert floor["render_seconds"] == pytest.approx(24 * 85 * 0.5 / 3)
    assert floor["calls_seconds"] == pytest.approx(2 * 120 / 3)
    assert floor["floor_seconds"] == floor["render_seconds"]


def test_floor_of_one_prompt_is_its_grid_then_an_upscale() -> None:
    floor = floor_seconds(PipelineSettings(prompts=1, time_scale=1.0))
    assert floor["chain_seconds"] == 55.0
    assert floor["floor_seconds"] == 55.0


def test_duplicates_count_repeated_prompts_and_repeated_buttons() -> None:
    tasks = [
        {"kind": "imagine", "prompt": "a", "parentId": None, "button": None},
        {"kind": "imagine", "prompt": "a", "parentId": None, "button": None},
        {"kind": "imagine", "prompt": "b", "parentId": None, "button": None},
        {"kind": "upscale", "prompt": "a", "parentId": "t1", "button": "U1"},
        {"kind": "upscale", "prompt": "a", "parentId": "t1", "button": "U2"},
        {"kind": "upscale", "prompt": "a", "parentId": "t1", "button": "U1"},
    ]
    assert duplicates(tasks) == {"imagine": 1, "button": 1}


def test_prompts_are_distinct() -> None:
    prompts = make_prompts(30)
    assert len(set(prompts)) == 30


def _figures(**overrides: Any) -> dict[str, Any]:
    figures: dict[str, Any] = {
        "state": "success",
        "wall_seconds": 400.0,
        "floor_seconds": 340.0,
        "wall_over_floor": 1.176,
        "calls": {"imagine": 24, "button": 96, "progress": 300, "images": 120},
        "answers_429": 0,
        "duplicate_submissions": {"imagine": 0, "button": 0},
        "pictures_stored": 120,
        "worker_slot_seconds": 100.0,
        "task_executions": 300,
        "triggerer_peak_rss_bytes": 300 * 2**20,
    }
    return figures | overrides


def test_targets_report_values_and_whether_they_are_met() -> None:
    result = {
        "provider": _figures(),
        "baseline": _figures(worker_slot_seconds=2000.0, answers_429=7, wall_over_floor=1.5),
        "many_triggers": {"bytes_per_waiting_trigger": 7000},
    }
    found = targets(result)
    assert found["wall_within_1.3x_floor"] == {"value": 1.176, "met": True}
    assert found["zero_429"] == {"value": 0, "met": True}
    assert found["zero_duplicates"] == {"value": 0, "met": True}
    assert found["slot_seconds_at_most_0.1x_baseline"] == {"value": 0.05, "met": True}
    assert found["under_20KB_per_waiting_trigger"] == {"value": 7000, "met": True}
    missed = targets({"provider": _figures(answers_429=2, wall_over_floor=1.4)})
    assert missed["zero_429"]["met"] is False
    assert missed["wall_within_1.3x_floor"]["met"] is False


def test_table_has_a_row_per_figure_and_both_columns() -> None:
    text = table({"provider": _figures(), "baseline": _figures(answers_429=7)})
    lines = text.splitlines()
    assert lines[0] == "| | this provider | HttpOperator + HttpSensor |"
    assert "| 429 answers | 0 | 7 |" in lines
    assert "| calls: imagine / button / progress | 24 / 96 / 300 | 24 / 96 / 300 |" in lines


def test_chart_is_a_png_with_both_series(tmp_path: Path) -> None:
    comparison = {
        "settings": {"prompts": 24, "time_scale": 0.5},
        "provider": _figures(),
        "baseline": _figures(worker_slot_seconds=2000.0),
    }
    path = draw_comparison(comparison, tmp_path / "chart.png")
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.width == 900
        colours = {colour for _, colour in image.getcolors(maxcolors=1 << 16) or []}
    assert (38, 110, 180) in colours and (200, 110, 40) in colours
    assert chart_values(comparison["baseline"])["worker_slot_seconds"] == 2000.0
    assert chart_values(comparison["provider"])["calls_total"] == 420.0


def test_read_timing_sums_reads_and_lateness_by_kind() -> None:
    def task(kind: str, reads: list[float], late: float | None) -> dict[str, object]:
        timing = {"queuedSeconds": 0.0, "runSeconds": 1.0, "readsAt": reads, "endSeenAfterSeconds": late}
        return {"kind": kind, "timing": timing}

    tasks = [task("imagine", [10.0, 20.0], 1.0), task("imagine", [30.0], 3.0), task("upscale", [5.0], None)]
    assert read_timing(tasks) == {
        "imagine": {"reads_per_task": 1.5, "end_seen_after_mean": 2.0, "end_seen_after_max": 3.0},
        "upscale": {"reads_per_task": 1.0, "end_seen_after_mean": 0.0, "end_seen_after_max": 0.0},
    }
