"""The sidecars are the index: read them, group the pictures, cut the groups into pages.

Only the pictures a run recorded are read (see :mod:`.records`), and only through names
SaveImagesOperator writes (``<taskId>_<index>.<ext>`` beside ``<taskId>_<index>.json``). Sidecars
do not change once written (a rerun never rewrites a stored pair), so parsed sidecars are kept in a
bounded in-process cache: a page of an s3:// run costs its sidecar reads once, not on every view.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_lotimage.images import PICTURE_FORMATS

#: A picture name SaveImagesOperator writes; anything else is never read.
PICTURE_NAME = re.compile(
    r"^(?P<stem>[A-Za-z0-9_-]{1,120}_(?P<index>[0-4]))\.(?:" + "|".join(PICTURE_FORMATS.values()) + r")$"
)

#: Buttons of the four quadrants of a grid, by picture index (see picture_store's module doc).
QUADRANT_BUTTONS = {1: "U1", 2: "U2", 3: "U3", 4: "U4"}

_CACHE_SIZE = 8192
_READERS = 8


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


class _SidecarCache:
    """A bounded, thread-safe LRU of parsed sidecars, keyed by path."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        return None

    def put(self, key: str, value: dict[str, Any]) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)


SIDECARS = _SidecarCache(_CACHE_SIZE)


def read_sidecar(picture: str) -> dict[str, Any] | None:
    """Return the sidecar of ``picture`` if it is ours and names that picture, else None (never raises)."""
    sidecar = sidecar_path(picture)
    if sidecar is None:
        return None
    meta = SIDECARS.get(sidecar)
    if meta is None:
        from airflow.sdk import ObjectStoragePath

        try:
            meta = json.loads(ObjectStoragePath(sidecar).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not _is_sidecar_of(meta, picture):
            return None
        SIDECARS.put(sidecar, meta)
    return meta


def _is_sidecar_of(meta: Any, picture: str) -> bool:
    """Whether ``meta`` is a SaveImagesOperator sidecar naming ``picture``."""
    name = picture.rpartition("/")[2]
    match = PICTURE_NAME.match(name)
    return (
        isinstance(meta, dict)
        and match is not None
        and meta.get("file") == name
        and meta.get("index") == int(match["index"])
        and isinstance(meta.get("lotimage_task_id"), str)
        and isinstance(meta.get("bytes"), int)
    )


def read_pictures(paths: list[str], buttons: dict[str, str] | None = None) -> list[Picture]:
    """Return the recorded pictures whose sidecars can be read, in order (read in parallel)."""
    with ThreadPoolExecutor(max_workers=_READERS) as pool:
        metas = list(pool.map(read_sidecar, paths))
    buttons = buttons or {}
    return [
        Picture(path, meta, _button(meta, buttons))
        for path, meta in zip(paths, metas, strict=True)
        if meta is not None
    ]


def _button(meta: dict[str, Any], pressed: dict[str, str]) -> str:
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
