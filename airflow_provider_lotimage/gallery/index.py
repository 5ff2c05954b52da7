"""The sidecars are the index: read them, group the pictures, cut the groups into pages.

Only the pictures a run recorded are read (see :mod:`.records`), and only through names
SaveImagesOperator writes (``<taskId>_<index>.<ext>`` beside ``<taskId>_<index>.json``), through
:mod:`.files` (no symlink followed, sizes bounded). A sidecar is kept with the exact bytes it was
parsed from: the sidecar route serves those bytes, never the path read again.

Sidecars on local disk are read on each use (a small read, and what is on disk now: a picture
stored again is shown with its new sidecar). Sidecars in an object store are kept in a bounded
in-process cache: the store writes each object once, and a page of an s3:// run costs its sidecar
reads once, not on every view.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_lotimage.gallery import files
from airflow_provider_lotimage.gallery.lru import LRU
from airflow_provider_lotimage.storage.images import DEFAULT_MAX_BYTES, PICTURE_FORMATS
from airflow_provider_lotimage.storage.store import safe_task_id

#: A picture name SaveImagesOperator writes; anything else is never read.
PICTURE_NAME = re.compile(
    r"^(?P<stem>[A-Za-z0-9_-]{1,120}_(?P<index>[0-4]))\.(?:" + "|".join(PICTURE_FORMATS.values()) + r")$"
)

#: Buttons of the four quadrants of a grid, by picture index (see picture_store's module doc).
QUADRANT_BUTTONS = {1: "U1", 2: "U2", 3: "U3", 4: "U4"}

#: The largest sidecar read: a 4000-character prompt is at most 16 KB of UTF-8.
MAX_SIDECAR_BYTES = 64 * 1024

#: The largest picture served (SaveImagesOperator's default download cap).
MAX_PICTURE_BYTES = DEFAULT_MAX_BYTES

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CACHE_SIZE = 8192
_READERS = 8


def file_stems(task_ids: Iterable[str]) -> frozenset[str]:
    """Return the file-name stems SaveImagesOperator gives the pictures of these LotImage tasks."""
    return frozenset(safe_task_id(task_id) for task_id in task_ids)


def in_destination(path: str, destination: str, stems: frozenset[str]) -> bool:
    """Whether ``path`` is a picture SaveImagesOperator would write there for one of ``stems``.

    That is: a direct child of ``destination`` (as the save task recorded it in its Asset event),
    named ``<taskId>_<index>.<ext>`` after one of the LotImage tasks the event names
    (:func:`file_stems`). A path added to the task's XCom that points anywhere else (another DAG's
    folder, another task's pictures) is not a recorded picture.
    """
    folder, _, name = path.rpartition("/")
    match = PICTURE_NAME.match(name)
    if match is None or folder != destination.rstrip("/"):
        return False
    return match["stem"].rpartition("_")[0] in stems


def sidecar_path(picture: str) -> str | None:
    """``…/<stem>.json`` for ``…/<stem>.<ext>``, or None when the name is not one of ours."""
    folder, _, name = picture.rpartition("/")
    match = PICTURE_NAME.match(name)
    return f"{folder}/{match['stem']}.json" if folder and match else None


@dataclass(frozen=True)
class Picture:
    """One stored picture: where the run recorded it, and its sidecar."""

    path: str
    meta: dict[str, Any]
    button: str = ""
    #: The sidecar's bytes, exactly as read and checked (what the sidecar route serves).
    sidecar: bytes = field(default=b"", repr=False)

    @property
    def name(self) -> str:
        """The file name."""
        return self.path.rpartition("/")[2]

    @property
    def folder(self) -> str:
        """Where it is stored (the destination folder, conn_id included for object stores)."""
        return self.path.rpartition("/")[0]

    @property
    def index(self) -> int:
        """0 for a whole picture (grid or upscale), 1..4 for a quadrant."""
        return int(self.meta["index"])

    @property
    def task_id(self) -> str:
        """The LotImage taskId that made it."""
        return str(self.meta["lotimage_task_id"])

    @property
    def prompt(self) -> str:
        """The prompt the service reported."""
        return str(self.meta.get("prompt") or "")


@dataclass
class Group:
    """The pictures of one LotImage task, and the upscales made from it."""

    task_id: str
    pictures: list[Picture] = field(default_factory=list)
    upscales: list[Group] = field(default_factory=list)

    @property
    def prompt(self) -> str:
        """The prompt of the task (the first picture that has one)."""
        return next((p.prompt for p in self.pictures if p.prompt), "")

    @property
    def parent(self) -> str:
        """The taskId this task was made from (a button press), or ``""``."""
        return next((str(p.meta.get("originating_task_id") or "") for p in self.pictures), "")

    def count(self) -> int:
        """Pictures in the group, upscales included."""
        return len(self.pictures) + sum(upscale.count() for upscale in self.upscales)


#: Checked sidecars of object stores, by path: ``(bytes, meta)``.
SIDECARS: LRU[str, tuple[bytes, dict[str, Any]]] = LRU(_CACHE_SIZE)


def read_sidecar(picture: str) -> tuple[bytes, dict[str, Any]] | None:
    """Return the sidecar of ``picture`` (its bytes, and them parsed) if it is ours and names that picture.

    None otherwise, never raises (see the module doc for what is read, and what is cached).
    """
    sidecar = sidecar_path(picture)
    found = files.where(sidecar) if sidecar is not None else None
    if sidecar is None or found is None:
        return None
    cached = SIDECARS.get(sidecar) if found[0] == "object" else None
    if cached is not None:
        return cached
    try:
        raw = files.read(sidecar, MAX_SIDECAR_BYTES)
        meta = json.loads(raw)
    except (files.Unreadable, ValueError):
        return None
    if not _is_sidecar_of(meta, picture):
        return None
    if found[0] == "object":
        SIDECARS.put(sidecar, (raw, meta))
    return raw, meta


def _is_sidecar_of(meta: Any, picture: str) -> bool:
    """Whether ``meta`` is a SaveImagesOperator sidecar naming ``picture``."""
    name = picture.rpartition("/")[2]
    match = PICTURE_NAME.match(name)
    size = meta.get("bytes") if isinstance(meta, dict) else None
    return (
        isinstance(meta, dict)
        and match is not None
        and meta.get("file") == name
        and meta.get("index") == int(match["index"])
        and isinstance(meta.get("lotimage_task_id"), str)
        and isinstance(size, int)
        and not isinstance(size, bool)
        and 0 < size <= MAX_PICTURE_BYTES
        and _SHA256.match(str(meta.get("sha256", ""))) is not None
    )


def read_verified(picture: Picture) -> bytes:
    """Read the picture once, checked against the size and SHA-256 its sidecar recorded.

    :raises files.Unreadable: it cannot be read (see :mod:`.files`) or does not match.
    """
    data = files.read(picture.path, int(picture.meta["bytes"]))
    if len(data) != picture.meta["bytes"] or hashlib.sha256(data).hexdigest() != picture.meta["sha256"]:
        raise files.Unreadable("the picture does not match its sidecar")
    return data


def read_pictures(paths: list[str], buttons: dict[str, str] | None = None) -> list[Picture]:
    """Return the recorded pictures whose sidecars can be read, in order (read in parallel)."""
    with ThreadPoolExecutor(max_workers=_READERS) as pool:
        sidecars = list(pool.map(read_sidecar, paths))
    buttons = buttons or {}
    return [
        Picture(path, sidecar[1], button_of(sidecar[1], buttons), sidecar[0])
        for path, sidecar in zip(paths, sidecars, strict=True)
        if sidecar is not None
    ]


def button_of(meta: dict[str, Any], pressed: dict[str, str]) -> str:
    """Name the button a picture stands for: its quadrant's, else the one pressed to make it."""
    return QUADRANT_BUTTONS.get(meta.get("index", 0), "") or pressed.get(str(meta["lotimage_task_id"]), "")


def group_pictures(pictures: list[Picture]) -> list[Group]:
    """Group by LotImage task, then put each task made from another task of the run under it."""
    groups: dict[str, Group] = {}
    for picture in pictures:
        groups.setdefault(picture.task_id, Group(picture.task_id)).pictures.append(picture)
    for group in groups.values():
        group.pictures.sort(key=lambda picture: picture.index)
    top: list[Group] = []
    for group in groups.values():
        parent = groups.get(group.parent)
        if parent is not None and parent is not group and parent.parent != group.task_id:
            parent.upscales.append(group)
        else:
            top.append(group)
    return top


def paginate(groups: list[Group], page: int, size: int) -> tuple[list[Group], int]:
    """Return the groups of page ``page`` (1-based) and the number of pages; never split a group."""
    pages: list[list[Group]] = [[]]
    filled = 0
    for group in groups:
        if pages[-1] and filled + group.count() > size:
            pages.append([])
            filled = 0
        pages[-1].append(group)
        filled += group.count()
    return pages[min(max(page, 1), len(pages)) - 1], len(pages)
