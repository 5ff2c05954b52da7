"""SaveImagesOperator against a loopback picture server and a real ``file://`` ObjectStoragePath.

Operator logic is driven through ``execute()`` with a real ``OutletEventAccessors``; one test runs
the operator inside a DAG with ``dag.test()`` (needs the metadata DB, created once per module).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from airflow_provider_lotimage.client.contract import GRID_BUTTONS, UPSCALED_BUTTONS
from airflow_provider_lotimage.exceptions import ImageDownloadError, LotImageInputError
from airflow_provider_lotimage.operators.save_images import SaveImagesOperator, asset_for_destination
from airflow_provider_lotimage.storage.layout import safe_task_id
from tests.dag_helpers import register_dag
from tests.storage.test_images import QUADRANT_COLOURS, PictureServer, make_grid, make_png, picture_server

__all__ = ["picture_server"]  # a fixture: importing it makes it available here

TASK_ID = "0o2f4ja2a1-6b1c-4f7e-9a55-3c1f2e7a9b10"
CONN = json.dumps({"conn_type": "lotimage", "host": "http://127.0.0.1:1", "password": "k"})


@pytest.fixture
def server(picture_server: PictureServer) -> PictureServer:
    picture_server.routes.clear()
    picture_server.hits.clear()
    return picture_server


@pytest.fixture(autouse=True)
def lotimage_conn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_LOTIMAGE_DEFAULT", CONN)


def grid_path(task_id: str = TASK_ID) -> str:
    """The server path of a task's grid (hashed: a hostile taskId must not shape the URL)."""
    return f"/grid/{hashlib.sha256(task_id.encode()).hexdigest()[:16]}.png"


def grid_result(server: PictureServer, task_id: str = TASK_ID, **extra: Any) -> dict[str, Any]:
    url = server.serve(grid_path(task_id), make_grid(64, 48))
    return {
        "lotimage_task_id": task_id,
        "prompt": "An owl with cat ears hanging on a tree 🦉 über",
        "image_url": url + "?ex=66b2&hm=SECRETSIGNATURE",
        "image_urls": [],
        "progress": 100,
        "buttons": list(GRID_BUTTONS),
        "created_at": "2023-08-01T14:03:01.817Z",
        "originating_task_id": None,
        **extra,
    }


def cut_result(server: PictureServer, task_id: str = TASK_ID) -> dict[str, Any]:
    urls = [
        server.serve(f"/cut/{n}.png", make_png(20 + n, 10, colour))
        for n, colour in enumerate(QUADRANT_COLOURS, 1)
    ]
    return grid_result(server, task_id, image_urls=[u + "?hm=SECRET" for u in urls])


def run(op: SaveImagesOperator) -> tuple[list[str], dict[str, Any]]:
    """Execute the operator; return its paths and the extra of its asset event."""
    from airflow.sdk.execution_time.context import OutletEventAccessors

    events = OutletEventAccessors()
    paths = op.execute({"outlet_events": events})  # type: ignore[arg-type]
    return paths, dict(events[op.asset].extra)


@contextlib.contextmanager
def refused_input(message: str) -> Iterator[None]:
    """Bad input is refused: at construction with ``LotImageInputError``, or in ``execute`` with
    ``AirflowFailException`` (no Airflow retry) caused by one."""
    from airflow.providers.common.compat.sdk import AirflowFailException

    with pytest.raises((LotImageInputError, AirflowFailException), match=message) as info:
        yield
    error = info.value
    assert isinstance(error, LotImageInputError) or isinstance(error.__cause__, LotImageInputError)


def save_op(result: Any, destination: Any, **kwargs: Any) -> SaveImagesOperator:
    return SaveImagesOperator(task_id="save", result=result, destination=destination, **kwargs)


def snapshot(directory: Path) -> dict[str, tuple[int, bytes]]:
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(directory.iterdir())}


def colour_of(path: Path) -> tuple[int, int, int]:
    with Image.open(path) as image:
        return image.convert("RGB").getpixel((0, 0))


# --- what gets stored ------------------------------------------------------------------------


def test_grid_is_stored_with_its_sidecar(server: PictureServer, tmp_path: Path) -> None:
    result = grid_result(server)
    paths, extra = run(save_op(result, f"file://{tmp_path}"))

    picture = tmp_path / f"{TASK_ID}_0.png"
    assert paths == [f"file://{picture}"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{TASK_ID}_0.json", f"{TASK_ID}_0.png"]
    data = picture.read_bytes()
    assert data == make_grid(64, 48)
    meta = json.loads((tmp_path / f"{TASK_ID}_0.json").read_text())
    stored_at = datetime.fromisoformat(meta.pop("stored_at"))
    assert stored_at.utcoffset() is not None and stored_at.utcoffset().total_seconds() == 0
    assert meta == {
        "lotimage_task_id": TASK_ID,
        "originating_task_id": None,
        "prompt": "An owl with cat ears hanging on a tree 🦉 über",
        "index": 0,
        "file": f"{TASK_ID}_0.png",
        "source_url": server.url(grid_path()),  # query string (signature) stripped
        "split_from_grid": False,
        "width": 64,
        "height": 48,
        "format": "PNG",
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "created_at": "2023-08-01T14:03:01.817Z",
    }
    assert extra == {
        "new_count": 1,
        "unchanged_count": 0,
        "new_paths": paths,
        "lotimage_task_ids": [TASK_ID],
        "destination": f"file://{tmp_path}",  # where the paths are: the gallery serves only those
    }


def test_cut_task_stores_the_four_service_pictures(server: PictureServer, tmp_path: Path) -> None:
    paths, _ = run(save_op(cut_result(server), f"file://{tmp_path}", split_grid=True))

    assert paths == [f"file://{tmp_path}/{TASK_ID}_{n}.png" for n in (1, 2, 3, 4)]
    assert server.hits[grid_path()] == 0  # image_urls win; the grid is not fetched
    for n, colour in enumerate(QUADRANT_COLOURS, 1):
        assert colour_of(tmp_path / f"{TASK_ID}_{n}.png") == colour
        meta = json.loads((tmp_path / f"{TASK_ID}_{n}.json").read_text())
        assert (meta["index"], meta["width"], meta["split_from_grid"]) == (n, 20 + n, False)
        assert meta["source_url"] == server.url(f"/cut/{n}.png")


def test_split_grid_stores_grid_and_quadrants_from_one_download(
    server: PictureServer, tmp_path: Path
) -> None:
    paths, extra = run(save_op(grid_result(server), f"file://{tmp_path}", split_grid=True))

    assert [Path(p).name for p in paths] == [f"{TASK_ID}_{n}.png" for n in range(5)]
    assert server.hits[grid_path()] == 1
    assert [colour_of(tmp_path / f"{TASK_ID}_{n}.png") for n in (1, 2, 3, 4)] == list(QUADRANT_COLOURS)
    meta = json.loads((tmp_path / f"{TASK_ID}_4.json").read_text())
    assert (meta["width"], meta["height"], meta["split_from_grid"]) == (32, 24, True)
    assert meta["sha256"] == hashlib.sha256((tmp_path / f"{TASK_ID}_4.png").read_bytes()).hexdigest()
    assert extra["new_count"] == 5


def test_upscale_is_not_split(server: PictureServer, tmp_path: Path) -> None:
    result = grid_result(server, "up-1", buttons=list(UPSCALED_BUTTONS), originating_task_id=TASK_ID)
    paths, _ = run(save_op(result, f"file://{tmp_path}", split_grid=True))

    assert [Path(p).name for p in paths] == ["up-1_0.png"]
    assert json.loads((tmp_path / "up-1_0.json").read_text())["originating_task_id"] == TASK_ID


@pytest.mark.parametrize("form", ["list", "json", "python-repr"])
def test_several_results_in_one_task(server: PictureServer, tmp_path: Path, form: str) -> None:
    results = [grid_result(server, "task-a"), grid_result(server, "task-b")]
    value: Any = {"list": results, "json": json.dumps(results), "python-repr": repr(results)}[form]
    paths, extra = run(save_op(value, f"file://{tmp_path}"))

    assert [Path(p).name for p in paths] == ["task-a_0.png", "task-b_0.png"]
    assert extra["lotimage_task_ids"] == ["task-a", "task-b"]


def test_object_storage_path_destination(server: PictureServer, tmp_path: Path) -> None:
    from airflow.sdk import ObjectStoragePath

    target = ObjectStoragePath(f"file://{tmp_path}/nested/dir")
    paths, _ = run(save_op(grid_result(server), target))

    assert (tmp_path / "nested" / "dir" / f"{TASK_ID}_0.png").is_file()
    assert ObjectStoragePath(paths[0]).read_bytes() == make_grid(64, 48)


def test_absolute_local_path_destination(server: PictureServer, tmp_path: Path) -> None:
    paths, _ = run(save_op(grid_result(server), str(tmp_path)))
    assert paths == [f"file://{tmp_path}/{TASK_ID}_0.png"]


# --- idempotency ------------------------------------------------------------------------------


def test_rerun_neither_downloads_nor_rewrites(server: PictureServer, tmp_path: Path) -> None:
    result = grid_result(server)
    first, _ = run(save_op(result, f"file://{tmp_path}", split_grid=True))
    before = snapshot(tmp_path)
    # By the rerun the signed link has expired: it must not be needed.
    server.serve(grid_path(), b"Forbidden", status=403, content_type="text/plain")

    second, extra = run(save_op(result, f"file://{tmp_path}", split_grid=True))

    assert second == first
    assert server.hits[grid_path()] == 1
    assert snapshot(tmp_path) == before
    assert extra == {
        "new_count": 0,
        "unchanged_count": 5,
        "new_paths": [],
        "lotimage_task_ids": [TASK_ID],
        "destination": f"file://{tmp_path}",
    }


def test_missing_quadrant_is_cut_from_the_stored_grid(server: PictureServer, tmp_path: Path) -> None:
    result = grid_result(server)
    run(save_op(result, f"file://{tmp_path}", split_grid=True))
    (tmp_path / f"{TASK_ID}_3.png").unlink()
    before = snapshot(tmp_path)
    server.serve(grid_path(), b"Forbidden", status=403, content_type="text/plain")

    _, extra = run(save_op(result, f"file://{tmp_path}", split_grid=True))

    assert server.hits[grid_path()] == 1  # no new download: the stored grid was cut
    assert colour_of(tmp_path / f"{TASK_ID}_3.png") == QUADRANT_COLOURS[2]
    after = snapshot(tmp_path)
    assert {k: v for k, v in after.items() if "_3." not in k} == {
        k: v for k, v in before.items() if "_3." not in k
    }
    assert extra["new_count"] == 1 and extra["new_paths"] == [f"file://{tmp_path}/{TASK_ID}_3.png"]


def test_picture_without_sidecar_is_redone(server: PictureServer, tmp_path: Path) -> None:
    (tmp_path / f"{TASK_ID}_0.png").write_bytes(b"half a pict")  # crash before the sidecar
    _, extra = run(save_op(grid_result(server), f"file://{tmp_path}"))

    assert server.hits[grid_path()] == 1
    assert (tmp_path / f"{TASK_ID}_0.png").read_bytes() == make_grid(64, 48)
    assert (tmp_path / f"{TASK_ID}_0.json").is_file()
    assert extra["new_count"] == 1


def test_sidecar_that_does_not_match_its_picture_is_redone(server: PictureServer, tmp_path: Path) -> None:
    run(save_op(grid_result(server), f"file://{tmp_path}"))
    (tmp_path / f"{TASK_ID}_0.png").write_bytes(b"tampered")
    run(save_op(grid_result(server), f"file://{tmp_path}"))

    assert server.hits[grid_path()] == 2
    assert (tmp_path / f"{TASK_ID}_0.png").read_bytes() == make_grid(64, 48)


def test_expired_link_fails_the_task_with_advice(server: PictureServer, tmp_path: Path) -> None:
    result = grid_result(server)
    server.serve(grid_path(), b"Forbidden", status=403, content_type="text/plain")
    with pytest.raises(ImageDownloadError, match="expired") as info:
        run(save_op(result, f"file://{tmp_path}"))
    assert "SECRETSIGNATURE" not in str(info.value)


# --- names and paths --------------------------------------------------------------------------


def test_task_id_cannot_steer_the_path(server: PictureServer, tmp_path: Path) -> None:
    target = tmp_path / "out"
    paths, _ = run(save_op(grid_result(server, "../../evil/x"), f"file://{target}"))

    stem = safe_task_id("../../evil/x")
    assert stem.startswith("______evil_x-")
    assert paths == [f"file://{target}/{stem}_0.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_safe_task_id_keeps_normal_ids_and_separates_others() -> None:
    assert safe_task_id(TASK_ID) == TASK_ID
    assert safe_task_id("a.b") != safe_task_id("a_b")
    assert len(safe_task_id("x" * 500)) <= 111


@pytest.mark.parametrize(
    "destination",
    ["file:///tmp/pictures/../../etc", "/tmp/pictures/%2e%2e/etc", "file:///tmp/./x", "relative/dir"],
)
def test_destination_escape_is_refused_before_download(
    server: PictureServer, tmp_path: Path, destination: str
) -> None:
    with refused_input("destination"):  # at construction, or at the latest in execute
        run(save_op(grid_result(server), destination, asset=asset_for_destination(f"file://{tmp_path}")))
    assert sum(server.hits.values()) == 0


# --- validation -------------------------------------------------------------------------------


GOOD = {"lotimage_task_id": "t1", "image_url": "http://127.0.0.1:9/a.png"}


@pytest.mark.parametrize(
    ("result", "message"),
    [
        ({"image_url": "http://x/a.png"}, r"result\[0\]\.lotimage_task_id"),
        ({"lotimage_task_id": "  ", "image_url": "http://x/a.png"}, "lotimage_task_id"),
        ({"lotimage_task_id": "t"}, r"result\[0\].*image_url"),
        ({"lotimage_task_id": "t", "image_url": "file:///etc/passwd"}, "image_url"),
        ({**GOOD, "image_urls": "http://x/a.png"}, "image_urls"),
        ({**GOOD, "progress": 45}, "not finished"),
        (42, "result must be"),
        ("", "result is empty"),
        ("None", "result must be"),
        ("not json {", "neither JSON"),
        ([GOOD, "[1, 2]"], r"result\[1\] must be a dict"),
        ([GOOD, {"lotimage_task_id": "t2"}], r"result\[1\]"),
    ],
)
def test_bad_result_is_refused_before_any_download(
    server: PictureServer, tmp_path: Path, result: Any, message: str
) -> None:
    served = grid_result(server)  # valid and reachable: still not fetched while another item is bad
    value = [served if item is GOOD else item for item in result] if isinstance(result, list) else result
    with refused_input(message):
        run(save_op(value, f"file://{tmp_path}"))
    assert sum(server.hits.values()) == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"destination": ""}, "destination must not be empty"),
        ({"destination": "   "}, "destination must not be empty"),
        ({"split_grid": "yes"}, "split_grid must be True or False"),
        ({"split_grid": 1}, "split_grid"),
        ({"max_bytes": 0}, "max_bytes"),
        ({"timeout": -1}, "timeout"),
        ({"destination": "{{ var.value.pictures }}"}, "asset"),
    ],
)
def test_bad_arguments_are_refused_at_parse_time(kwargs: dict[str, Any], message: str) -> None:
    arguments = {"result": GOOD, "destination": "file:///tmp/x", **kwargs}
    with pytest.raises(ValueError, match=message):
        SaveImagesOperator(task_id="save", **arguments)


def test_destination_rendering_to_nothing_is_refused(tmp_path: Path) -> None:
    op = save_op(GOOD, "{{ params.nothing }}", asset=asset_for_destination(f"file://{tmp_path}"))
    op.destination = "  "  # what the template rendered to
    with refused_input("destination"):
        run(op)


# --- asset ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("destination", "uri"),
    [
        ("file:///data/pictures", "file:///data/pictures"),
        ("file:///data/pictures/", "file:///data/pictures"),
        ("/data/pictures", "file:///data/pictures"),
        ("file:///data/{{ ds }}", "file:///data"),
        ("file:///data/run-{{ ds }}/x", "file:///data"),
        ("s3://aws_default@bucket/lotimage/{{ ds }}", "s3://bucket/lotimage"),
        ("gs://bucket/{{ ds }}", "gs://bucket/"),  # Airflow keeps the root slash of a bucket
    ],
)
def test_asset_is_the_fixed_prefix_of_destination(destination: str, uri: str) -> None:
    op = save_op(GOOD, destination)
    assert op.asset.uri == uri
    assert op.outlets == [op.asset]


def test_explicit_asset_and_other_outlets_are_kept() -> None:
    from airflow.sdk import Asset

    mine, other = Asset("lotimage-pictures", uri="file:///data"), Asset("other", uri="file:///other")
    op = save_op(GOOD, "{{ var.value.pictures }}", asset=mine, outlets=[other])
    assert op.asset is mine
    assert op.outlets == [other, mine]


# --- connection -------------------------------------------------------------------------------


def test_missing_default_connection_falls_back_to_a_plain_session(
    server: PictureServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_LOTIMAGE_DEFAULT")
    paths, _ = run(save_op(grid_result(server), f"file://{tmp_path}"))
    assert len(paths) == 1


def test_missing_named_connection_is_an_error(server: PictureServer, tmp_path: Path) -> None:
    from airflow.sdk.exceptions import AirflowNotFoundException

    with pytest.raises(AirflowNotFoundException):
        run(save_op(grid_result(server), f"file://{tmp_path}", lotimage_conn_id="no_such_conn"))


# --- inside a DAG -----------------------------------------------------------------------------


def test_operator_runs_in_a_dag(airflow_db: None, server: PictureServer, tmp_path: Path) -> None:
    """Upstream result through XCom, templated destination, asset event; then a rerun."""
    from airflow.models.asset import AssetEvent
    from airflow.sdk import DAG, task
    from airflow.utils.session import create_session
    from sqlalchemy import select

    result = grid_result(server)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    with DAG(dag_id="test_save_images_dag", schedule=None, start_date=start) as dag:

        @task
        def finished() -> dict[str, Any]:
            return result

        SaveImagesOperator(
            task_id="save", result=finished(), destination=f"file://{tmp_path}/{{{{ ds }}}}", split_grid=True
        )

    register_dag(dag)
    day = tmp_path / "2024-05-17"
    for _ in range(2):  # the rerun downloads nothing and still reports (see the module's doc)
        assert dag.test(logical_date=datetime(2024, 5, 17, tzinfo=UTC)).state == "success"

    assert sorted(p.name for p in day.glob("*.png")) == [f"{TASK_ID}_{n}.png" for n in range(5)]
    assert server.hits[grid_path()] == 1
    with create_session() as session:
        events = session.scalars(
            select(AssetEvent)
            .where(AssetEvent.source_dag_id == "test_save_images_dag")
            .order_by(AssetEvent.timestamp)
        ).all()
        # A kept AIRFLOW_HOME (LOTIMAGE_TEST_AIRFLOW_HOME) holds events of earlier sessions too.
        first, second = (event.extra for event in events if event.asset.uri == f"file://{tmp_path}")
    assert first["new_count"] == 5
    assert first["new_paths"] == [f"file://{day}/{TASK_ID}_{n}.png" for n in range(5)]
    assert (second["new_count"], second["unchanged_count"], second["new_paths"]) == (0, 5, [])


# --- atomic writes and storage failures ---------------------------------------------------------

TEMP_NAME = re.compile(r"^\.(?P<stem>.+)\.part-[0-9a-f]{12}$")


def visible(directory: Path) -> list[str]:
    """What a user listing the folder sees: everything but the hidden temporary files."""
    return sorted(p.name for p in directory.iterdir() if not p.name.startswith("."))


def temporary(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if TEMP_NAME.match(p.name))


class HeldBody:
    """A route that sends the headers and the first half of a picture, then waits to be released."""

    def __init__(self, body: bytes, *, finish: bool = True) -> None:
        self.body = body
        self.finish = finish
        self.half_sent = threading.Event()
        self.release = threading.Event()

    def __call__(self, handler: Any) -> None:
        half = len(self.body) // 2
        handler.send_response(200)
        handler.send_header("Content-Type", "image/png")
        handler.send_header("Content-Length", str(len(self.body)))
        handler.end_headers()
        handler.wfile.write(self.body[:half])
        handler.wfile.flush()
        self.half_sent.set()
        self.release.wait(30)
        if self.finish:
            handler.wfile.write(self.body[half:])
        else:  # the connection breaks mid-body
            handler.close_connection = True
            handler.connection.shutdown(socket.SHUT_RDWR)


def big_grid() -> bytes:
    """A grid whose PNG is large enough to arrive in several pieces."""
    from tests.storage.test_images import make_noise

    return make_noise(400, 300)


def test_download_streams_into_a_hidden_temporary_file_and_appears_whole(
    server: PictureServer, tmp_path: Path
) -> None:
    body = big_grid()
    held = HeldBody(body)
    result = grid_result(server)
    server.routes[grid_path()] = held
    outcome: dict[str, Any] = {}
    worker = threading.Thread(
        target=lambda: outcome.setdefault("paths", run(save_op(result, f"file://{tmp_path}")))
    )
    worker.start()
    try:
        assert held.half_sent.wait(10)
        deadline = time.monotonic() + 10
        while not (temporary(tmp_path) and (tmp_path / temporary(tmp_path)[0]).stat().st_size):
            assert time.monotonic() < deadline, "the download never reached a temporary file"
            time.sleep(0.01)
        # Mid-download: half the picture is on disk, under a hidden name only.
        (temp,) = temporary(tmp_path)
        assert TEMP_NAME.match(temp).group("stem") == f"{TASK_ID}_0"  # type: ignore[union-attr]
        assert 0 < (tmp_path / temp).stat().st_size < len(body)
        assert visible(tmp_path) == []
    finally:
        held.release.set()
        worker.join(30)
    assert visible(tmp_path) == [f"{TASK_ID}_0.json", f"{TASK_ID}_0.png"]
    assert temporary(tmp_path) == []
    assert (tmp_path / f"{TASK_ID}_0.png").read_bytes() == body
    assert json.loads((tmp_path / f"{TASK_ID}_0.json").read_text())["bytes"] == len(body)


def test_download_broken_mid_body_leaves_nothing(server: PictureServer, tmp_path: Path) -> None:
    held = HeldBody(big_grid(), finish=False)
    held.release.set()
    result = grid_result(server)
    server.routes[grid_path()] = held
    with pytest.raises(ImageDownloadError, match="could not store picture 0") as info:
        run(save_op(result, f"file://{tmp_path}"))
    assert TASK_ID in str(info.value) and "SECRETSIGNATURE" not in str(info.value)
    assert list(tmp_path.iterdir()) == []  # neither a picture nor a temporary file


def test_retry_removes_the_temporary_files_a_killed_try_left(server: PictureServer, tmp_path: Path) -> None:
    import fcntl

    ours = tmp_path / f".{TASK_ID}_0.part-0123456789ab"
    ours_sidecar = tmp_path / f".{TASK_ID}_0.json.part-0123456789ac"
    other_task = tmp_path / ".another-task_0.part-0123456789ad"
    live = tmp_path / f".{TASK_ID}_3.part-0123456789ae"  # still being written by a live process
    user_file = tmp_path / "notes.part-0123456789af"
    for path in (ours, ours_sidecar, other_task, live, user_file):
        path.write_bytes(b"\x89PNG half a pict")
    with open(live, "rb") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        run(save_op(grid_result(server), f"file://{tmp_path}"))
    remaining = sorted(p.name for p in tmp_path.iterdir())
    assert remaining == sorted(
        [other_task.name, live.name, user_file.name, f"{TASK_ID}_0.json", f"{TASK_ID}_0.png"]
    )


def test_sidecar_write_failure_leaves_no_sidecar_and_a_rerun_completes(
    server: PictureServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from airflow_provider_lotimage.exceptions import StorageError

    real_replace = os.replace

    def full_disk_for_sidecars(src: Any, dst: Any) -> None:
        if str(dst).endswith(".json"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", full_disk_for_sidecars)
    with pytest.raises(StorageError) as info:
        run(save_op(grid_result(server), f"file://{tmp_path}"))
    message = str(info.value)
    assert "write the sidecar of picture 0" in message and f"file://{tmp_path}" in message
    assert "no space left" in message and "free space there" in message and "then retry" in message
    assert visible(tmp_path) == [f"{TASK_ID}_0.png"] and temporary(tmp_path) == []

    monkeypatch.setattr(os, "replace", real_replace)
    _, extra = run(save_op(grid_result(server), f"file://{tmp_path}"))
    assert extra["new_count"] == 1  # no sidecar, no commit: the pair is redone
    assert visible(tmp_path) == [f"{TASK_ID}_0.json", f"{TASK_ID}_0.png"]


def test_destination_below_a_file_fails_before_any_download_then_retry_completes(
    server: PictureServer, tmp_path: Path
) -> None:
    from airflow_provider_lotimage.exceptions import StorageError

    blocker = tmp_path / "archive"
    blocker.write_text("a file where a folder should be")
    destination = f"file://{blocker}/pictures"
    with pytest.raises(StorageError) as info:
        run(save_op(grid_result(server), destination))
    message = str(info.value)
    assert "a part of the path is a file, not a folder" in message and destination in message
    assert "move that file away" in message and "then retry the task" in message
    assert sum(server.hits.values()) == 0  # the folder is made before the download starts

    blocker.unlink()
    paths, _ = run(save_op(grid_result(server), destination))
    assert paths == [f"{destination}/{TASK_ID}_0.png"]


@pytest.mark.parametrize("status", [403, 410])
def test_expired_link_says_which_picture_and_what_to_do_in_airflow(
    server: PictureServer, tmp_path: Path, status: int, lotimage_connection: str
) -> None:
    """The link expired and no fresh one can be had (the service does not know this taskId)."""
    result = cut_result(server)
    server.serve("/cut/3.png", b"gone", status=status, content_type="text/plain")
    with pytest.raises(ImageDownloadError) as info:
        run(save_op(result, f"file://{tmp_path}"))
    message = str(info.value)
    assert (
        f"could not store picture 3: picture link {server.url('/cut/3.png')} answered HTTP {status}"
        in message
    )
    assert "expired" in message and f"(LotImage task {TASK_ID})" in message
    assert "The fresh link read from LotImage failed too (or could not be read)" in message
    assert "clear the task that produced this result" in message and "SECRET" not in message
    assert info.value.http_status == status
    # Pictures 1 and 2 were stored whole; 3 left nothing behind.
    assert visible(tmp_path) == [f"{TASK_ID}_{n}.{ext}" for n in (1, 2) for ext in ("json", "png")]
    assert temporary(tmp_path) == []


def test_other_file_systems_write_a_temporary_name_then_rename(
    server: PictureServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file system that is neither local nor an object store (here fsspec's memory one)."""
    from airflow.sdk import ObjectStoragePath
    from airflow.sdk.io.store import attach
    from fsspec.implementations.memory import MemoryFileSystem

    fs = MemoryFileSystem()
    attach("memory", fs=fs)
    moves: list[tuple[str, str]] = []
    real_mv = fs.mv
    monkeypatch.setattr(fs, "mv", lambda src, dst, **kw: (moves.append((src, dst)), real_mv(src, dst, **kw)))
    target = ObjectStoragePath(f"memory://pictures-{uuid.uuid4().hex}/day")
    paths, _ = run(save_op(grid_result(server, split_grid=True), target, split_grid=True))

    assert [ObjectStoragePath(p).name for p in paths] == [f"{TASK_ID}_{n}.png" for n in range(5)]
    assert sorted(p.name for p in target.iterdir()) == sorted(
        f"{TASK_ID}_{n}.{ext}" for n in range(5) for ext in ("json", "png")
    )
    assert len(moves) == 10 and all(TEMP_NAME.match(src.rpartition("/")[2]) for src, _ in moves)
    assert ObjectStoragePath(paths[0]).read_bytes() == make_grid(64, 48)


def test_a_sink_failure_is_not_reported_as_a_download_failure(server: PictureServer) -> None:
    """fetch_picture hands each piece to the sink; what the sink raises comes out unchanged."""
    import requests

    from airflow_provider_lotimage.storage.images import fetch_picture

    url = server.serve("/noise.png", big_grid())
    pieces: list[bytes] = []
    with requests.Session() as session:
        data = fetch_picture(session, url, max_bytes=10**7, timeout=10, sink=pieces.append)
        assert b"".join(pieces) == data

        def full(chunk: bytes) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        with pytest.raises(OSError) as info:
            fetch_picture(session, url, max_bytes=10**7, timeout=10, sink=full)
    assert info.value.errno == errno.ENOSPC and not isinstance(info.value, ImageDownloadError)
