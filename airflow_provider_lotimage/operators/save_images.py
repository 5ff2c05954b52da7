"""SaveImagesOperator: copy a finished task's pictures to object storage before the links expire.

LotImage hands out signed CDN links that stop working after about 24 hours, so a pipeline must store
the pictures in the same run. This operator downloads them (bounded in size and time, see
:mod:`airflow_provider_lotimage.images`), writes them to any ``ObjectStoragePath`` with a JSON
sidecar each, and announces the destination as an Airflow Asset.

Decisions, and why:

* **Names** come only from the LotImage taskId and the picture index (``<taskId>_<index>.<ext>``,
  ``.png`` for the PNGs Midjourney produces), never from the prompt: prompts are free user text.
  A taskId with characters outside ``[A-Za-z0-9_-]`` has them replaced and a short hash of the
  original appended, so two different ids cannot collide.
* **Index**: 1..4 are U1..U4 (top-left, top-right, bottom-left, bottom-right); 0 is the whole
  picture at ``image_url`` (the grid, or the single picture of an upscale).
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
* **Asset**: the outlet is fixed at parse time, so a templated destination cannot name it. By
  default it is the destination's non-templated prefix, cut back to the last ``/``
  (``file:///data/{{ ds }}`` -> ``file:///data``); pass ``asset=`` to choose another.
* **Asset events**: Airflow emits one event per successful run of a task with an outlet, also when
  nothing new was stored. We keep that (suppressing it would need an ``AssetAlias`` outlet, so the
  asset would no longer be declared statically, or skipping the task, which also skips its
  downstream tasks) and say in the event's ``extra`` what happened: ``new_count``,
  ``unchanged_count``, ``new_paths``, ``lotimage_task_ids``. A consumer that wants only new
  pictures checks ``new_count``.
"""

from __future__ import annotations

import ast
import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import secrets
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import unquote, urlsplit, urlunsplit

from airflow.sdk import Asset, BaseOperator, ObjectStoragePath

from airflow_provider_lotimage.exceptions import ImageDownloadError, LotImageInputError, StorageError
from airflow_provider_lotimage.images import (
    DEFAULT_MAX_BYTES,
    DEFAULT_TIMEOUT,
    EXPIRED_LINK_STATUSES,
    PICTURE_FORMATS,
    fetch_picture,
    picture_info,
    split_grid,
)
from airflow_provider_lotimage.redaction import redact_url, scrub
from airflow_provider_lotimage.templating import fixed_part
from airflow_provider_lotimage.validation import validate_cutting, validate_task_id

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    import requests
    from airflow.sdk import Context
    from pydantic import JsonValue

DEFAULT_CONN_ID = "lotimage_default"
_UNSAFE_ID_CHARS = re.compile(r"[^A-Za-z0-9_-]")
_MAX_ID_LENGTH = 100
#: Protocols written in place: the local file system, where a rename within a folder is atomic.
LOCAL_PROTOCOLS = frozenset({"", "file", "local"})
#: Object stores: an object appears only once its upload is complete, and there is no rename (only
#: copy plus delete), so each file is written to its final key in one call (see the module doc).
OBJECT_STORE_PROTOCOLS = frozenset(
    {"s3", "s3a", "s3n", "gs", "gcs", "az", "abfs", "abfss", "wasb", "wasbs", "oss", "oci"}
)
#: A temporary name: ``.<stem>.part-<random>`` (picture) or ``.<stem>.json.part-<random>`` (sidecar).
_TEMP_NAME = re.compile(r"^\.(?P<stem>[A-Za-z0-9_-]+)_(?P<index>[0-9]+)(?:\.json)?\.part-[0-9a-f]{12}$")


def safe_task_id(task_id: str) -> str:
    """Return the taskId as a file-name stem: ``[A-Za-z0-9_-]`` only, unique per original id."""
    safe = _UNSAFE_ID_CHARS.sub("_", task_id)[:_MAX_ID_LENGTH]
    if safe != task_id:
        safe += "-" + hashlib.sha256(task_id.encode()).hexdigest()[:10]
    return safe


def _stem(task_id: str, index: int) -> str:
    return f"{safe_task_id(task_id)}_{index}"


def _fixed_directory(destination: str) -> str:
    """Return the directory part of ``destination`` that no template can change (all of it if literal)."""
    fixed = fixed_part(destination)
    return destination if fixed == destination else fixed.rpartition("/")[0]


def asset_for_destination(destination: str | ObjectStoragePath) -> Asset:
    """Derive the outlet Asset from the non-templated prefix of ``destination`` (see module doc)."""
    text = _fixed_directory(str(destination))
    if not urlsplit(text).scheme and text.startswith("/"):
        text = "file://" + text
    parts = urlsplit(text)
    path = parts.path.rstrip("/")
    host = parts.netloc.rpartition("@")[2]  # ObjectStoragePath puts a conn_id in the user part
    if not parts.scheme or not (host or path):
        raise LotImageInputError(
            f"asset: cannot derive an Asset from destination {str(destination)!r} (its fixed part must "
            "be a URL such as s3://bucket/... or file:///dir/...); pass asset=Asset(...)"
        )
    uri = urlunsplit((parts.scheme, host, path, "", ""))
    return Asset(name=uri, uri=uri)


def parse_results(value: Any) -> list[dict[str, Any]]:
    """Turn the ``result`` argument into a validated list of result dicts.

    Accepts a result dict, a list of them, or either as text: JSON, or the Python ``repr`` that a
    Jinja template such as ``"{{ ti.xcom_pull('wait') }}"`` renders (read with ``ast.literal_eval``,
    which evaluates literals only).
    """
    value = _decode_text(value, "result")
    if isinstance(value, Mapping):
        items: list[Any] = [value]
    elif isinstance(value, Iterable) and not isinstance(value, str | bytes):
        items = [_decode_text(item, "result item") for item in value]
    else:
        raise LotImageInputError(
            f"result must be a LotImage result dict or a list of them, got {type(value).__name__}"
        )
    return [_validate_result(item, position) for position, item in enumerate(items)]


def _decode_text(value: Any, what: str) -> Any:
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if not isinstance(value, str):
        return value
    if not value.strip():
        raise LotImageInputError(f"{what} is empty")
    try:
        return json.loads(value)
    except ValueError:
        pass
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise LotImageInputError(
            f"{what} is text that is neither JSON nor a Python literal: {value[:80]!r}"
        ) from None


def _validate_result(item: Any, position: int) -> dict[str, Any]:
    where = f"result[{position}]"
    if not isinstance(item, Mapping):
        raise LotImageInputError(f"{where} must be a dict (a LotImage result), got {type(item).__name__}")
    task_id = validate_task_id(item.get("lotimage_task_id"), name=f"{where}.lotimage_task_id")
    if not _is_http_url(item.get("image_url")):
        raise LotImageInputError(f"{where} (task {task_id}) has no http(s) image_url")
    urls = item.get("image_urls") or []
    if not isinstance(urls, list) or not all(_is_http_url(url) for url in urls):
        raise LotImageInputError(f"{where} (task {task_id}): image_urls must be a list of http(s) URLs")
    progress = item.get("progress", 100)
    if isinstance(progress, int | float) and progress < 100:
        raise LotImageInputError(
            f"{where} (task {task_id}) is not finished (progress {progress}); wait for it first"
        )
    return {**item, "lotimage_task_id": task_id}


def _is_http_url(value: Any) -> bool:
    return isinstance(value, str) and urlsplit(value).scheme.lower() in ("http", "https")


def resolve_destination(destination: Any) -> ObjectStoragePath:
    """Check the rendered ``destination`` and return it as a directory path.

    ``..`` and ``.`` segments are refused outright (also percent-encoded): a templated destination
    fed with ``../..`` must not reach outside the directory the asset names.
    """
    if isinstance(destination, ObjectStoragePath):
        path = destination
    elif isinstance(destination, str) and destination.strip():
        text = destination.strip()
        if not urlsplit(text).scheme:
            if not text.startswith("/"):
                raise LotImageInputError(
                    f"destination {text!r} must be a URL (file:///..., s3://bucket/...) or an absolute path"
                )
            text = "file://" + text
        path = ObjectStoragePath(text)
    else:
        raise LotImageInputError(f"destination must be a non-empty path or URL, got {destination!r}")
    _refuse_dot_segments(str(path))
    return path


def _refuse_dot_segments(text: str) -> None:
    """Refuse ``..`` and ``.`` path segments (also percent-encoded) in a destination."""
    segments = unquote(urlsplit(text).path).split("/")
    if any(segment in ("..", ".") for segment in segments):
        raise LotImageInputError(f"destination {text!r} contains '..' or '.' segments; refusing to leave it")


def _inside(directory: ObjectStoragePath, name: str) -> ObjectStoragePath:
    """``directory / name``, checked to be a direct child (names are sanitised; this is a backstop)."""
    child = directory / name
    if child.name != name or str(child.parent).rstrip("/") != str(directory).rstrip("/"):
        raise LotImageInputError(f"destination: {name!r} would be written outside {str(directory)!r}")
    return child


def _temp_name(name: str) -> str:
    """Return a hidden, unique temporary name for ``name`` in the same folder (see :data:`_TEMP_NAME`)."""
    return f".{name}.part-{secrets.token_hex(6)}"


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


class _Store:
    """Reads and writes the picture/sidecar pairs of one destination directory (see module doc)."""

    def __init__(self, directory: ObjectStoragePath) -> None:
        self.directory = directory
        self.protocol = str(directory.protocol or "").lower()
        self.local: Path | None = Path(directory.path) if self.protocol in LOCAL_PROTOCOLS else None
        self.object_store = self.protocol in OBJECT_STORE_PROTOCOLS
        # ObjectStoragePath.path of an object store is "bucket/key..." (the conn_id is elsewhere).
        self.bucket = str(directory.path).lstrip("/").split("/", 1)[0] if self.object_store else None
        self.shown = redact_url(str(directory))  # no conn_id/credentials in messages
        self._made = False

    # -- reading -------------------------------------------------------------------------------
    def _sidecar(self, stem: str) -> ObjectStoragePath:
        return _inside(self.directory, f"{stem}.json")

    def stored(self, task_id: str, index: int) -> tuple[ObjectStoragePath, dict[str, Any]] | None:
        """Return the picture and its sidecar if the pair is complete (see module doc), else None."""
        stem = _stem(task_id, index)
        try:
            meta = json.loads(self._sidecar(stem).read_text(encoding="utf-8"))
        except (FileNotFoundError, NotADirectoryError, ValueError):
            return None
        if not isinstance(meta, dict):
            return None
        if meta.get("lotimage_task_id") != task_id or meta.get("index") != index:
            return None
        # The sidecar only picks between our own names: it must not steer a read anywhere else.
        allowed = {f"{stem}.{ext}" for ext in PICTURE_FORMATS.values()}
        if meta.get("file") not in allowed:
            return None
        picture = _inside(self.directory, meta["file"])
        try:
            size = picture.size()
        except FileNotFoundError:
            return None
        return (picture, meta) if size == meta.get("bytes") else None

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
            match = _TEMP_NAME.match(name)
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
        stem = _stem(result["lotimage_task_id"], index)
        action = f"write picture {index} of LotImage task {result['lotimage_task_id']} to"
        self._prepare(action)
        if self.local is None:
            data = fetch(None)
            name = f"{stem}.{PICTURE_FORMATS[picture_info(data).format]}"
            self._publish(name, data, action)
            return str(_inside(self.directory, name)), data
        with self._local_temp(stem, action) as (temp, handle):

            def sink(chunk: bytes) -> None:
                with self._errors(action):
                    handle.write(chunk)

            data = fetch(sink)
            name = f"{stem}.{PICTURE_FORMATS[picture_info(data).format]}"
            with self._errors(action):
                handle.flush()
                os.fsync(handle.fileno())
                os.replace(temp, self.local / name)
                _fsync_folder(self.local)
        return str(_inside(self.directory, name)), data

    def write_picture(self, result: Mapping[str, Any], index: int, data: bytes) -> str:
        """Write picture bytes we already hold (a quadrant cut from a grid) atomically."""
        stem = _stem(result["lotimage_task_id"], index)
        action = f"write picture {index} of LotImage task {result['lotimage_task_id']} to"
        self._prepare(action)
        name = f"{stem}.{PICTURE_FORMATS[picture_info(data).format]}"
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
        sidecar = {
            "lotimage_task_id": task_id,
            "originating_task_id": result.get("originating_task_id"),
            "prompt": result.get("prompt"),
            "index": index,
            "file": picture.rpartition("/")[2],
            "source_url": redact_url(source_url),
            "split_from_grid": split,
            "width": info.width,
            "height": info.height,
            "format": info.format,
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "created_at": result.get("created_at"),
            "stored_at": datetime.now(UTC).isoformat(),
        }
        text = json.dumps(sidecar, indent=2, ensure_ascii=False).encode("utf-8")
        self._publish(
            f"{_stem(task_id, index)}.json",
            text,
            f"write the sidecar of picture {index} of LotImage task {task_id} to",
        )

    def _publish(self, name: str, data: bytes, action: str) -> None:
        """Make ``name`` appear with all of ``data`` at once (see the module doc, per protocol)."""
        final = _inside(self.directory, name)
        if self.local is not None:
            with self._local_temp(name, action) as (temp, handle), self._errors(action):
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
                os.replace(temp, self.local / name)
                _fsync_folder(self.local)
        elif self.object_store:
            with self._errors(action):
                final.fs.pipe_file(final.path, data)
        else:
            remote_temp = _inside(self.directory, _temp_name(name))
            try:
                with self._errors(action):
                    remote_temp.write_bytes(data)
                    self.directory.fs.mv(remote_temp.path, final.path)
            finally:
                with contextlib.suppress(OSError):
                    if remote_temp.exists():
                        remote_temp.unlink()

    @contextlib.contextmanager
    def _local_temp(self, name: str, action: str) -> Iterator[tuple[Path, BinaryIO]]:
        """Yield a new, locked temporary file beside ``name``; remove it on the way out unless renamed."""
        assert self.local is not None
        temp = self.local / _temp_name(name)
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


@contextlib.contextmanager
def _download_context(task_id: str, index: int) -> Iterator[None]:
    """Say which picture a download error is about, and for an expired link what to do in Airflow."""
    try:
        yield
    except ImageDownloadError as err:
        message = f"could not store picture {index}: {err.message}"
        if err.http_status in EXPIRED_LINK_STATUSES:
            message += (
                " In Airflow: read the task again for fresh links (clear the TaskProgressSensor that "
                "produced this result together with its downstream tasks, or follow this taskId with "
                "a new TaskProgressSensor), then save again; pictures already stored are kept."
            )
        raise ImageDownloadError(message, http_status=err.http_status, task_id=task_id) from None


class SaveImagesOperator(BaseOperator):
    """Download the pictures of finished LotImage tasks and store them with a JSON sidecar each.

    :param result: a result dict from the sensor/waiting operators, its JSON string, or a list of
        them (templated). Pictures: the four ``image_urls`` (indices 1..4) when the task was
        submitted with cutting; else ``image_url`` (index 0) and, with ``split_grid``, its four
        quadrants cut locally (1..4).
    :param destination: directory for the files, any ``ObjectStoragePath`` URL such as
        ``file:///data/{{ ds }}`` or ``s3://aws_default@bucket/prefix`` (an object store through
        the named Airflow connection) (templated). Local folders are created; buckets never are.
    :param split_grid: also store the quadrants of a grid when the service did not cut it. Ignored
        for upscales (a single picture), recognised by having no ``U1`` button.
    :param lotimage_conn_id: connection whose proxy/TLS settings the downloads use; the API key is
        never sent to the CDN. If the default connection does not exist, a plain session is used.
    :param max_bytes: largest picture accepted, in bytes.
    :param timeout: seconds allowed for each picture's whole download.
    :param asset: the outlet Asset; by default derived from ``destination`` (see module doc).
    :return: the paths of all pictures of the results, newly stored or already there.
    :raises StorageError: the destination cannot be written (see the module doc); not final.
    :raises ImageDownloadError: a picture could not be downloaded (expired link, too large, not a
        picture); the message names the picture and the LotImage task.
    """

    template_fields: Sequence[str] = ("result", "destination")
    ui_color = "#e8f4ea"

    def __init__(
        self,
        *,
        result: Any,
        destination: str | ObjectStoragePath,
        split_grid: bool = False,
        lotimage_conn_id: str = DEFAULT_CONN_ID,
        max_bytes: int = DEFAULT_MAX_BYTES,
        timeout: float = DEFAULT_TIMEOUT,
        asset: Asset | None = None,
        **kwargs: Any,
    ) -> None:
        validate_cutting(split_grid, name="split_grid")
        if isinstance(destination, str) and not destination.strip():
            raise LotImageInputError("destination must not be empty")
        if isinstance(destination, str | ObjectStoragePath):
            _refuse_dot_segments(_fixed_directory(str(destination)))  # the part known at parse time
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0:
            raise LotImageInputError(f"max_bytes must be a positive int, got {max_bytes!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise LotImageInputError(f"timeout must be a positive number of seconds, got {timeout!r}")
        if asset is None:
            if not isinstance(destination, str | ObjectStoragePath):
                raise LotImageInputError("asset: destination is not a string or path; pass asset=Asset(...)")
            asset = asset_for_destination(destination)
        outlets = list(kwargs.pop("outlets", None) or [])
        if asset not in outlets:
            outlets.append(asset)
        super().__init__(outlets=outlets, **kwargs)
        self.result = result
        self.destination = destination
        self.split_grid = split_grid
        self.lotimage_conn_id = lotimage_conn_id
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.asset = asset

    def execute(self, context: Context) -> list[str]:
        """Store every result's pictures, tell the asset event what was new, and return all paths."""
        results = parse_results(self.result)
        store = _Store(resolve_destination(self.destination))
        store.sweep((result["lotimage_task_id"] for result in results), self.log)
        paths: list[str] = []
        new_paths: list[str] = []
        with self._download_session() as session:
            for result in results:
                for path, is_new in self._save_result(session, store, result):
                    if path not in paths:
                        paths.append(path)
                    if is_new:
                        new_paths.append(path)
        unchanged = len(paths) - len(new_paths)
        self.log.info("Stored %d new picture(s); %d were already stored", len(new_paths), unchanged)
        extra: dict[str, JsonValue] = {
            "new_count": len(new_paths),
            "unchanged_count": unchanged,
            "new_paths": list(new_paths),
            "lotimage_task_ids": list(dict.fromkeys(r["lotimage_task_id"] for r in results)),
        }
        context["outlet_events"][self.asset].extra = extra
        return paths

    def _download_session(self) -> requests.Session:
        """Return the hook's download session (proxy/TLS from the connection, never the API key)."""
        import requests
        from airflow.providers.common.compat.sdk import AirflowNotFoundException

        from airflow_provider_lotimage.hooks.lotimage import LotImageHook

        try:
            return LotImageHook(lotimage_conn_id=self.lotimage_conn_id).get_download_session()
        except AirflowNotFoundException:
            # CDN links need no credentials, so a missing *default* connection is not an error; a
            # connection named explicitly but missing is a configuration mistake and stays one.
            if self.lotimage_conn_id != DEFAULT_CONN_ID:
                raise
            self.log.warning(
                "Connection %r not found: downloading without its proxy/TLS settings", DEFAULT_CONN_ID
            )
            return requests.Session()

    def _save_result(
        self, session: requests.Session, store: _Store, result: Mapping[str, Any]
    ) -> list[tuple[str, bool]]:
        """Store one result's pictures; return ``(path, newly_stored)`` for each."""
        task_id = result["lotimage_task_id"]
        urls = result.get("image_urls") or []
        if len(urls) == 4:
            saved = (self._save_url(session, store, result, index, url) for index, url in enumerate(urls, 1))
            return [(path, is_new) for path, is_new, _ in saved]
        if urls:
            self.log.warning("Task %s has %d image_urls, not 4: storing image_url only", task_id, len(urls))
        path, is_new, grid = self._save_url(session, store, result, 0, result["image_url"])
        if not self.split_grid:
            return [(path, is_new)]
        buttons = result.get("buttons") or []
        if buttons and "U1" not in buttons:
            self.log.info("Task %s is a single picture (no U1 button): not splitting it", task_id)
            return [(path, is_new)]
        return [(path, is_new), *self._save_quadrants(session, store, result, grid)]

    def _save_url(
        self, session: requests.Session, store: _Store, result: Mapping[str, Any], index: int, url: str
    ) -> tuple[str, bool, bytes | None]:
        """Store one picture unless already stored; also return the bytes if they were downloaded."""
        found = store.stored(result["lotimage_task_id"], index)
        if found:
            return str(found[0]), False, None

        def fetch(sink: Callable[[bytes], object] | None) -> bytes:
            with _download_context(result["lotimage_task_id"], index):
                return fetch_picture(session, url, max_bytes=self.max_bytes, timeout=self.timeout, sink=sink)

        path, data = store.download(result, index, fetch)
        store.write_sidecar(result, index, data, path, source_url=url, split=False)
        return path, True, data

    def _save_quadrants(
        self, session: requests.Session, store: _Store, result: Mapping[str, Any], grid: bytes | None
    ) -> list[tuple[str, bool]]:
        """Store the missing quadrants, cut from ``grid`` (or the stored grid, or a new download)."""
        task_id = result["lotimage_task_id"]
        found = {index: store.stored(task_id, index) for index in (1, 2, 3, 4)}
        saved: list[tuple[str, bool]] = []
        pictures: list[bytes] = []
        for index, pair in found.items():
            if pair is not None:
                saved.append((str(pair[0]), False))
                continue
            if not pictures:
                if grid is None:
                    grid = self._stored_grid(store, task_id)
                if grid is None:
                    with _download_context(task_id, 0):
                        grid = fetch_picture(
                            session, result["image_url"], max_bytes=self.max_bytes, timeout=self.timeout
                        )
                pictures = split_grid(grid)
            data = pictures[index - 1]
            path = store.write_picture(result, index, data)
            store.write_sidecar(result, index, data, path, source_url=result["image_url"], split=True)
            saved.append((path, True))
        return saved

    def _stored_grid(self, store: _Store, task_id: str) -> bytes | None:
        """Return the stored grid if intact: cutting it needs no download (the link may have expired)."""
        pair = store.stored(task_id, 0)
        if pair is None:
            return None
        data = pair[0].read_bytes()
        if hashlib.sha256(data).hexdigest() == pair[1].get("sha256"):
            return data
        self.log.warning("Stored grid %s does not match its sidecar: downloading it again", pair[0])
        return None
