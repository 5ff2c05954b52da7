"""The sidecars are the index: read them, group the pictures, cut the groups into pages.

Only the pictures a run recorded are read (see :mod:`.records`), and only through names
SaveImagesOperator writes (``<taskId>_<index>.<ext>`` beside ``<taskId>_<index>.json``: the one
naming rule, and the sidecar's schema, are :mod:`airflow_provider_lotimage.storage.layout`), through
:mod:`.files` (no symlink followed, sizes bounded). A sidecar is kept with the exact bytes it was
parsed from: the sidecar route serves those bytes, never the path read again.

Sidecars on local disk are read on each use (a small read, and what is on disk now: a picture
stored again is shown with its new sidecar). Sidecars in an object store are kept in a bounded
in-process cache: the store writes each object once, and a page of an s3:// run costs its sidecar
reads once, not on every view.
"""

from __future__ import annotations

import hashlib
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from airflow_provider_lotimage.gallery import files
from airflow_provider_lotimage.gallery.lru import LRU
from airflow_provider_lotimage.storage.images import DEFAULT_MAX_BYTES
from airflow_provider_lotimage.storage.layout import QUADRANT_BUTTONS, PictureName, Sidecar, sidecar_path

#: The largest sidecar read: a 4000-character prompt is at most 16 KB of UTF-8.
MAX_SIDECAR_BYTES = 64 * 1024

#: The largest picture served (SaveImagesOperator's default download cap).
MAX_PICTURE_BYTES = DEFAULT_MAX_BYTES

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CACHE_SIZE = 8192
_READERS = 8


def in_destination(path: str, destination: str, stems: frozenset[str]) -> bool:
    """Whether ``path`` is a picture SaveImagesOperator would write there for one of ``stems``.

    That is: a direct child of ``destination`` (as the save task recorded it in its Asset event),
    named ``<taskId>_<index>.<ext>`` after one of the LotImage tasks the event names (``stems``:
    ``storage.layout.file_stems``). A path added to the task's XCom that points anywhere else
    (another DAG's folder, another task's pictures) is not a recorded picture.
    """
    folder, _, name = path.rpartition("/")
    parsed = PictureName.parse(name)
    if parsed is None or folder != destination.rstrip("/"):
        return False
    return parsed.task_stem in stems


@dataclass(frozen=True)
class Picture:
    """One stored picture: where the run recorded it, and its sidecar."""

    path: str
    sidecar: Sidecar
    button: str = ""
    #: The sidecar's bytes, exactly as read and checked (what the sidecar route serves).
    sidecar_bytes: bytes = field(default=b"", repr=False)

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
        return self.sidecar.index

    @property
    def task_id(self) -> str:
        """The LotImage taskId that made it."""
        return self.sidecar.lotimage_task_id

    @property
    def prompt(self) -> str:
        """The prompt the service reported."""
        return str(self.sidecar.prompt or "")


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
        return next((str(p.sidecar.originating_task_id or "") for p in self.pictures), "")

    def count(self) -> int:
        """Pictures in the group, upscales included."""
        return len(self.pictures) + sum(upscale.count() for upscale in self.upscales)


#: Checked sidecars of object stores, by path: ``(bytes, sidecar)``.
SIDECARS: LRU[str, tuple[bytes, Sidecar]] = LRU(_CACHE_SIZE)


def read_sidecar(picture: str) -> tuple[bytes, Sidecar] | None:
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
    except files.Unreadable:
        return None
    parsed = Sidecar.from_json(raw)
    if parsed is None or not _is_sidecar_of(parsed, picture):
        return None
    if found[0] == "object":
        SIDECARS.put(sidecar, (raw, parsed))
    return raw, parsed


def _is_sidecar_of(sidecar: Sidecar, picture: str) -> bool:
    """Whether ``sidecar`` names ``picture``, a size the gallery serves and a SHA-256 to check it by."""
    name = picture.rpartition("/")[2]
    parsed = PictureName.parse(name)
    return (
        parsed is not None
        and sidecar.file == name
        and sidecar.index == parsed.index
        and 0 < sidecar.bytes <= MAX_PICTURE_BYTES
        and _SHA256.match(sidecar.sha256) is not None
    )


def read_verified(picture: Picture) -> bytes:
    """Read the picture once, checked against the size and SHA-256 its sidecar recorded.

    :raises files.Unreadable: it cannot be read (see :mod:`.files`) or does not match.
    """
    expected = picture.sidecar
    data = files.read(picture.path, expected.bytes)
    if len(data) != expected.bytes or hashlib.sha256(data).hexdigest() != expected.sha256:
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


def button_of(sidecar: Sidecar, pressed: dict[str, str]) -> str:
    """Name the button a picture stands for: its quadrant's, else the one pressed to make it."""
    return QUADRANT_BUTTONS.get(sidecar.index, "") or pressed.get(sidecar.lotimage_task_id, "")


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
