"""An s3:// destination (a real S3-protocol server on loopback, as in tests/storage): same gallery."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from html import unescape
from urllib.parse import quote, urlencode

import pytest

from tests.dag_helpers import run_dag
from tests.gallery import auth, dags
from tests.storage.conftest import S3Server, s3_server  # noqa: F401 - the module's moto server


@pytest.fixture(scope="module")
def s3_run(
    airflow_db: None,
    gallery_env: pytest.MonkeyPatch,
    picture_server: str,
    s3_server: S3Server,  # noqa: F811
) -> Iterator[tuple[str, S3Server]]:
    """One grid stored (split) into a bucket through an Airflow aws connection."""
    gallery_env.setenv(f"AIRFLOW_CONN_{s3_server.conn_id.upper()}", s3_server.connection)
    gallery_env.setenv("AWS_EC2_METADATA_DISABLED", "true")
    bucket = f"gallery-{uuid.uuid4().hex[:8]}"
    s3_server.client.create_bucket(Bucket=bucket)
    grid = dags.grid(picture_server, f"s3-{uuid.uuid4().hex[:6]}", "an owl in the cloud")
    run = run_dag(dags.save_dag("gallery_s3", f"s3://{s3_server.conn_id}@{bucket}/pictures", [grid], []))
    assert "success" in str(run.state).lower()
    auth.READABLE.add("gallery_s3")
    yield run.run_id, s3_server


def test_s3_pictures_are_shown_served_and_thumbnailed(client_for, s3_run: tuple[str, S3Server]) -> None:
    run_id, server = s3_run
    reader = client_for("reader")
    base = f"/lotimage/dags/gallery_s3/runs/{quote(run_id, safe='')}"
    page = reader.get(base)
    assert page.status_code == 200, page.text
    paths = [unescape(p) for p in re.findall(r'data-testid="picture" data-path="([^"]+)"', page.text)]
    assert len(paths) == 5 and all(p.startswith(f"s3://{server.conn_id}@gallery-") for p in paths)
    assert page.text.count("an owl in the cloud") >= 5
    bucket = paths[0].split("@", 1)[1].split("/", 1)[0]
    for path in paths:
        key = path.split(f"{bucket}/", 1)[1]
        stored = server.client.get_object(Bucket=bucket, Key=key)["Body"].read()
        full = reader.get(f"{base}/file?{urlencode({'path': path})}")
        assert full.status_code == 200 and full.content == stored
        thumb = reader.get(f"{base}/thumb?{urlencode({'path': path})}")
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    sidecar = paths[0].rpartition(".")[0] + ".json"
    assert (
        reader.get(f"{base}/file?{urlencode({'path': sidecar})}").json()["file"]
        == paths[0].rpartition("/")[2]
    )
    # Another bucket, or a key beside the recorded ones, is not served.
    server.client.create_bucket(Bucket="gallery-other")
    server.client.put_object(Bucket="gallery-other", Key="pictures/x_0.png", Body=b"secret")
    for path in (
        paths[0].replace(bucket, "gallery-other"),
        f"s3://{server.conn_id}@gallery-other/pictures/x_0.png",
        paths[0].rpartition("/")[0] + "/../x_0.png",
    ):
        assert reader.get(f"{base}/file?{urlencode({'path': path})}").status_code == 404
