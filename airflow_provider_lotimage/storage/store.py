"""Where SaveImagesOperator's pictures go: "already stored", and writes nobody sees half-done.

* **Names and sidecars** are :mod:`.layout`'s: ``<taskId>_<index>.<ext>`` beside its
  :class:`~.layout.Sidecar` ``<taskId>_<index>.json``, never a name from the prompt.
* **Idempotency**: the sidecar is written after its picture and serves as the commit marker. A
  picture counts as stored when its sidecar is readable, names it, and its size matches the
  sidecar's ``bytes``; it is then neither downloaded nor rewritten (a rerun may come after the
  links expired). Sizes are compared, not hashes, so a rerun does not read back every picture from
  remote storage. A half-written pair (crash between the two writes) is simply redone.
* **Atomic writes**: no one looking at the destination ever sees a partial picture or sidecar,
  even if the worker is killed mid-download. How depends on the ``ObjectStoragePath`` protocol:

  - local disk (``file://``, a plain path): the download streams into a temporary file in the
    destination folder, ``.<taskId>_<index>.part-<random>`` (hidden, and never matched by the
    "already stored" check), which is verified, flushed to disk (``fsync``) and renamed to its
    final name (``os.replace``, atomic within a folder). The sidecar goes the same way, last. A
    try killed mid-download leaves only such a temporary file; the next try of the task removes
    those of its own pictures (skipping any another live process holds locked) before it writes.
  - object stores (:data:`OBJECT_STORE_PROTOCOLS`: ``s3://``, ``gs://``, ``abfs://``...): an
    object becomes visible only when its upload completes, and a "rename" there is a copy plus a
    delete, so the picture is downloaded and verified in memory, then written to its final key in
    one call (one PUT on S3 up to 100 MiB, a multipart upload completed at once above that). No
    temporary object is ever written, so nothing is left to clean up.
  - any other file system (``sftp://``, ``hdfs://``...): a temporary name in the destination, then
    the file system's own rename (``fs.mv``).

  Local folders are created as needed (a templated ``{{ ds }}`` folder is new every day); buckets
  are never created: a missing bucket fails the task and says so.
* **Storage failures** (not writable, read-only, disk full, a path part that is a file, a missing
  bucket) fail the task with :class:`~airflow_provider_lotimage.exceptions.StorageError`, naming
  the destination, the cause and the fix; the temporary file is removed first. It is not final:
  once the cause is fixed, a retry stores only what is still missing.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from airflow_provider_lotimage.client import metric_names as names
from airflow_provider_lotimage.client.metrics import NO_METRICS, Metrics
from airflow_provider_lotimage.client.redaction import redact_url, scrub
from airflow_provider_lotimage.exceptions import LotImageInputError, StorageError
from airflow_provider_lotimage.storage.images import picture_info
from airflow_provider_lotimage.storage.layout import (
    TEMP_NAME,
    Sidecar,
    picture_name,
    picture_stem,
    safe_task_id,
    sidecar_name,
    temp_name,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from airflow.sdk import ObjectStoragePath


#: Protocols written in place: the local file system, where a rename within a folder is atomic.
LOCAL_PROTOCOLS = frozenset({"", "file", "local"})


#: Object stores: an object appears only once its upload is complete, and there is no rename (only
#: copy plus delete), so each file is written to its final key in one call (see the module doc).
OBJECT_STORE_PROTOCOLS = frozenset(
    {"s3", "s3a", "s3n", "gs", "gcs", "az", "abfs", "abfss", "wasb", "wasbs", "oss", "oci"}
)


def _picture_name(task_id: str, index: int, data: bytes) -> str:
    """Return the picture's name, its extension from what the bytes are (PNG for Midjourney's)."""
    return picture_name(task_id, index, picture_info(data).format)


def _inside(directory: ObjectStoragePath, name: str) -> ObjectStoragePath:
    """``directory / name``, checked to be a direct child (names are sanitised; this is a backstop)."""
    child = directory / name
    if child.name != name or str(child.parent).rstrip("/") != str(directory).rstrip("/"):
        raise LotImageInputError(f"destination: {name!r} would be written outside {str(directory)!r}")
    return child


def _storage_error(exc: OSError, action: str, where: str, *, bucket: str | None) -> StorageError:
    """Say which storage failure ``exc`` is and what to do about it.

    :param action: what was being done, e.g. ``"write picture 2 of LotImage task X to"``.
    :param where: the destination, as shown to the user (no credentials).
    :param bucket: the bucket, for an object store (a missing one is reported as such).
    """
    code = exc.errno
    if code in (errno.ENOSPC, errno.EDQUOT):
        cause = "no space left on the device that holds it (disk full, or a quota reached)"
        fix = "free space there, or choose another destination"
    elif code == errno.EROFS:
        cause = "it is on a read-only file system"
        fix = "mount it read-write, or choose another destination"
    elif isinstance(exc, PermissionError) or code in (errno.EACCES, errno.EPERM):
        cause = "permission denied"
        fix = (
            "give the connection's credentials the right to write objects there (on S3: "
            "s3:PutObject), or choose another destination"
            if bucket is not None
            else "give the user the Airflow workers run as write access to it, or choose another place"
        )
    elif isinstance(exc, NotADirectoryError | FileExistsError) or code in (errno.ENOTDIR, errno.EEXIST):
        cause = "a part of the path is a file, not a folder"
        fix = "move that file away, or choose another destination"
    elif bucket is not None and isinstance(exc, FileNotFoundError):
        cause = f"the bucket {bucket!r} does not exist (or the connection cannot see it)"
        fix = (
            "create the bucket, or fix the destination (SaveImagesOperator creates local folders, "
            "never buckets)"
        )
    else:
        cause = type(exc).__name__
        fix = "fix the destination"
    detail = scrub(exc.strerror if isinstance(exc.strerror, str) and exc.strerror else exc)
    return StorageError(
        f"could not {action} {where}: {cause} ({detail}). To fix: {fix}; then retry the task "
        "(pictures already stored are kept and not downloaded again)."
    )


class PictureStore:
    """Reads and writes the picture/sidecar pairs of one destination directory (see the module doc).

    :param metrics: where each picture stored is counted, with its bytes, once its sidecar is written.
    """

    def __init__(self, directory: ObjectStoragePath, *, metrics: Metrics = NO_METRICS) -> None:
        self.directory = directory
        self.metrics = metrics
        self.protocol = str(directory.protocol or "").lower()
        self.local: Path | None = Path(directory.path) if self.protocol in LOCAL_PROTOCOLS else None
        self.object_store = self.protocol in OBJECT_STORE_PROTOCOLS
        # ObjectStoragePath.path of an object store is "bucket/key..." (the conn_id is elsewhere).
        self.bucket = str(directory.path).lstrip("/").split("/", 1)[0] if self.object_store else None
        self.shown = redact_url(str(directory))  # no conn_id/credentials in messages
        self._made = False

    # -- reading -------------------------------------------------------------------------------
    def stored(self, task_id: str, index: int) -> tuple[ObjectStoragePath, Sidecar] | None:
        """Return the picture and its sidecar if the pair is complete (see the module doc), else None."""
        try:
            raw = _inside(self.directory, sidecar_name(task_id, index)).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None
        sidecar = Sidecar.from_json(raw)
        # The sidecar only picks between our own names: it must not steer a read anywhere else.
        if sidecar is None or not sidecar.names(task_id, index):
            return None
        picture = _inside(self.directory, sidecar.file)
        try:
            size = picture.size()
        except FileNotFoundError:
            return None
        return (picture, sidecar) if size == sidecar.bytes else None

    # -- leftovers of a killed try -------------------------------------------------------------
    def sweep(self, task_ids: Iterable[str], log: Any) -> int:
        """Remove the temporary files an earlier, killed try left for these LotImage tasks.

        Only names of our own pictures (``.<taskId>_<index>...part-...``) are touched. On local disk
        a writer holds a lock on its temporary file, so one still being written by a live process
        (the same result saved twice at once) is skipped. Object stores get no temporary objects.
        Best effort: a failure here is logged, never raised. Returns how many were removed.
        """
        if self.object_store:
            return 0
        ours = {safe_task_id(task_id) for task_id in task_ids}
        removed = 0
        try:
            names = (
                [entry.name for entry in os.scandir(self.local)]
                if self.local is not None
                else [path.name for path in self.directory.iterdir()]
            )
        except (FileNotFoundError, NotADirectoryError):
            return 0  # no folder yet: nothing left over
        except OSError as exc:
            log.warning("Could not list %s to remove temporary files: %s", self.shown, scrub(exc))
            return 0
        for name in names:
            match = TEMP_NAME.match(name)
            if match is None or match.group("stem") not in ours:
                continue
            try:
                if self.local is not None:
                    removed += _remove_unlocked(self.local / name)
                else:
                    _inside(self.directory, name).unlink()
                    removed += 1
            except FileNotFoundError:
                continue
            except OSError as exc:
                log.warning("Could not remove the temporary file %s: %s", name, scrub(exc))
        if removed:
            log.info("Removed %d temporary file(s) a killed earlier try left in %s", removed, self.shown)
        return removed

    # -- writing -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Turn an ``OSError`` of the storage into a :class:`StorageError` that says what to do."""
        try:
            yield
        except OSError as exc:
            raise _storage_error(exc, action, self.shown, bucket=self.bucket) from exc

    def _prepare(self, action: str) -> None:
        """Create the folder once (local disk and other file systems; never a bucket)."""
        if self._made or self.object_store:
            return
        with self._errors(f"create the folder for {action}"):
            if self.local is not None:
                self.local.mkdir(parents=True, exist_ok=True)
            else:
                self.directory.mkdir(parents=True, exist_ok=True)
        self._made = True

    def download(
        self,
        result: Mapping[str, Any],
        index: int,
        fetch: Callable[[Callable[[bytes], object] | None], bytes],
    ) -> tuple[str, bytes]:
        """Download a picture into the destination atomically, then write its sidecar.

        ``fetch(sink)`` downloads and verifies the picture, handing each piece to ``sink`` (or
        none). On local disk the pieces go straight into the temporary file; elsewhere the whole
        picture is in memory before anything is written.
        """
        task_id = result["lotimage_task_id"]
        action = f"write picture {index} of LotImage task {task_id} to"
        self._prepare(action)
        if self.local is None:
            data = fetch(None)
            name = _picture_name(task_id, index, data)
            self._publish(name, data, action)
            return str(_inside(self.directory, name)), data
        with self._local_temp(picture_stem(task_id, index), action) as (temp, handle):

            def sink(chunk: bytes) -> None:
                with self._errors(action):
                    handle.write(chunk)

            data = fetch(sink)
            name = _picture_name(task_id, index, data)
            with self._errors(action):
                self._commit_local(temp, handle, name)
        return str(_inside(self.directory, name)), data

    def write_picture(self, result: Mapping[str, Any], index: int, data: bytes) -> str:
        """Write picture bytes we already hold (a quadrant cut from a grid) atomically."""
        task_id = result["lotimage_task_id"]
        action = f"write picture {index} of LotImage task {task_id} to"
        self._prepare(action)
        name = _picture_name(task_id, index, data)
        self._publish(name, data, action)
        return str(_inside(self.directory, name))

    def write_report(self, name: str, data: bytes) -> str:
        """Write a batch report (:func:`~.layout.report_name`) atomically, as pictures are written."""
        action = f"write the batch report {name} to"
        self._prepare(action)
        self._publish(name, data, action)
        return str(_inside(self.directory, name))

    def write_sidecar(
        self,
        result: Mapping[str, Any],
        index: int,
        data: bytes,
        picture: str,
        *,
        source_url: str,
        split: bool,
    ) -> None:
        """Write the sidecar of a picture already in place: the commit marker, so always last."""
        info = picture_info(data)
        task_id = result["lotimage_task_id"]
        sidecar = Sidecar(
            lotimage_task_id=task_id,
            originating_task_id=result.get("originating_task_id"),
            prompt=result.get("prompt"),
            index=index,
            file=picture.rpartition("/")[2],
            source_url=redact_url(source_url),
            split_from_grid=split,
            width=info.width,
            height=info.height,
            format=info.format,
            bytes=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            created_at=result.get("created_at"),
            stored_at=datetime.now(UTC).isoformat(),
        )
        self._publish(
            sidecar_name(task_id, index),
            sidecar.to_json(),
            f"write the sidecar of picture {index} of LotImage task {task_id} to",
        )
        storage = {names.TAG_STORAGE: self.protocol or "file"}  # the sidecar stores the picture
        self.metrics.incr(names.PICTURES_STORED, tags=storage)
        self.metrics.incr(names.PICTURES_BYTES, len(data), tags=storage)

    def _publish(self, name: str, data: bytes, action: str) -> None:
        """Make ``name`` appear with all of ``data`` at once (see the module doc, per protocol)."""
        final = _inside(self.directory, name)
        if self.local is not None:
            with self._local_temp(name, action) as (temp, handle), self._errors(action):
                handle.write(data)
                self._commit_local(temp, handle, name)
        elif self.object_store:
            with self._errors(action):
                final.fs.pipe_file(final.path, data)
        else:
            remote_temp = _inside(self.directory, temp_name(name))
            try:
                with self._errors(action):
                    remote_temp.write_bytes(data)
                    self.directory.fs.mv(remote_temp.path, final.path)
            finally:
                with contextlib.suppress(OSError):
                    if remote_temp.exists():
                        remote_temp.unlink()

    def _commit_local(self, temp: Path, handle: BinaryIO, name: str) -> None:
        """Give the temporary file its final ``name``: flushed to disk first, the rename made durable."""
        assert self.local is not None
        handle.flush()
        os.fsync(handle.fileno())
        os.replace(temp, self.local / name)
        _fsync_folder(self.local)

    @contextlib.contextmanager
    def _local_temp(self, name: str, action: str) -> Iterator[tuple[Path, BinaryIO]]:
        """Yield a new, locked temporary file beside ``name``; remove it on the way out unless renamed."""
        assert self.local is not None
        temp = self.local / temp_name(name)
        with self._errors(action):
            handle = open(temp, "xb")  # noqa: SIM115 - closed below, after the rename or the failure
        try:
            # Held until closed (or the process dies): a sweeping retry leaves a live writer's file.
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            yield temp, handle
        finally:
            # After a failed write (disk full) closing flushes the rest of the buffer and fails
            # again; the file is removed anyway, and the first error is the one to report.
            with contextlib.suppress(OSError):
                handle.close()
            with contextlib.suppress(FileNotFoundError):  # renamed: nothing to remove
                temp.unlink()


def _remove_unlocked(path: Path) -> int:
    """Remove ``path`` unless a live process holds its lock; return 1 if removed, else 0."""
    with open(path, "rb") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return 0
        path.unlink()
    return 1


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (best effort: not every file system supports it)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
