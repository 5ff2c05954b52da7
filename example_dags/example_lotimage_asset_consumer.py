"""Whenever the daily pictures are updated, make a contact sheet of the new ones.

* **Schedule**: ``Asset.ref(name="lotimage_daily_pictures")``, the Asset that
  ``example_lotimage_daily`` declares; referring to it by name keeps its URI in one place.
* **Which pictures are new**: the triggering asset events say it. ``SaveImagesOperator`` puts the
  pictures it stored in each event's ``extra`` (``new_paths``, ``new_count``), so a rerun that
  stored nothing new yields no sheet. A run without triggering events (started by hand) falls back
  to scanning ``$LOTIMAGE_OUTPUT_DIR/daily`` for sidecars newer than the last contact sheet.
* **Trust**: each picture is read through its JSON sidecar and used only if its sha256 matches,
  so a half-written or replaced file never lands on a sheet.
* **Output**: ``$LOTIMAGE_OUTPUT_DIR/contact_sheets/contact_sheet_<run_id>.png``: thumbnails in a
  grid, :data:`COLUMNS` wide, captioned with taskId and picture index; the PNG's text chunks
  ``lotimage:thumbnails`` and ``lotimage:sources`` say what is on it. Named after the run, so a
  retry overwrites its own sheet instead of adding a second one.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Asset, ObjectStoragePath, task

OUTPUT_DIR = Path(os.environ.get("LOTIMAGE_OUTPUT_DIR", "output")).resolve()
DAILY_DIR = OUTPUT_DIR / "daily"
SHEETS_DIR = OUTPUT_DIR / "contact_sheets"
DAILY_ASSET_NAME = "lotimage_daily_pictures"

THUMB_SIZE = 192
COLUMNS = 4
PADDING = 8
CAPTION_HEIGHT = 18
#: The most thumbnails one sheet shows; the rest are logged and left out.
MAX_THUMBNAILS = 64
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Picture:
    """A stored picture whose bytes match its sidecar."""

    path: str
    data: bytes
    meta: dict[str, Any]


def _storage_path(path: str | os.PathLike[str]) -> ObjectStoragePath:
    text = str(path)
    return ObjectStoragePath(text if "://" in text else Path(text).resolve().as_uri())


def paths_from_events(extras: Iterable[Mapping[str, Any] | None]) -> list[str]:
    """The pictures newly stored according to the events' ``extra`` (in order, without repeats)."""
    paths: dict[str, None] = {}
    for extra in extras:
        for path in (extra or {}).get("new_paths") or []:
            if isinstance(path, str) and path:
                paths[path] = None
    return list(paths)


def paths_from_scan(folder: Path, since: float | None) -> list[str]:
    """Pictures whose sidecar in ``folder`` (recursively) is newer than ``since`` (epoch seconds)."""
    found = []
    for sidecar in sorted(folder.rglob("*.json")) if folder.is_dir() else []:
        if since is not None and sidecar.stat().st_mtime <= since:
            continue
        try:
            meta = json.loads(sidecar.read_text(encoding="utf-8"))
        except ValueError:
            continue
        if isinstance(meta, dict) and isinstance(meta.get("file"), str):
            found.append(str(sidecar.with_name(Path(meta["file"]).name)))
    return found


def last_sheet_time(folder: Path) -> float | None:
    """When the newest contact sheet was written, or None if there is none yet."""
    times = [sheet.stat().st_mtime for sheet in folder.glob("contact_sheet_*.png")] if folder.is_dir() else []
    return max(times, default=None)


def load_picture(path: str) -> Picture | None:
    """The picture at ``path`` if its sidecar (same stem, ``.json``) vouches for its bytes."""
    picture = _storage_path(path)
    try:
        meta = json.loads(picture.with_suffix(".json").read_text(encoding="utf-8"))
        data = picture.read_bytes()
    except (OSError, ValueError) as err:
        log.warning("Skipping %s: %s", path, err)
        return None
    if not isinstance(meta, dict) or meta.get("file") != picture.name:
        log.warning("Skipping %s: its sidecar names another file", path)
        return None
    if hashlib.sha256(data).hexdigest() != meta.get("sha256"):
        log.warning("Skipping %s: its bytes do not match the sidecar's sha256", path)
        return None
    return Picture(path=str(path), data=data, meta=meta)


def thumbnail_box(position: int, count: int) -> tuple[int, int, int, int]:
    """The cell (left, top, right, bottom) of thumbnail ``position`` on a sheet of ``count``."""
    columns = max(1, min(COLUMNS, count))
    row, col = divmod(position, columns)
    left = PADDING + col * (THUMB_SIZE + PADDING)
    top = PADDING + row * (THUMB_SIZE + CAPTION_HEIGHT + PADDING)
    return (left, top, left + THUMB_SIZE, top + THUMB_SIZE)


def render_contact_sheet(pictures: Sequence[Picture]) -> bytes:
    """A PNG with the pictures as thumbnails in a grid, each centred in its cell and captioned."""
    from PIL import Image, ImageDraw, ImageOps, PngImagePlugin

    count = len(pictures)
    columns = max(1, min(COLUMNS, count))
    rows = max(1, -(-count // columns))
    size = (
        PADDING + columns * (THUMB_SIZE + PADDING),
        PADDING + rows * (THUMB_SIZE + CAPTION_HEIGHT + PADDING),
    )
    sheet = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for position, picture in enumerate(pictures):
        left, top, _right, bottom = thumbnail_box(position, count)
        with Image.open(io.BytesIO(picture.data)) as image:
            thumb = ImageOps.contain(image.convert("RGB"), (THUMB_SIZE, THUMB_SIZE))
        sheet.paste(thumb, (left + (THUMB_SIZE - thumb.width) // 2, top + (THUMB_SIZE - thumb.height) // 2))
        caption = f"{str(picture.meta.get('lotimage_task_id'))[:12]} #{picture.meta.get('index')}"
        draw.text((left, bottom + 3), caption, fill=(40, 40, 40))
    info = PngImagePlugin.PngInfo()
    info.add_text("lotimage:thumbnails", str(count))
    info.add_text("lotimage:sources", json.dumps([Path(p.path).name for p in pictures]))
    out = io.BytesIO()
    sheet.save(out, format="PNG", pnginfo=info)
    return out.getvalue()


with DAG(
    dag_id="example_lotimage_asset_consumer",
    description="A contact sheet of the new daily pictures, whenever they change",
    schedule=[Asset.ref(name=DAILY_ASSET_NAME)],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["example", "lotimage", "asset"],
) as dag:

    @task
    def contact_sheet(triggering_asset_events: Any = None, run_id: str | None = None) -> str | None:
        """Write the sheet of the new pictures; skip (no sheet) when nothing is new."""
        from airflow.providers.common.compat.sdk import AirflowSkipException

        events = [event for group in (triggering_asset_events or {}).values() for event in group]
        if events:
            paths = paths_from_events(event.extra for event in events)
            log.info("%d triggering event(s) name %d new picture(s)", len(events), len(paths))
        else:
            paths = paths_from_scan(DAILY_DIR, since=last_sheet_time(SHEETS_DIR))
            log.info("No triggering events: found %d picture(s) newer than the last sheet", len(paths))
        if len(paths) > MAX_THUMBNAILS:
            log.warning("%d new pictures; the sheet shows the first %d", len(paths), MAX_THUMBNAILS)
            paths = paths[:MAX_THUMBNAILS]
        pictures = [picture for path in paths if (picture := load_picture(path)) is not None]
        if not pictures:
            raise AirflowSkipException("No new pictures: no contact sheet")
        SHEETS_DIR.mkdir(parents=True, exist_ok=True)
        target = SHEETS_DIR / f"contact_sheet_{_UNSAFE.sub('_', run_id or 'manual')}.png"
        partial = target.with_suffix(".png.partial")
        partial.write_bytes(render_contact_sheet(pictures))
        partial.replace(target)  # never a half-written sheet under the final name
        log.info("Wrote %s with %d thumbnail(s)", target, len(pictures))
        return str(target)

    contact_sheet()
