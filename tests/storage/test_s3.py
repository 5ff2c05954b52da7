"""SaveImagesOperator storing to S3: a real S3-protocol server on loopback (``moto``'s server).

The pictures come from the LotImage emulator (one paid imagine with cutting: four pictures), go
through ``ObjectStoragePath("s3://<conn_id>@<bucket>/...")`` and the Amazon provider's ``s3fs``
file system over HTTP, and are read back with boto3 and through ``ObjectStoragePath``.

The atomic-write rule for object stores: every file is written to its final key in one call (one
PUT), the picture before its sidecar; never a temporary key, a copy or a delete, which on S3 is
what a "rename" would be.
"""

from __future__ import annotations

import hashlib
import io
import json
from typing import TYPE_CHECKING, Any

import pytest
from PIL import Image

if TYPE_CHECKING:
    from collections.abc import Callable

    from lotimage_emulator import Emulator

    from .conftest import S3Server

PROMPT = "An owl with cat ears hanging on a tree"


@pytest.fixture
def finished(lotimage_connection: str, lotimage_emulator: Emulator) -> dict[str, Any]:
    """One finished LotImage task with cutting (four picture links), as the sensor returns it."""
    from airflow_provider_lotimage.hooks.lotimage import LotImageHook

    hook = LotImageHook()
    task_id = hook.imagine(PROMPT, cutting=True)
    return hook.wait_for_task(task_id, poll_interval=0.2, timeout=60).to_result()


@pytest.fixture
def s3_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str | None]]:
    """Every S3 API call s3fs makes, as ``(operation, Key)``, in order."""
    from s3fs import S3FileSystem

    calls: list[tuple[str, str | None]] = []
    real = S3FileSystem._call_s3

    async def spy(self: Any, method: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(
            (
                method if isinstance(method, str) else getattr(method, "__name__", str(method)),
                kwargs.get("Key"),
            )
        )
        return await real(self, method, *args, **kwargs)

    monkeypatch.setattr(S3FileSystem, "_call_s3", spy)
    return calls


def save(result: Any, destination: str) -> tuple[list[str], dict[str, Any]]:
    """Run SaveImagesOperator's ``execute`` (what a worker runs); its paths and asset event extra."""
    from airflow.sdk.execution_time.context import OutletEventAccessors

    from airflow_provider_lotimage.operators.save_images import SaveImagesOperator

    op = SaveImagesOperator(task_id="save", result=result, destination=destination)
    events = OutletEventAccessors()
    paths = op.execute({"outlet_events": events})  # type: ignore[arg-type]
    return paths, dict(events[op.asset].extra)


def names(task_id: str) -> list[str]:
    return sorted(f"{task_id}_{n}.{ext}" for n in (1, 2, 3, 4) for ext in ("json", "png"))


def assert_paid_once(emulator: Emulator) -> None:
    stats = emulator.stats()
    assert stats["submissions"] == {"imagine": 1, "button": 0}
    assert stats["requests"]["imagine"] == 1


def test_pictures_and_sidecars_land_whole_in_s3_and_a_rerun_changes_nothing(
    s3: S3Server,
    finished: dict[str, Any],
    lotimage_emulator: Emulator,
    s3_calls: list[tuple[str, str | None]],
) -> None:
    from airflow.sdk import ObjectStoragePath

    s3.client.create_bucket(Bucket="lotimage-pictures")
    destination = f"s3://{s3.conn_id}@lotimage-pictures/owls/2026-01-01"
    task_id = finished["lotimage_task_id"]

    paths, extra = save(finished, destination)

    assert paths == [f"{destination}/{task_id}_{n}.png" for n in (1, 2, 3, 4)]
    assert extra["new_count"] == 4
    assert s3.keys("lotimage-pictures") == [f"owls/2026-01-01/{name}" for name in names(task_id)]
    # The sidecars read back through ObjectStoragePath describe the objects exactly.
    for n in (1, 2, 3, 4):
        folder = ObjectStoragePath(destination)
        meta = json.loads((folder / f"{task_id}_{n}.json").read_text())
        data = (folder / f"{task_id}_{n}.png").read_bytes()
        assert (meta["lotimage_task_id"], meta["index"], meta["file"]) == (task_id, n, f"{task_id}_{n}.png")
        assert (meta["bytes"], meta["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())
        assert "?" not in meta["source_url"] and meta["prompt"] == PROMPT
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            assert (image.width, image.height) == (meta["width"], meta["height"])
    # The atomic-write rule for S3: one PUT per file, at its final key, picture before sidecar;
    # no temporary key, no copy, no delete, no multipart upload left to complete.
    writes = [(op, key) for op, key in s3_calls if op not in ("get_object", "head_object", "list_objects_v2")]
    assert {op for op, _ in writes} == {"put_object"}, writes
    put_keys = [key for _, key in writes]
    assert sorted(put_keys) == [f"owls/2026-01-01/{name}" for name in names(task_id)]
    for n in (1, 2, 3, 4):
        stem = f"owls/2026-01-01/{task_id}_{n}"
        assert put_keys.index(f"{stem}.png") < put_keys.index(f"{stem}.json")
    downloads = lotimage_emulator.stats()["events"]["images_served"]
    assert downloads == 4

    # A rerun (a retry, a cleared task) reads the sidecars and writes nothing.
    s3_calls.clear()
    again, extra = save(finished, destination)
    assert again == paths
    assert (extra["new_count"], extra["unchanged_count"]) == (0, 4)
    assert not [call for call in s3_calls if call[0] == "put_object"]
    assert lotimage_emulator.stats()["events"]["images_served"] == downloads
    assert_paid_once(lotimage_emulator)


def test_missing_bucket_fails_clearly_is_never_created_and_a_retry_completes(
    s3: S3Server, finished: dict[str, Any], lotimage_emulator: Emulator
) -> None:
    from airflow_provider_lotimage.exceptions import StorageError

    destination = f"s3://{s3.conn_id}@no-such-bucket/owls"
    with pytest.raises(StorageError) as info:
        save(finished, destination)
    message = str(info.value)
    assert "the bucket 'no-such-bucket' does not exist" in message
    assert "create the bucket" in message and "never buckets" in message and "then retry" in message
    assert "s3://no-such-bucket/owls" in message and s3.conn_id not in message
    assert "no-such-bucket" not in s3.buckets()

    s3.client.create_bucket(Bucket="no-such-bucket")  # the cause, fixed
    paths, extra = save(finished, destination)
    assert extra["new_count"] == 4
    assert s3.keys("no-such-bucket") == [f"owls/{name}" for name in names(finished["lotimage_task_id"])]
    assert len(paths) == 4
    assert_paid_once(lotimage_emulator)


def test_example_dag_stores_to_s3_through_a_connection(
    s3: S3Server,
    lotimage_connection: str,
    lotimage_emulator: Emulator,
    output_dir: Any,
    load_example: Callable[[str], Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``example_lotimage_imagine`` with ``$LOTIMAGE_DESTINATION`` set to an s3:// URL, run by dag.test()."""
    s3.client.create_bucket(Bucket="example-pictures")
    monkeypatch.setenv("LOTIMAGE_DESTINATION", f"s3://{s3.conn_id}@example-pictures/imagine")
    dag = load_example("example_lotimage_imagine")
    run = dag.test()
    assert run.state == "success"
    keys = s3.keys("example-pictures")
    assert len(keys) == 8 and all(key.startswith("imagine/") for key in keys)
    assert sorted(key.rsplit(".", 1)[1] for key in keys) == ["json"] * 4 + ["png"] * 4
    assert not output_dir.exists() or not any(output_dir.iterdir())
    assert_paid_once(lotimage_emulator)
