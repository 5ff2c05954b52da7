"""A PNG chart of a comparison: one panel per figure, the two DAGs side by side (Pillow only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

#: (figure key, panel title, unit); a row of bars per panel.
PANELS: tuple[tuple[str, str, str], ...] = (
    ("wall_seconds", "Wall time, first submit to last picture", "s"),
    ("wall_over_floor", "Wall time / floor of the API limits", "x"),
    ("worker_slot_seconds", "Worker-slot-seconds (running, deferral excluded)", "s"),
    ("calls_total", "API calls (submits + progress reads)", ""),
    ("answers_429", "429 answers", ""),
    ("triggerer_peak_mib", "Triggerer peak memory", "MiB"),
)
COLOURS = {"provider": (38, 110, 180), "provider-webhooks": (60, 160, 90), "baseline": (200, 110, 40)}
LABELS = {
    "provider": "this provider (deferrable)",
    "provider-webhooks": "this provider with webhooks",
    "baseline": "HttpOperator + HttpSensor (poke)",
}
WALL_TARGET = 1.3
WIDTH, PANEL_HEIGHT, LEFT, RIGHT, TOP = 900, 92, 250, 150, 70


def chart_values(figures: dict[str, Any]) -> dict[str, float]:
    """The numbers each panel shows, derived from one DAG's figures."""
    calls = figures.get("calls", {})
    return {
        "wall_seconds": float(figures.get("wall_seconds") or 0),
        "wall_over_floor": float(figures.get("wall_over_floor") or 0),
        "worker_slot_seconds": float(figures.get("worker_slot_seconds") or 0),
        "calls_total": float(sum(calls.get(name, 0) for name in ("imagine", "button", "progress"))),
        "answers_429": float(figures.get("answers_429") or 0),
        "triggerer_peak_mib": float(figures.get("triggerer_peak_rss_bytes") or 0) / 2**20,
    }


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType
        return ImageFont.load_default()


def draw_comparison(comparison: dict[str, Any], path: Path) -> Path:
    """Draw the provider-versus-baseline panels of ``comparison`` into ``path``."""
    kinds = [kind for kind in ("provider", "baseline") if kind in comparison]
    values = {kind: chart_values(comparison[kind]) for kind in kinds}
    height = TOP + PANEL_HEIGHT * len(PANELS) + 40
    image = Image.new("RGB", (WIDTH, height), "white")
    draw = ImageDraw.Draw(image)
    title, text, small = _font(20), _font(14), _font(12)
    settings = comparison.get("settings", {})
    draw.text(
        (20, 12),
        f"{settings.get('prompts', '?')} prompts, 5 paid tasks each; emulator at 3 calls/s, "
        f"3 running per key, durations x{settings.get('time_scale', '?')}",
        fill="black",
        font=title,
    )
    x = 20
    for kind in kinds:
        draw.rectangle((x, 44, x + 14, 58), fill=COLOURS[kind])
        draw.text((x + 20, 43), LABELS[kind], fill="black", font=text)
        x += 320
    bar_space = WIDTH - LEFT - RIGHT
    for row, (key, label, unit) in enumerate(PANELS):
        y = TOP + row * PANEL_HEIGHT
        draw.line((20, y, WIDTH - 20, y), fill=(220, 220, 220))
        draw.text((20, y + 10), label, fill="black", font=text)
        top = max([values[kind][key] for kind in kinds] + [1e-9])
        if key == "wall_over_floor":  # leave room to show the target beside the bars
            top = max(top, WALL_TARGET * 1.15)
        for i, kind in enumerate(kinds):
            value = values[kind][key]
            by = y + 34 + i * 26
            length = int(bar_space * value / top)
            draw.rectangle((LEFT, by, LEFT + max(length, 1), by + 20), fill=COLOURS[kind])
            shown = f"{value:.2f}" if unit == "x" else f"{value:,.0f}"
            draw.text((LEFT + length + 8, by + 3), f"{shown} {unit}".strip(), fill="black", font=small)
        if key == "wall_over_floor":
            target = LEFT + int(bar_space * WALL_TARGET / top)
            draw.line((target, y + 30, target, y + 86), fill=(0, 150, 0), width=2)
            draw.text((target + 4, y + 12), "target 1.3x", fill=(0, 120, 0), font=small)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG")
    return path
