"""A PNG chart of a size sweep: four panels against the batch size, a line per kind of run.

Pillow only (the benchmark's environment has no matplotlib), like :mod:`benchmarks.chart`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from benchmarks.chart import COLOURS, LABELS, _font
from benchmarks.sweep import KINDS, WALL_TARGET

#: (summary key, panel title, target line or None).
Panel = tuple[str, str, float | None]
#: The panels, filling a 2 x 2 grid row by row.
PANELS: tuple[Panel, ...] = (
    ("wall_over_floor", "Wall time / floor of the API limits", WALL_TARGET),
    ("calls_per_paid_task", "API calls per paid task", None),
    ("worker_slot_seconds_per_paid_task", "Worker-slot-seconds per paid task", None),
    ("answers_429", "429 answers", None),
)
#: Where each kind's value is written beside its dot, so that the three labels stay apart.
LABEL_OFFSETS = {"provider": -18, "provider-webhooks": -32, "baseline": 4}
PANEL_WIDTH, PANEL_HEIGHT, HEADER = 560, 330, 70
WIDTH, HEIGHT = 2 * PANEL_WIDTH, HEADER + 2 * PANEL_HEIGHT
#: Plot area inside a panel: margins left, top, right, bottom.
MARGINS = (70, 40, 60, 60)
TARGET_COLOUR = (0, 150, 0)
GRID_COLOUR = (225, 225, 225)

Point = tuple[float, float]


def series(records: Sequence[dict[str, Any]], key: str) -> dict[str, list[Point]]:
    """(paid tasks, figure) per kind, the sizes whose figure is known, smallest first."""
    ordered = sorted(records, key=lambda record: record["paid_tasks"])
    return {
        kind: [(r["paid_tasks"], float(r[kind][key])) for r in ordered if r[kind].get(key) is not None]
        for kind in KINDS
    }


@dataclass(frozen=True)
class Frame:
    """A panel's plot area and the ranges it shows: paid tasks across, the figure up."""

    left: float
    top: float
    width: float
    height: float
    low: float
    high: float
    ceiling: float

    @classmethod
    def of(cls, origin: tuple[int, int], xs: Sequence[float], ys: Sequence[float]) -> Frame:
        """The plot area of the panel at ``origin``, with 15 % headroom above the highest figure."""
        return cls(
            left=origin[0] + MARGINS[0],
            top=origin[1] + MARGINS[1],
            width=PANEL_WIDTH - MARGINS[0] - MARGINS[2],
            height=PANEL_HEIGHT - MARGINS[1] - MARGINS[3],
            low=min(xs),
            high=max(xs),
            ceiling=max(ys) * 1.15 or 1.0,
        )

    def x(self, paid: float) -> float:
        """Across; a sweep of one size puts it in the middle."""
        share = 0.5 if self.high == self.low else (paid - self.low) / (self.high - self.low)
        return self.left + share * self.width

    def y(self, value: float) -> float:
        return self.top + self.height - value / self.ceiling * self.height


def _axes(draw: ImageDraw.ImageDraw, frame: Frame, records: Sequence[dict[str, Any]]) -> None:
    """Three horizontal grid lines with their values, and a tick per size."""
    small, bottom = _font(11), frame.top + frame.height
    for fraction in (0.0, 0.5, 1.0):
        y = frame.y(frame.ceiling * fraction)
        draw.line((frame.left, y, frame.left + frame.width, y), fill=GRID_COLOUR)
        draw.text((frame.left - 62, y - 7), f"{frame.ceiling * fraction:.3g}", fill="black", font=small)
    for record in records:
        x = frame.x(record["paid_tasks"])
        draw.line((x, bottom, x, bottom + 5), fill="black")
        draw.text((x - 24, bottom + 8), f"{record['prompts']} prompts", fill="black", font=small)
        draw.text((x - 24, bottom + 22), f"{record['paid_tasks']} tasks", fill=(90, 90, 90), font=small)
    draw.line((frame.left, bottom, frame.left + frame.width, bottom), fill="black")


def _target_line(draw: ImageDraw.ImageDraw, frame: Frame, target: float) -> None:
    y = frame.y(target)
    draw.line((frame.left, y, frame.left + frame.width, y), fill=TARGET_COLOUR, width=2)
    draw.text((frame.left + frame.width - 80, y - 16), f"target {target}", fill=TARGET_COLOUR, font=_font(11))


def _plot(draw: ImageDraw.ImageDraw, frame: Frame, kind: str, points: list[Point]) -> None:
    """One kind's line, a dot per size and its value (the providers' above the dot, the baseline's below)."""
    at = [(frame.x(x), frame.y(y)) for x, y in points]
    if len(at) > 1:
        draw.line(at, fill=COLOURS[kind], width=3)
    for (px, py), (_, value) in zip(at, points, strict=True):
        draw.ellipse((px - 5, py - 5, px + 5, py + 5), fill=COLOURS[kind])
        draw.text((px + 7, py + LABEL_OFFSETS[kind]), f"{value:.3g}", fill="black", font=_font(11))


def _panel(
    image: Image.Image, origin: tuple[int, int], panel: Panel, records: Sequence[dict[str, Any]]
) -> None:
    key, title, target = panel
    draw = ImageDraw.Draw(image)
    lines = series(records, key)
    ys = [y for points in lines.values() for _, y in points] + [target or 0.0]
    frame = Frame.of(origin, [record["paid_tasks"] for record in records], ys)
    draw.text((origin[0] + 16, origin[1] + 10), title, fill="black", font=_font(15))
    _axes(draw, frame, records)
    if target is not None:
        _target_line(draw, frame, target)
    for kind, points in lines.items():
        _plot(draw, frame, kind, points)


def draw_sweep(result: dict[str, Any], path: Path) -> Path:
    """Draw the four panels of ``result["sizes"]`` into ``path`` (a PNG of WIDTH x HEIGHT)."""
    records = result["sizes"]
    settings = result.get("settings", {}).get("pipeline", {})
    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    scale = settings.get("time_scale", "?")
    title = f"Batch size sweep; emulator at 3 calls/s, 3 running per key, durations x{scale}"
    draw.text((20, 12), title, fill="black", font=_font(20))
    for i, kind in enumerate(KINDS):
        draw.rectangle((20 + 330 * i, 44, 34 + 330 * i, 58), fill=COLOURS[kind])
        draw.text((40 + 330 * i, 43), LABELS[kind], fill="black", font=_font(14))
    for index, panel in enumerate(PANELS):
        origin = ((index % 2) * PANEL_WIDTH, HEADER + (index // 2) * PANEL_HEIGHT)
        draw.rectangle(
            (*origin, origin[0] + PANEL_WIDTH - 1, origin[1] + PANEL_HEIGHT - 1), outline=GRID_COLOUR
        )
        _panel(image, origin, panel, records)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG")
    return path
