"""Fixtures of the storage tests: a real S3-protocol server on loopback, mounts made for one test.

* ``s3``: ``moto``'s ``ThreadedMotoServer``, a real HTTP server speaking the S3 protocol on
  127.0.0.1 (one per module), reached by ``ObjectStoragePath("s3://<conn_id>@bucket/...")`` through
  an Airflow ``aws`` connection whose ``endpoint_url`` points at it, exactly as a deployment would
  reach S3 or MinIO. Needs ``apache-airflow-providers-amazon[s3fs]`` and ``moto[server]``.
* ``mount``: mounts a file system (a small ``tmpfs``, possibly read-only) for one test and unmounts
  it afterwards, whatever happens. Needs root (the tests run as root in CI, where ``chmod`` cannot
  make a folder unwritable, which is why a read-only mount stands in for it).

What is missing skips the test with the reason, or fails it when ``CI=true``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


def require(condition: bool, reason: str) -> None:
    """Skip the test unless ``condition``; in CI (``CI=true``) fail it instead."""
    if condition:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: a requirement of the storage tests is missing)")
    pytest.skip(reason)


# ------------------------------------------------------------------------------------------- S3
@dataclass
class S3Server:
    """A running S3-protocol server and the Airflow connection that reaches it."""

    url: str
    conn_id: str
    #: A boto3 client on the same server, for the test's own set-up and checks.
    client: Any

    @property
    def connection(self) -> str:
        return json.dumps(
            {
                "conn_type": "aws",
                "login": "testing",
                "password": "testing",
                "extra": {"endpoint_url": self.url, "region_name": "us-east-1"},
            }
        )

    def keys(self, bucket: str) -> list[str]:
        answer = self.client.list_objects_v2(Bucket=bucket)
        return sorted(item["Key"] for item in answer.get("Contents", []))

    def buckets(self) -> list[str]:
        return sorted(bucket["Name"] for bucket in self.client.list_buckets()["Buckets"])


@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3Server]:
    """A ``ThreadedMotoServer`` on 127.0.0.1 (a free port) for the module."""
    missing = [
        name
        for name in ("moto.server", "s3fs", "airflow.providers.amazon.aws.fs.s3", "boto3")
        if not _importable(name)
    ]
    require(
        not missing,
        f"not installed: {', '.join(missing)} "
        "(pip install 'apache-airflow-providers-amazon[s3fs]' 'moto[server]')",
    )
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    client = boto3.client(
        "s3",
        endpoint_url=url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    try:
        # A connection id of its own: Airflow caches one file system per connection id.
        yield S3Server(url=url, conn_id=f"lotimage_s3_{uuid.uuid4().hex[:8]}", client=client)
    finally:
        server.stop()


@pytest.fixture
def s3(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """The module's S3 server, reachable as the Airflow connection ``s3.conn_id``."""
    monkeypatch.setenv(f"AIRFLOW_CONN_{s3_server.conn_id.upper()}", s3_server.connection)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # never ask an instance metadata service
    return s3_server


def _importable(name: str) -> bool:
    import importlib

    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


# --------------------------------------------------------------------------------------- mounts
def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


@pytest.fixture
def mount(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """``mount(name, options)``: a ``tmpfs`` mounted at ``tmp_path/name``; unmounted at teardown.

    ``options`` are ``mount -o`` options, e.g. ``"size=64k"`` or ``"ro,size=1m"``. Root only.
    """
    require(os.geteuid() == 0, "mounting a tmpfs needs root")
    mounted: list[Path] = []

    def make(name: str, options: str) -> Path:
        point = tmp_path / name
        point.mkdir()
        done = _run("mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point))
        require(done.returncode == 0, f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(point)
        return point

    yield make
    for point in reversed(mounted):
        if _run("umount", str(point)).returncode != 0:
            with contextlib.suppress(Exception):
                _run("umount", "-l", str(point))


def remount(point: Path, options: str) -> None:
    """Change the options of a mount made by the ``mount`` fixture (``size=...``, ``rw``...)."""
    done = _run("mount", "-o", f"remount,{options}", str(point))
    assert done.returncode == 0, done.stderr
