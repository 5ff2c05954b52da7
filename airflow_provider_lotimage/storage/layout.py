"""How stored pictures are named and described, the one rule both their writer and their reader use.

SaveImagesOperator writes by it (:mod:`.store`) and the gallery reads by it.

* **Names** come only from the LotImage taskId and the picture index (``<taskId>_<index>.<ext>``,
  :func:`picture_name`), never from the prompt: prompts are free user text. A taskId with
  characters outside ``[A-Za-z0-9_-]`` has them replaced and a short hash of the original
  appended (:func:`safe_task_id`), so two different ids cannot collide.
* **Index**: 1..4 are the quadrants of a grid, the pictures of U1..U4 (top-left, top-right,
  bottom-left, bottom-right: :data:`QUADRANT_BUTTONS`); 0 is the whole picture at ``image_url``
  (the grid, or the single picture of an upscale).
* **Sidecar**: each picture has a JSON sidecar ``<taskId>_<index>.json`` beside it
  (:class:`Sidecar`, its fields the JSON's keys), written after the picture as its commit marker.
* **Temporary names** (``.<name>.part-<random>``, :func:`temp_name`) are hidden, and never match a
  picture's or a sidecar's name.

Nothing here reads or writes storage: :mod:`.store` does, and the gallery reads what it recorded.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import re
import secrets
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from typing import Any

from airflow_provider_lotimage.client.contract import UPSCALE_BUTTONS

#: Formats accepted from the service, with the file extension each is stored under. A closed list:
#: Pillow can open many more (EPS, PSD, ...) that have no business arriving from an image CDN.
PICTURE_FORMATS: dict[str, str] = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp", "GIF": "gif"}

#: The button each quadrant of a grid stands for, by picture index.
QUADRANT_BUTTONS: dict[int, str] = dict(enumerate(UPSCALE_BUTTONS, 1))

_UNSAFE_ID_CHARS = re.compile(r"[^A-Za-z0-9_-]")
_MAX_ID_LENGTH = 100

#: A picture's name (``<stem>.<ext>``, the stem ``<safe taskId>_<index>``); anything else is not one.
PICTURE_NAME = re.compile(
    r"^(?P<stem>(?P<task>[A-Za-z0-9_-]{1,120})_(?P<index>[0-4]))\.(?:"
    + "|".join(PICTURE_FORMATS.values())
    + r")$"
)

#: A temporary name: ``.<stem>.part-<random>`` (picture) or ``.<stem>.json.part-<random>`` (sidecar).
TEMP_NAME = re.compile(r"^\.(?P<stem>[A-Za-z0-9_-]+)_(?P<index>[0-9]+)(?:\.json)?\.part-[0-9a-f]{12}$")


def safe_task_id(task_id: str) -> str:
    """Return the taskId as a file-name stem: ``[A-Za-z0-9_-]`` only, unique per original id."""
    safe = _UNSAFE_ID_CHARS.sub("_", task_id)[:_MAX_ID_LENGTH]
    if safe != task_id:
        safe += "-" + hashlib.sha256(task_id.encode()).hexdigest()[:10]
    return safe


def file_stems(task_ids: Iterable[str]) -> frozenset[str]:
    """Return the :func:`safe_task_id` stems of these LotImage tasks' pictures."""
    return frozenset(safe_task_id(task_id) for task_id in task_ids)


def picture_stem(task_id: str, index: int) -> str:
    """Return the name of picture ``index`` of a LotImage task, without extension."""
    return f"{safe_task_id(task_id)}_{index}"


def picture_name(task_id: str, index: int, picture_format: str) -> str:
    """Return ``<stem>.<ext>``, the extension that of the format (a key of :data:`PICTURE_FORMATS`)."""
    return f"{picture_stem(task_id, index)}.{PICTURE_FORMATS[picture_format]}"


def picture_names(task_id: str, index: int) -> frozenset[str]:
    """Return every name picture ``index`` of the task may have (one per accepted format)."""
    return frozenset(f"{picture_stem(task_id, index)}.{ext}" for ext in PICTURE_FORMATS.values())


def sidecar_name(task_id: str, index: int) -> str:
    """Return the name of the sidecar of picture ``index`` of a LotImage task."""
    return f"{picture_stem(task_id, index)}.json"


def report_name(run_id: str) -> str:
    """Return the name of a batch run's report beside its pictures.

    The dot after ``batch-report`` keeps it apart from every picture and sidecar name, whose stems
    hold no dot, so nothing that reads pictures or sidecars mistakes it for one.
    """
    return f"batch-report.{safe_task_id(run_id)}.json"


def temp_name(name: str) -> str:
    """Return a hidden, unique temporary name for ``name`` in the same folder (see :data:`TEMP_NAME`)."""
    return f".{name}.part-{secrets.token_hex(6)}"


@dataclass(frozen=True)
class PictureName:
    """A picture's name taken apart: the stem of its task (:func:`safe_task_id`) and its index."""

    stem: str
    task_stem: str
    index: int

    @classmethod
    def parse(cls, name: str) -> PictureName | None:
        """Read a picture's file name; ``None`` for any name SaveImagesOperator does not write."""
        match = PICTURE_NAME.match(name)
        if match is None:
            return None
        return cls(match["stem"], match["task"], int(match["index"]))


def sidecar_path(picture: str) -> str | None:
    """``…/<stem>.json`` for ``…/<stem>.<ext>``, or None when the name is not one of ours."""
    folder, _, name = picture.rpartition("/")
    parsed = PictureName.parse(name)
    return f"{folder}/{parsed.stem}.json" if folder and parsed else None


@dataclass(frozen=True, kw_only=True)
class Sidecar:
    """The JSON written beside each stored picture: its fields are the JSON's keys, in the file's order.

    Written by the store after its picture, as the commit marker (a picture counts as stored when
    its sidecar is readable, names it and its size matches ``bytes``), and read by the store and
    by the gallery. The fields that say which picture it is (``lotimage_task_id``, ``index``,
    ``file``, ``bytes``, ``sha256``) must have their types for a file to be read as a sidecar.
    """

    lotimage_task_id: str
    originating_task_id: str | None = None
    prompt: str | None = None
    index: int
    file: str
    source_url: str | None = None
    split_from_grid: bool = False
    width: int | None = None
    height: int | None = None
    format: str | None = None
    bytes: int
    sha256: str
    created_at: str | None = None
    stored_at: str | None = None

    def to_json(self) -> builtins.bytes:
        """Return the sidecar file's bytes (UTF-8, indented, the fields in order)."""
        return json.dumps(asdict(self), indent=2, ensure_ascii=False).encode("utf-8")

    @classmethod
    def from_json(cls, raw: str | builtins.bytes) -> Sidecar | None:
        """Read a sidecar file; ``None`` when it is not JSON, or not a sidecar (see the class doc)."""
        try:
            data = json.loads(raw)
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        task_id, index, file, size, digest = (data.get(name) for name in _IDENTITY)
        if not (isinstance(task_id, str) and isinstance(file, str) and isinstance(digest, str)):
            return None
        if not (_whole(index) and _whole(size)):
            return None
        known = {field.name for field in fields(cls)}
        return cls(**{name: value for name, value in data.items() if name in known})

    def names(self, task_id: str, index: int) -> bool:
        """Whether this is the sidecar of picture ``index`` of LotImage task ``task_id``."""
        return (
            self.lotimage_task_id == task_id
            and self.index == index
            and self.file in picture_names(task_id, index)
        )


#: The fields a sidecar must have, with their types, to be read as one.
_IDENTITY = ("lotimage_task_id", "index", "file", "bytes", "sha256")


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
