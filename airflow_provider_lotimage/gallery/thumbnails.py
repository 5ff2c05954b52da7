"""Thumbnails: made with Pillow from verified bytes, a few at a time, kept in the thumbnail folder.

* **Key**: the DAG, the picture's recorded path and the SHA-256 its sidecar gives, hashed into the
  file name (:func:`cache_key`). A thumbnail is only ever served for the picture it was made from,
  in the DAG that recorded it: a sidecar elsewhere quoting the same hash gets nothing (its own
  picture is read and checked), and a picture stored again with new bytes (so a new sidecar) gets
  a new thumbnail.
* **Made from verified bytes only**: the picture is read once (:func:`.index.read_verified`, no
  symlink followed) and checked against its sidecar's size and hash before it is decoded.
* **Bounded**: a picture of more than :data:`MAX_PIXELS` is refused from its header, before
  decoding, by the check every picture passes (``storage.images.open_picture``): Pillow holds
  4 bytes a pixel, and at the store's own cap, ten grids' worth, that is 170 MB and more per
  picture. Thumbnails are made by :data:`BUILDS` threads of their own, so at
  most that many at once, and the memory a decode leaves with the allocator stays with those
  threads instead of one more request thread each time. A request waits up to :data:`WAIT`
  seconds, then gets 503 (the thumbnail is still made, for the next request); one build serves
  all the requests for its key, and at most :data:`MAX_WAITING` builds wait.
* **Failures are remembered** (:data:`FAILED`, bounded, same key): a picture that cannot be made
  into a thumbnail is not decoded again on every request; a read that failed (storage down, the
  picture being replaced) is tried again after :data:`RETRY_UNREADABLE` seconds.
* Writes are atomic (a temporary file renamed into place); a cached thumbnail is read back
  without following a symlink in the folder.
"""

from __future__ import annotations

import hashlib
import io
import os
import secrets
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from airflow_provider_lotimage import config
from airflow_provider_lotimage.exceptions import ImageDownloadError
from airflow_provider_lotimage.gallery import files
from airflow_provider_lotimage.gallery.index import Picture, read_verified
from airflow_provider_lotimage.gallery.lru import LRU
from airflow_provider_lotimage.storage.images import open_picture

#: Longest side, in pixels: sharp at about 190 CSS pixels on a 2x screen.
SIZE = 384
QUALITY = 82
#: The most pixels decoded for a thumbnail: a 4096² picture (Midjourney's largest upscales).
MAX_PIXELS = 4096 * 4096
#: Thumbnails made at the same time in one api-server process.
BUILDS = 2
#: Builds waiting for a thread, at most; beyond, a request answers 503 at once.
MAX_WAITING = 64
#: Seconds a request waits for its thumbnail before it answers 503.
WAIT = 20.0
#: Seconds before a picture that could not be read is tried again (a lasting failure: an hour).
RETRY_UNREADABLE = 30.0
RETRY_UNDECODABLE = 3600.0
#: The largest thumbnail file read back from the cache.
_MAX_THUMBNAIL_BYTES = 2 * 1024 * 1024
_KEY_VERSION = "lotimage-thumbnail-2"

_builder = ThreadPoolExecutor(max_workers=BUILDS, thread_name_prefix="lotimage-thumbnail")
_building: dict[str, Future[bytes]] = {}
_building_lock = threading.Lock()

#: Keys whose thumbnail could not be made, with the reason.
FAILED: LRU[str, str] = LRU(4096)


class ThumbnailError(Exception):
    """The picture cannot be made into a thumbnail (unreadable, changed, too big, or not a picture)."""


class ThumbnailBusy(Exception):
    """Every build is taken and none came free in time: try again shortly."""


def cache_key(dag_id: str, picture: Picture) -> str:
    """Name the thumbnail of ``picture`` as recorded by a run of ``dag_id`` (see the module doc)."""
    digest = picture.sidecar.sha256
    return hashlib.sha256("\0".join((_KEY_VERSION, dag_id, picture.path, digest)).encode()).hexdigest()


def cache_path(key: str) -> Path:
    """Where the thumbnail of ``key`` is (or will be) kept."""
    return config.thumbnail_folder() / key[:2] / f"{key}-{SIZE}.jpg"


def thumbnail(dag_id: str, picture: Picture) -> bytes:
    """Return the JPEG thumbnail of ``picture``, made now if it is not cached yet.

    :raises ThumbnailError: it cannot be made (remembered, see the module doc).
    :raises ThumbnailBusy: it was not made within :data:`WAIT` seconds, or too many wait.
    """
    key = cache_key(dag_id, picture)
    cached = _cached(key)
    if cached is not None:
        return cached
    with _building_lock:
        future = _building.get(key)
        if future is None:
            cached = _cached(key)  # made, or failed, since the first look
            if cached is not None:
                return cached
            if len(_building) >= MAX_WAITING:
                raise ThumbnailBusy()
            future = _building[key] = _builder.submit(_build, key, picture)
    try:
        return future.result(timeout=WAIT)
    except TimeoutError:
        raise ThumbnailBusy() from None


def _cached(key: str) -> bytes | None:
    """Return the thumbnail already made for ``key``, or None; raise a remembered failure again."""
    failure = FAILED.get(key)
    if failure is not None:
        raise ThumbnailError(failure)
    folder = config.thumbnail_folder()
    try:
        return files.read_below(str(folder), [key[:2], f"{key}-{SIZE}.jpg"], _MAX_THUMBNAIL_BYTES)
    except files.Unreadable:
        return None


def _build(key: str, picture: Picture) -> bytes:
    """Read, check, decode and keep the thumbnail (on a builder thread); remember a failure."""
    try:
        try:
            data = read_verified(picture)
        except files.Unreadable as err:
            FAILED.put(key, f"cannot read the picture ({err})", RETRY_UNREADABLE)
            raise ThumbnailError(f"cannot read the picture ({err})") from None
        try:
            made = make(data)
        except ThumbnailError as err:
            FAILED.put(key, str(err), RETRY_UNDECODABLE)
            raise
        _write(cache_path(key), made)
        return made
    finally:
        with _building_lock:
            _building.pop(key, None)


def make(data: bytes) -> bytes:
    """Make a JPEG of at most :data:`SIZE` pixels a side (pictures over :data:`MAX_PIXELS` refused)."""
    from PIL import Image

    try:
        with open_picture(data, source="the picture", max_pixels=MAX_PIXELS) as opened:
            opened.draft("RGB", (SIZE, SIZE))  # JPEG: decode at a reduced scale
            image = opened if opened.mode in ("RGB", "RGBA", "L") else opened.convert("RGBA")
            # Reduce first, convert after: the full-size picture is held once, not twice.
            image.thumbnail((SIZE, SIZE), Image.Resampling.LANCZOS)
            image = image.convert("RGB")
    except ImageDownloadError as err:  # refused before decoding: not a picture, or too big
        raise ThumbnailError(err.message) from None
    except Exception as exc:  # Pillow raises many kinds for a file that is not a picture
        raise ThumbnailError(f"not a picture ({type(exc).__name__})") from None
    out = io.BytesIO()
    image.save(out, "JPEG", quality=QUALITY, optimize=True)
    return out.getvalue()


def _write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (no reader ever sees half a thumbnail)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
    try:
        temp.write_bytes(data)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
