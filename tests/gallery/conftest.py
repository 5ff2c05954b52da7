"""Fixtures of the gallery tests: pictures served on loopback, DAG runs that stored them, clients.

The runs are real: ``dag.test()`` runs SaveImagesOperator, so the gallery reads the same XComs,
Asset events and sidecars a deployment has. The clients talk to Airflow's own api-server app
(``create_app``), with the plugin mounted by Airflow from the provider's entry point, and with a
JWT from an auth manager that lets user ``reader`` read one DAG only (:mod:`.auth`).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import secrets
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from html import unescape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from PIL import Image

from tests.dag_helpers import run_dag
from tests.gallery import auth, dags

PAGE_SIZE = 20
MANY_GRIDS = 24  # 24 x 5 = 120 pictures: six pages of 20


def png(size: int, seed: str) -> bytes:
    """A small, distinct PNG (colour from ``seed``)."""
    colour = tuple(int(seed.encode().hex()[i : i + 2] or "7f", 16) for i in (0, 2, 4))
    out = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(out, "PNG")
    return out.getvalue()


def big_png(width: int, height: int, seed: str) -> bytes:
    """A PNG of ``width`` × ``height`` in one colour (from ``seed``): large to decode, small to store."""
    colour = tuple(hashlib.sha256(seed.encode()).digest()[:3])
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, "PNG", compress_level=1)
    return out.getvalue()


class _Pictures(BaseHTTPRequestHandler):
    """``/grid/<id>.png`` (128 px), ``/upscale/<id>.png`` (96 px), ``/big/<w>x<h>/<id>.png``."""

    def do_GET(self) -> None:
        kind, _, name = self.path.strip("/").partition("/")
        if kind == "big":
            size, _, name = name.partition("/")
            width, _, height = size.partition("x")
            data = big_png(int(width), int(height), name)
        else:
            data = png(128 if kind == "grid" else 96, name)
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def picture_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Pictures)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Runs:
    """The runs a module stored: run ids by DAG id, and where the pictures are."""

    root: Path
    run_ids: dict[str, list[str]] = field(default_factory=dict)
    thumbnails: Path = Path()

    def run(self, dag_id: str, number: int = -1) -> str:
        return self.run_ids[dag_id][number]


@pytest.fixture(scope="module")
def gallery_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pytest.MonkeyPatch]:
    """The module's settings: the test auth manager, a thumbnail folder, a small page size."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW__CORE__AUTH_MANAGER", f"{auth.__name__}.OneDagReaderAuthManager")
        patch.setenv("AIRFLOW__LOTIMAGE__GALLERY_THUMBNAIL_FOLDER", str(tmp_path_factory.mktemp("thumbs")))
        patch.setenv("AIRFLOW__LOTIMAGE__GALLERY_PAGE_SIZE", str(PAGE_SIZE))
        patch.setenv("AIRFLOW__API__BASE_URL", "http://airflow.test/")
        # The test pictures are served on loopback: the extra link may redirect there.
        patch.setenv("AIRFLOW__LOTIMAGE__GALLERY_PICTURE_HOSTS", "127.0.0.1")
        patch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", secrets.token_urlsafe(64))
        # dag.test() must store each DAG as defined here (destinations differ between modules).
        patch.setenv("AIRFLOW__CORE__MIN_SERIALIZED_DAG_UPDATE_INTERVAL", "0")
        yield patch


@pytest.fixture(scope="module")
def local_runs(
    airflow_db: None,
    gallery_env: pytest.MonkeyPatch,
    picture_server: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Runs:
    """DAG A (two grids, two upscales of the first), DAG B (one grid), a 120-picture DAG, a link DAG."""
    suffix = uuid.uuid4().hex[:6]
    root = tmp_path_factory.mktemp("pictures")
    runs = Runs(root)
    url = picture_server

    def record(dag: Any, **test_args: Any) -> None:
        run = run_dag(dag) if not test_args else _run_with(dag, **test_args)
        assert str(run.state) in ("success", "DagRunState.SUCCESS"), run.state
        runs.run_ids.setdefault(dag.dag_id, []).append(run.run_id)

    grids_a = [
        dags.grid(url, f"a1-{suffix}", "a lighthouse at dawn"),
        dags.grid(url, f"a2-{suffix}", "a fox"),
    ]
    ups_a = [dags.upscale(url, f"a1u{n}-{suffix}", f"a1-{suffix}", "a lighthouse at dawn") for n in (1, 2)]
    record(dags.save_dag("gallery_dag_a", (root / "a").as_uri(), grids_a, ups_a))
    record(
        dags.save_dag(
            "gallery_dag_b", (root / "b").as_uri(), [dags.grid(url, f"b1-{suffix}", "a secret")], []
        )
    )
    many = [dags.grid(url, f"m{n:02d}-{suffix}", f"prompt number {n}") for n in range(MANY_GRIDS)]
    record(dags.save_dag("gallery_many", (root / "many").as_uri(), many, []))
    seen = dags.grid(url, f"l1-{suffix}", "a linked owl")
    link = dags.link_dag("gallery_link", (root / "link").as_uri(), seen)
    record(link, mark_success_pattern="^save$")  # the picture is seen, not stored yet
    record(link)
    record(dags.batch_dag("gallery_batch", (root / "batch").as_uri(), [grids_a[1]], batch_report(suffix)))
    auth.READABLE.clear()
    auth.READABLE.update({"gallery_dag_a", "gallery_many", "gallery_link", "gallery_batch"})
    return runs


#: How many prompts the gallery's batch report says failed: more than a page shows.
FAILED_PROMPTS = 250


def batch_report(suffix: str) -> dict[str, Any]:
    """A batch report (built by the provider's own code) with one healthy and many failed prompts."""
    from airflow_provider_lotimage.batch.report import Tolerance, batch_report, prompt_report

    failures = [
        {"step": "imagine", "error": "InvalidRequestError", "reason": "Banned prompt detected [status 400]"},
        {"step": "U1", "error": "UpstreamFailed", "reason": "not run: step imagine of this prompt failed"},
    ]
    lines = [
        prompt_report(
            index=index,
            prompt="<script>alert(1)</script> a banned owl" if index == 1 else f"failed prompt {index}",
            failures=failures if index else [],
            task_ids={"imagine": f"a2-{suffix}"} if index == 0 else {},
            stored=[],
            new_paths=[],
            destination="",
        )
        for index in range(FAILED_PROMPTS + 1)
    ]
    prompts = [line["prompt"] for line in lines]
    return dict(
        batch_report(dag_id="gallery_batch", run_id="r", prompts=prompts, lines=lines, tolerance=Tolerance())
    )


def _run_with(dag: Any, **test_args: Any) -> Any:
    from tests.dag_helpers import register_dag

    register_dag(dag)
    return dag.test(**test_args)


@pytest.fixture(scope="module")
def api_app(gallery_env: pytest.MonkeyPatch) -> Any:
    """Airflow's api-server app (the core API, the plugins, the auth manager) as the api-server makes it."""
    from airflow.api_fastapi.app import create_app

    return create_app("core")


@pytest.fixture(scope="module")
def client_for(api_app: Any) -> Callable[..., Any]:
    """A test client of the api-server logged in as ``user`` (None: anonymous).

    ``admin`` has the admin role, anyone else the viewer role (see :mod:`.auth` for ``reader`` and
    ``editor``); ``teams`` go into the token as the simple auth manager's teams.
    """
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from fastapi.testclient import TestClient

    def make(user: str | None, *, teams: list[str] | None = None, raise_errors: bool = True) -> Any:
        client = TestClient(api_app, follow_redirects=False, raise_server_exceptions=raise_errors)
        if user is not None:
            role = "admin" if user == "admin" else "viewer"
            extra = {"teams": teams} if teams else {}
            token = get_auth_manager().generate_jwt(SimpleAuthManagerUser(username=user, role=role, **extra))
            client.cookies.set("_token", token)  # as the UI's browser sends it
        return client

    return make


def run_url(dag_id: str, run_id: str, action: str = "", **query: str) -> str:
    """A run's page, or one of its actions (``view``, ``file``, ``thumb``) with its query."""
    url = f"/lotimage/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"
    url += f"/{action}" if action else ""
    return url + (f"?{urlencode(query)}" if query else "")


def cards(html: str) -> list[dict[str, str]]:
    """Each picture card of a page: its recorded path and its prompt."""
    found = re.findall(
        r'data-testid="picture" data-path="([^"]+)".*?data-testid="prompt">([^<]*)<', html, flags=re.S
    )
    return [{"path": unescape(path), "prompt": unescape(prompt)} for path, prompt in found]


def sidecar_of(path: str) -> dict[str, Any]:
    return json.loads(Path(path.removeprefix("file://")).with_suffix(".json").read_text(encoding="utf-8"))
