"""Thumbnails: made once with Pillow, kept in ``[lotimage] gallery_thumbnail_folder``.

The cache key is the picture's SHA-256 from its sidecar, so a thumbnail is never stale (the same
bytes give the same thumbnail, wherever they are stored) and two runs storing the same picture
share one. The picture is read only when its thumbnail is missing, and checked against that hash
first: a picture changed behind its sidecar gets no thumbnail. Writes are atomic (a temporary file
renamed into place), and a per-key lock makes concurrent requests for a new thumbnail read the
picture once.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import secrets
import threading
import warnings
from pathlib import Path

from airflow_provider_lotimage.gallery import settings
from airflow_provider_lotimage.gallery.index import Picture
from airflow_provider_lotimage.images import MAX_PIXELS, PICTURE_FORMATS

#: Longest side, in pixels: sharp at about 190 CSS pixels on a 2x screen.
SIZE = 384
QUALITY = 82
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


class ThumbnailError(Exception):
    """The picture cannot be made into a thumbnail (missing, changed, or not a picture)."""


def _lock(key: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(key, threading.Lock())


def cache_path(picture: Picture) -> Path:
    """Where the thumbnail of ``picture`` is (or will be) kept."""
    digest = str(picture.meta.get("sha256", ""))
    if not _SHA256.match(digest):
        raise ThumbnailError("the sidecar has no SHA-256")
    return settings.thumbnail_folder() / digest[:2] / f"{digest}-{SIZE}.jpg"


def thumbnail(picture: Picture) -> Path:
    """Return the thumbnail file of ``picture``, made now if it is not cached yet."""
    path = cache_path(picture)
    if path.is_file():
        return path
    with _lock(path.name):
        if not path.is_file():
            _write(path, make(read_verified(picture)))
    return path


def read_verified(picture: Picture) -> bytes:
    """Read the picture, checked against the size and SHA-256 its sidecar recorded."""
    from airflow.sdk import ObjectStoragePath

    try:
        data = ObjectStoragePath(picture.path).read_bytes()
    except OSError as exc:
        raise ThumbnailError(f"cannot read the picture ({type(exc).__name__})") from None
    digest = hashlib.sha256(data).hexdigest()
    if len(data) != picture.meta.get("bytes") or digest != picture.meta.get("sha256"):
        raise ThumbnailError("the picture does not match its sidecar")
    return data


def make(data: bytes) -> bytes:
    """Make a JPEG of at most :data:`SIZE` pixels a side (decompression bombs refused)."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(data), formats=list(PICTURE_FORMATS))
            if opened.width * opened.height > MAX_PIXELS:
                raise ThumbnailError("too many pixels")
            opened.draft("RGB", (SIZE, SIZE))  # JPEG: decode at a reduced scale
            image = opened.convert("RGB")
            image.thumbnail((SIZE, SIZE), Image.Resampling.LANCZOS)
    except ThumbnailError:
        raise
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
