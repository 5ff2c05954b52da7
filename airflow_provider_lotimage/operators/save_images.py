"""SaveImagesOperator: copy a finished task's pictures to object storage before the links expire.

LotImage hands out signed CDN links that stop working after about 24 hours, so a pipeline must store
the pictures in the same run. This operator downloads them (bounded in size and time, see
:mod:`airflow_provider_lotimage.storage.images`), writes them to any ``ObjectStoragePath`` with a JSON
sidecar each, and announces the destination as an Airflow Asset.

Decisions, and why:

* **Names, idempotency, atomic writes, storage failures**: how pictures and sidecars are named,
  written and committed is :mod:`airflow_provider_lotimage.storage.store`.
* **Expired links renew themselves**: a picture link answering 403/410 (signed CDN links last
  about a day) makes the operator read the task once for fresh links and download again; only
  when the fresh link fails too does the task fail, with the advice to clear it.
* **Asset**: the outlet is fixed at parse time, so a templated destination cannot name it. By
  default it is the destination's non-templated prefix, cut back to the last ``/``
  (``file:///data/{{ ds }}`` -> ``file:///data``); pass ``asset=`` to choose another.
* **Asset events**: Airflow emits one event per successful run of a task with an outlet, also when
  nothing new was stored. We keep that (suppressing it would need an ``AssetAlias`` outlet, so the
  asset would no longer be declared statically, or skipping the task, which also skips its
  downstream tasks) and say in the event's ``extra`` what happened: ``new_count``,
  ``unchanged_count``, ``new_paths``, ``lotimage_task_ids``, and ``destination`` (the rendered
  folder). A consumer that wants only new pictures checks ``new_count``. The gallery serves a
  recorded path only if this event vouches for it (a picture of those tasks, directly in that
  folder): an event with a source task cannot be made through the REST API, an XCom can.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit, urlunsplit

from airflow.sdk import Asset, BaseOperator, ObjectStoragePath

from airflow_provider_lotimage.client.contract import DEFAULT_BASE_URL
from airflow_provider_lotimage.client.validation import require_text, validate_cutting, validate_task_id
from airflow_provider_lotimage.exceptions import ImageDownloadError, LotImageError, LotImageInputError
from airflow_provider_lotimage.keys import (
    EVENT_DESTINATION,
    EVENT_NEW_COUNT,
    EVENT_NEW_PATHS,
    EVENT_TASK_IDS,
    EVENT_UNCHANGED_COUNT,
)
from airflow_provider_lotimage.storage.images import (
    DEFAULT_MAX_BYTES,
    DEFAULT_TIMEOUT,
    EXPIRED_LINK_STATUSES,
    fetch_picture,
    is_public_host,
    split_grid,
)
from airflow_provider_lotimage.storage.layout import QUADRANT_BUTTONS
from airflow_provider_lotimage.storage.store import PictureStore
from airflow_provider_lotimage.utils.failures import fail_fast
from airflow_provider_lotimage.utils.lineage import Stored
from airflow_provider_lotimage.utils.metrics import AirflowMetrics
from airflow_provider_lotimage.utils.templating import fixed_part

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    import requests
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Context
    from pydantic import JsonValue


DEFAULT_CONN_ID = "lotimage_default"


@dataclass
class Saved:
    """What one save stored: every picture's path (new or already there) and which were new."""

    destination: str
    paths: list[str] = field(default_factory=list)
    new_paths: list[str] = field(default_factory=list)

    def add(self, path: str, is_new: bool) -> None:
        """Count ``path`` once, and as new if this save wrote it."""
        if path not in self.paths:
            self.paths.append(path)
        if is_new and path not in self.new_paths:
            self.new_paths.append(path)


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
    which evaluates literals only). A list may also hold lists of them, one level deep: a task's
    result beside a mapped task's results (``[grid.output, upscale.output]``).
    """
    value = _decode_text(value, "result")
    if isinstance(value, Mapping):
        items: list[Any] = [value]
    elif _is_list(value):
        items = [decoded for item in value for decoded in _flat(_decode_text(item, "result item"))]
    else:
        raise LotImageInputError(
            f"result must be a LotImage result dict or a list of them, got {type(value).__name__}"
        )
    return [_validate_result(item, position) for position, item in enumerate(items)]


def _is_list(value: Any) -> bool:
    return isinstance(value, Iterable) and not isinstance(value, str | bytes | Mapping)


def _flat(item: Any) -> list[Any]:
    """Return a list item's results: itself, or the items of a list it holds (one level)."""
    return [_decode_text(inner, "result item") for inner in item] if _is_list(item) else [item]


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
    fed with ``../..`` must not reach outside the directory the asset names. So are control
    characters and lone surrogates (:func:`_refuse_unprintable`).
    """
    if isinstance(destination, ObjectStoragePath):
        path = destination
    elif isinstance(destination, str) and destination.strip():
        text = _refuse_unprintable(destination.strip())
        if not urlsplit(text).scheme:
            if not text.startswith("/"):
                raise LotImageInputError(
                    f"destination {text!r} must be a URL (file:///..., s3://bucket/...) or an absolute path"
                )
            text = "file://" + text
        path = ObjectStoragePath(text)
    else:
        raise LotImageInputError(f"destination must be a non-empty path or URL, got {destination!r}")
    _refuse_dot_segments(_refuse_unprintable(str(path)))
    return path


def _refuse_unprintable(text: str) -> str:
    """Refuse a destination holding a control character or a lone surrogate.

    A NUL makes the file system raise a bare ``ValueError`` (retried by Airflow, to the same end),
    and a newline or a surrogate in a path is a rendering or decoding mistake, not a folder name.
    """
    return require_text(text, name="destination")


def _refuse_dot_segments(text: str) -> None:
    """Refuse ``..`` and ``.`` path segments (also percent-encoded) in a destination."""
    segments = unquote(urlsplit(text).path).split("/")
    if any(segment in ("..", ".") for segment in segments):
        raise LotImageInputError(f"destination {text!r} contains '..' or '.' segments; refusing to leave it")


@contextlib.contextmanager
def _download_context(task_id: str, index: int) -> Iterator[None]:
    """Say which picture a download error is about, and for an expired link what to do in Airflow."""
    try:
        yield
    except ImageDownloadError as err:
        message = f"could not store picture {index}: {err.message}"
        if err.http_status in EXPIRED_LINK_STATUSES:
            message += (
                " The fresh link read from LotImage failed too (or could not be read). In Airflow: "
                "clear the task that produced this result together with its downstream tasks (it "
                "reconnects to the paid task), then save again; pictures already stored are kept."
            )
        raise ImageDownloadError(message, http_status=err.http_status, task_id=task_id) from None


def _url_of(result: Mapping[str, Any], index: int) -> str | None:
    """Return the link of picture ``index`` of a result: 0 the grid, 1..4 its cut pictures."""
    urls = result.get("image_urls") or []
    if index == 0:
        return result.get("image_url")
    return urls[index - 1] if len(urls) == 4 else None


@dataclass
class Downloads:
    """One save's picture downloads: bounded in size and time, and an expired link renewed once.

    ``read_task`` reads a task's current result (``task/progress`` answers with fresh links, as the
    contract says); each task is read at most once. ``None`` (no connection): nothing is renewed.
    """

    session: requests.Session
    max_bytes: int
    timeout: float
    private_redirects: bool
    read_task: Callable[[str], Mapping[str, Any]] | None
    log: Any
    renewed: dict[str, Mapping[str, Any] | None] = field(default_factory=dict)

    def fetch(
        self,
        result: Mapping[str, Any],
        index: int,
        used: list[str],
        sink: Callable[[bytes], object] | None = None,
    ) -> bytes:
        """Download picture ``index`` from ``used[-1]``; on an expired link, once from a fresh one.

        An expired link is answered before any byte of a picture, so ``sink`` has received nothing
        when the fresh link is tried; the link finally used is appended to ``used``.
        """
        task_id = result["lotimage_task_id"]
        with _download_context(task_id, index):
            try:
                return self._download(used[-1], sink)
            except ImageDownloadError as err:
                fresh = self._fresh_url(err, result, index)
                if fresh is None:
                    raise
                self.log.info(
                    "Picture %d of LotImage task %s: its link expired (HTTP %s); downloading it "
                    "from a fresh link",
                    index,
                    task_id,
                    err.http_status,
                )
                used.append(fresh)
                return self._download(fresh, sink)

    def _download(self, url: str, sink: Callable[[bytes], object] | None) -> bytes:
        return fetch_picture(
            self.session,
            url,
            max_bytes=self.max_bytes,
            timeout=self.timeout,
            sink=sink,
            private_redirects=self.private_redirects,
        )

    def _fresh_url(self, err: ImageDownloadError, result: Mapping[str, Any], index: int) -> str | None:
        """Return a fresh link for an expired one, reading the task at most once; else ``None``."""
        task_id = result["lotimage_task_id"]
        if err.http_status not in EXPIRED_LINK_STATUSES or self.read_task is None:
            return None
        if task_id not in self.renewed:
            self.renewed[task_id] = None
            try:
                self.renewed[task_id] = self.read_task(task_id)
            except LotImageError as read_error:
                self.log.warning("Could not read LotImage task %s for fresh links: %s", task_id, read_error)
        fresh = self.renewed[task_id]
        url = _url_of(fresh, index) if fresh is not None else None
        return url if _is_http_url(url) else None


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
            _refuse_unprintable(str(destination))  # no template renders a literal NUL away
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
        self._private_redirects = False
        #: Reads a task's current result, for fresh links (the connection's hook); None: no connection.
        self._read_task: Callable[[str], Mapping[str, Any]] | None = None
        self._api_url = DEFAULT_BASE_URL
        #: What this try stored, for OpenLineage (``get_openlineage_facets_on_complete``).
        self._lineage: Stored | None = None

    def execute(self, context: Context) -> list[str]:
        """Store every result's pictures, tell the asset event what was new, and return all paths."""
        with fail_fast(resubmits=False):  # bad input: no Airflow retry can fix it
            results = parse_results(self.result)
        return self.store_results(context, results).paths

    def store_results(self, context: Context, results: list[dict[str, Any]]) -> Saved:
        """Store the pictures of validated ``results`` and tell the asset event what was new."""
        with fail_fast(resubmits=False):
            destination = resolve_destination(self.destination)
        store = PictureStore(destination, metrics=AirflowMetrics())
        store.sweep((result["lotimage_task_id"] for result in results), self.log)
        saved = Saved(str(store.directory))
        with self._download_session() as session:
            downloads = Downloads(
                session, self.max_bytes, self.timeout, self._private_redirects, self._read_task, self.log
            )
            for result in results:
                for path, is_new in self._save_result(downloads, store, result):
                    saved.add(path, is_new)
        unchanged = len(saved.paths) - len(saved.new_paths)
        self.log.info("Stored %d new picture(s); %d were already stored", len(saved.new_paths), unchanged)
        extra: dict[str, JsonValue] = {
            EVENT_NEW_COUNT: len(saved.new_paths),
            EVENT_UNCHANGED_COUNT: unchanged,
            EVENT_NEW_PATHS: list(saved.new_paths),
            EVENT_TASK_IDS: list(dict.fromkeys(r["lotimage_task_id"] for r in results)),
            EVENT_DESTINATION: saved.destination,
        }
        context["outlet_events"][self.asset].extra = extra
        self._lineage = Stored.of(self._api_url, results, saved.paths)
        return saved

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage | None:
        """OpenLineage: every picture and sidecar stored, from which LotImage tasks (utils/lineage)."""
        return self._lineage.lineage() if self._lineage is not None else None

    def _download_session(self) -> requests.Session:
        """Return the hook's download session (proxy/TLS from the connection, never the API key)."""
        import requests
        from airflow.providers.common.compat.sdk import AirflowNotFoundException

        from airflow_provider_lotimage.hooks.lotimage import LotImageHook

        try:
            hook = LotImageHook(lotimage_conn_id=self.lotimage_conn_id)
            session = hook.get_download_session()
            self._read_task = lambda task_id: hook.get_task_progress(task_id).to_result()
            # Redirects into a private network only where LotImage itself is (the emulator).
            self._private_redirects = not is_public_host(urlsplit(hook.settings.base_url).hostname)
            self._api_url = hook.settings.base_url
            return session
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
        self, downloads: Downloads, store: PictureStore, result: Mapping[str, Any]
    ) -> list[tuple[str, bool]]:
        """Store one result's pictures; return ``(path, newly_stored)`` for each."""
        task_id = result["lotimage_task_id"]
        urls = result.get("image_urls") or []
        if len(urls) == 4:
            saved = (
                self._save_url(downloads, store, result, index, url) for index, url in enumerate(urls, 1)
            )
            return [(path, is_new) for path, is_new, _ in saved]
        if urls:
            self.log.warning("Task %s has %d image_urls, not 4: storing image_url only", task_id, len(urls))
        path, is_new, grid = self._save_url(downloads, store, result, 0, result["image_url"])
        if not self.split_grid:
            return [(path, is_new)]
        buttons = result.get("buttons") or []
        if buttons and QUADRANT_BUTTONS[1] not in buttons:
            self.log.info("Task %s is a single picture (no U1 button): not splitting it", task_id)
            return [(path, is_new)]
        return [(path, is_new), *self._save_quadrants(downloads, store, result, grid)]

    def _save_url(
        self, downloads: Downloads, store: PictureStore, result: Mapping[str, Any], index: int, url: str
    ) -> tuple[str, bool, bytes | None]:
        """Store one picture unless already stored; also return the bytes if they were downloaded."""
        found = store.stored(result["lotimage_task_id"], index)
        if found:
            return str(found[0]), False, None
        used = [url]

        def fetch(sink: Callable[[bytes], object] | None) -> bytes:
            return downloads.fetch(result, index, used, sink)

        path, data = store.download(result, index, fetch)
        store.write_sidecar(result, index, data, path, source_url=used[-1], split=False)
        return path, True, data

    def _save_quadrants(
        self, downloads: Downloads, store: PictureStore, result: Mapping[str, Any], grid: bytes | None
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
                    grid = downloads.fetch(result, 0, [result["image_url"]])
                pictures = split_grid(grid)
            data = pictures[index - 1]
            path = store.write_picture(result, index, data)
            store.write_sidecar(result, index, data, path, source_url=result["image_url"], split=True)
            saved.append((path, True))
        return saved

    def _stored_grid(self, store: PictureStore, task_id: str) -> bytes | None:
        """Return the stored grid if intact: cutting it needs no download (the link may have expired)."""
        pair = store.stored(task_id, 0)
        if pair is None:
            return None
        data = pair[0].read_bytes()
        if hashlib.sha256(data).hexdigest() == pair[1].sha256:
            return data
        self.log.warning("Stored grid %s does not match its sidecar: downloading it again", pair[0])
        return None
