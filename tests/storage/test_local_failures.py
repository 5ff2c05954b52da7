"""Local storage that fails: disk full, read-only, not writable; each with a retry once it is fixed.

Real file systems, not mocks: a ``tmpfs`` of a few pages mounted for the test (disk full), a
``tmpfs`` mounted read-only (not writable: the tests run as root in CI, where ``chmod`` does not
stop writes), and ``chmod`` for a user other than root. The pictures come from a loopback HTTP
server (incompressible noise, so their sizes in pages are known).

Every case checks the same three things: the task fails with a :class:`StorageError` that names the
destination, the cause and the fix; no partial picture is visible and no temporary file is left;
after the cause is fixed, a retry stores what is missing without downloading what is already stored.
"""

from __future__ import annotations

import io
import os
from typing import TYPE_CHECKING, Any

import pytest
from PIL import Image

from airflow_provider_lotimage.exceptions import StorageError
from tests.storage.test_images import PictureServer, make_noise

from .conftest import remount

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

TASK_ID = "0o2f4ja2a1-6b1c-4f7e-9a55-3c1f2e7a9b10"
PAGE = 4096


@pytest.fixture
def pictures() -> Iterator[tuple[PictureServer, dict[str, Any], list[bytes]]]:
    """A finished task with four (noise) pictures served on loopback: server, result, bodies."""
    server = PictureServer()
    bodies = [make_noise(120 + 8 * n, 120) for n in range(4)]
    urls = [server.serve(f"/cut/{n}.png", body) + "?ex=SIGNED" for n, body in enumerate(bodies, 1)]
    result = {
        "lotimage_task_id": TASK_ID,
        "prompt": "noise",
        "image_url": urls[0],
        "image_urls": urls,
        "progress": 100,
    }
    yield server, result, bodies
    server.close()


def save(result: Any, destination: str) -> tuple[list[str], dict[str, Any]]:
    from airflow.sdk.execution_time.context import OutletEventAccessors

    from airflow_provider_lotimage.operators.save_images import SaveImagesOperator

    op = SaveImagesOperator(task_id="save", result=result, destination=destination)
    events = OutletEventAccessors()
    paths = op.execute({"outlet_events": events})  # type: ignore[arg-type]
    return paths, dict(events[op.asset].extra)


def assert_nothing_partial(folder: Path) -> list[str]:
    """Every visible picture decodes whole, and no temporary file is left; return the visible names."""
    if not folder.exists():
        return []
    names = sorted(path.name for path in folder.iterdir())
    assert not [name for name in names if name.startswith(".")], names
    for name in names:
        if name.endswith(".png"):
            with Image.open(io.BytesIO((folder / name).read_bytes())) as image:
                image.load()
    return names


def stored(*indexes: int) -> list[str]:
    return sorted(f"{TASK_ID}_{n}.{ext}" for n in indexes for ext in ("json", "png"))


def test_disk_full_mid_download_then_retry_after_freeing_space(
    mount: Callable[..., Path], pictures: tuple[PictureServer, dict[str, Any], list[bytes]]
) -> None:
    server, result, bodies = pictures
    first, second = (-(-len(body) // PAGE) for body in bodies[:2])
    assert second >= 4, "the second picture must span pages, so the disk fills in the middle of it"
    # Room for the first picture and its sidecar, and for half of the second picture.
    disk = mount("small-disk", f"size={(first + 1 + second // 2) * PAGE}")
    destination = disk.as_uri()

    with pytest.raises(StorageError) as info:
        save(result, destination)

    message = str(info.value)
    assert f"could not write picture 2 of LotImage task {TASK_ID} to {destination}" in message
    assert "no space left on the device" in message and "free space there" in message
    assert "then retry the task" in message and "SIGNED" not in message
    assert assert_nothing_partial(disk) == stored(1)
    assert server.hits["/cut/2.png"] == 1  # it was mid-download when the disk filled

    remount(disk, "size=4m")  # the cause, fixed
    paths, extra = save(result, destination)

    assert (extra["new_count"], extra["unchanged_count"]) == (3, 1)
    assert assert_nothing_partial(disk) == stored(1, 2, 3, 4)
    assert [(disk / f"{TASK_ID}_{n}.png").read_bytes() for n in (1, 2, 3, 4)] == bodies
    assert [server.hits[f"/cut/{n}.png"] for n in (1, 2, 3, 4)] == [1, 2, 1, 1]  # 1 not fetched again
    assert len(paths) == 4


def test_read_only_destination_then_retry_once_writable(
    mount: Callable[..., Path], pictures: tuple[PictureServer, dict[str, Any], list[bytes]]
) -> None:
    server, result, _ = pictures
    volume = mount("read-only", "ro,size=1m")
    destination = f"{volume.as_uri()}/pictures/2026-01-01"

    with pytest.raises(StorageError) as info:
        save(result, destination)

    message = str(info.value)
    assert f"could not create the folder for write picture 1 of LotImage task {TASK_ID}" in message
    assert destination in message and "read-only file system" in message
    assert "mount it read-write, or choose another destination" in message
    assert sum(server.hits.values()) == 0  # refused before any download
    assert not (volume / "pictures").exists()

    remount(volume, "rw")
    _, extra = save(result, destination)
    assert extra["new_count"] == 4
    assert assert_nothing_partial(volume / "pictures" / "2026-01-01") == stored(1, 2, 3, 4)


@pytest.mark.skipif(
    os.geteuid() == 0, reason="root writes whatever the permission bits say; see the mount tests"
)
def test_folder_without_write_permission_then_retry_once_granted(
    tmp_path: Path, pictures: tuple[PictureServer, dict[str, Any], list[bytes]]
) -> None:
    server, result, _ = pictures
    folder = tmp_path / "pictures"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(StorageError) as info:
            save(result, folder.as_uri())
        message = str(info.value)
        assert "permission denied" in message and "give the user the Airflow workers run as" in message
        assert sum(server.hits.values()) == 0
    finally:
        folder.chmod(0o755)
    save(result, folder.as_uri())
    assert assert_nothing_partial(folder) == stored(1, 2, 3, 4)
