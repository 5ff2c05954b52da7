"""Reading a stored file for the gallery: once, bounded, and never through a symbolic link.

Whoever can write into a destination folder (a DAG author, a worker, a shared volume) must not be
able to make the api-server read anything else for them: a sidecar or a picture swapped for a
symlink to ``/proc/self/environ`` or a secrets file is refused, not resolved. So a file is read:

* on local disk, by walking its absolute path from ``/`` one component at a time, each opened
  relative to the one before (``openat``) with ``O_NOFOLLOW``: a symlink anywhere in the path is
  refused, and nothing can be swapped between a check and the read. The file must be a regular
  file (a FIFO or a device is refused before a byte is read);
* on an object store (:data:`~airflow_provider_lotimage.storage.store.OBJECT_STORE_PROTOCOLS`),
  which has no symlinks, through its ``ObjectStoragePath`` (the connection in the path);
* on any other file system (``sftp://``, ``hdfs://``...): never. Those can hold symlinks that
  fsspec resolves without a way to refuse them.

At most ``limit`` bytes are read, a bigger file is refused. The caller checks the bytes and serves
those same bytes: the gallery never reads a path a second time to answer.
"""

from __future__ import annotations

import errno
import logging
import os
import stat

from airflow_provider_lotimage.storage.store import LOCAL_PROTOCOLS, OBJECT_STORE_PROTOCOLS

log = logging.getLogger(__name__)

_CHUNK = 1024 * 1024
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused right after, by fstat).
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class Unreadable(Exception):
    """The gallery will not read this file (missing, a symlink, too big, or not storage it serves)."""


def where(path: str) -> tuple[str, str] | None:
    """Return ``("local", os_path)`` or ``("object", path)`` for a path the gallery may read, else None."""
    from airflow.sdk import ObjectStoragePath

    try:
        parsed = ObjectStoragePath(path)
    except Exception:  # an unknown protocol, a malformed URL: nothing the gallery reads
        return None
    protocol = str(parsed.protocol or "").lower()
    if protocol in LOCAL_PROTOCOLS:
        return "local", str(parsed.path)
    if protocol in OBJECT_STORE_PROTOCOLS:
        return "object", path
    return None


def read(path: str, limit: int) -> bytes:
    """Return the bytes of ``path`` (see the module doc), or raise :class:`Unreadable`."""
    found = where(path)
    if found is None:
        raise Unreadable("the gallery reads only local disk and object stores")
    kind, location = found
    if kind == "local":
        return read_local(location, limit)
    return _read_object(location, limit)


def read_local(path: str, limit: int) -> bytes:
    """Read the absolute ``path`` on local disk, refusing a symlink in any of its components."""
    if not path.startswith("/"):
        raise Unreadable("not an absolute path")
    return read_below("/", path[1:].split("/"), limit)


def read_below(root: str, parts: list[str], limit: int) -> bytes:
    """Read ``root/parts...`` without following a symlink in ``parts``.

    ``root`` itself is opened as it is: for stored files it is ``/``, so no component is trusted;
    for a thumbnail it is the gallery's own folder, which an administrator may have made a link.
    """
    shown = os.path.join(root, *parts)
    if not parts or {"", ".", ".."} & set(parts):
        raise Unreadable("not a plain path")
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise _unreadable(exc, shown) from None
    try:
        for number, part in enumerate(parts, 1):
            child = os.open(part, _FILE if number == len(parts) else _DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        return _read_fd(fd, limit)
    except OSError as exc:
        raise _unreadable(exc, shown) from None
    finally:
        os.close(fd)


def _read_fd(fd: int, limit: int) -> bytes:
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise Unreadable("not a regular file")
    if info.st_size > limit:
        raise Unreadable(f"larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = os.read(fd, min(_CHUNK, limit + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:  # it grew while being read
        raise Unreadable(f"larger than {limit} bytes")
    return b"".join(chunks)


def _unreadable(exc: OSError, path: str) -> Unreadable:
    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
        # O_NOFOLLOW met a symlink (ELOOP for the file, ENOTDIR or ELOOP for a folder): say so
        # where the deployment's operators look, since someone may have planted it.
        log.warning("LotImage gallery: refused %s: a symbolic link (or a file) in its path", path)
        return Unreadable("a symbolic link in the path")
    return Unreadable(type(exc).__name__)


def _read_object(path: str, limit: int) -> bytes:
    from airflow.sdk import ObjectStoragePath

    try:
        with ObjectStoragePath(path).open("rb") as handle:
            data = handle.read(limit + 1)
    except Exception as exc:  # the store's client raises its own kinds (missing connection, 403...)
        raise Unreadable(type(exc).__name__) from None
    if len(data) > limit:
        raise Unreadable(f"larger than {limit} bytes")
    return bytes(data)
