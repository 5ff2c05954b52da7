"""The gallery attacked: what someone who can write into a destination folder, edit a DAG's XComs,
or read one DAG only, tries, and what they get.

The runs are real (``dag.test()`` of SaveImagesOperator), the app is Airflow's api-server app with
the plugin, and the attacks go through the same routes a browser uses (the REST API for the XComs).
``reader`` may read DAG A (and the others of :mod:`.conftest`) but not B; ``editor`` may also edit
them. Every test puts the files, XComs and events it changed back afterwards.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
from PIL import Image

from tests.dag_helpers import run_dag
from tests.gallery import dags
from tests.gallery.conftest import Runs, cards, png, run_url

REPO = Path(__file__).resolve().parents[2]
A, B, MANY, LINK = "gallery_dag_a", "gallery_dag_b", "gallery_many", "gallery_link"


def os_path(path: str) -> Path:
    return Path(path.removeprefix("file://"))


def sidecar(path: str) -> str:
    return path.rpartition(".")[0] + ".json"


def pictures(client: Any, dag_id: str, run_id: str) -> list[str]:
    """The recorded paths a run's page shows (first page)."""
    page = client.get(run_url(dag_id, run_id))
    assert page.status_code == 200, page.text
    return [card["path"] for card in cards(page.text)]


@pytest.fixture(autouse=True)
def restored_folders(local_runs: Runs, tmp_path: Path) -> Iterator[None]:
    """Put the stored pictures back as they were after each attack."""
    backup = tmp_path / "backup"
    shutil.copytree(local_runs.root, backup, symlinks=True)
    yield
    for entry in local_runs.root.iterdir():
        if entry.is_symlink() or not entry.is_dir():
            entry.unlink()
        else:
            shutil.rmtree(entry)
    shutil.copytree(backup, local_runs.root, symlinks=True, dirs_exist_ok=True)


def forget_sidecars() -> None:
    """As an api-server that has just started: no sidecar remembered."""
    from airflow_provider_lotimage.gallery import index

    index.SIDECARS.clear()


@pytest.fixture
def cold_cache() -> Iterator[None]:
    forget_sidecars()
    yield
    forget_sidecars()


def rewrite_picture(path: str, data: bytes, **meta: Any) -> None:
    """Replace a stored picture and its sidecar, as a save of other bytes would have left them."""
    os_path(path).write_bytes(data)
    record = json.loads(os_path(sidecar(path)).read_text(encoding="utf-8"))
    record.update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest(), **meta)
    os_path(sidecar(path)).write_text(json.dumps(record), encoding="utf-8")


@contextmanager
def xcom_set_by(client: Any, dag_id: str, run_id: str, task_id: str, key: str, value: Any) -> Iterator[None]:
    """Set an XCom through Airflow's REST API (as a user allowed to edit it), then put it back."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select, update

    from airflow_provider_lotimage.gallery import records

    where = (
        XComModel.dag_id == dag_id,
        XComModel.run_id == run_id,
        XComModel.task_id == task_id,
        XComModel.key == key,
        XComModel.map_index == -1,
    )
    with create_session() as session:
        before = session.scalar(select(XComModel.value).where(*where))
    url = f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/xcomEntries/{key}"
    changed = client.patch(url, json={"value": value, "map_index": -1})
    assert changed.status_code == 200, changed.text  # the user may
    with create_session() as session:
        if records.task_xcom(session, dag_id, run_id, task_id, -1, key) != value:
            # Airflow 3.1's PATCH stores the value encoded twice; the value as a task pushes it.
            pushed = {"dag_id": dag_id, "task_id": task_id, "run_id": run_id}
            XComModel.set(key=key, value=value, **pushed, session=session)
    try:
        yield
    finally:
        with create_session() as session:
            session.execute(update(XComModel).where(*where).values(value=before))


# ------------------------------------------------------------------- 1. symlinks, verified bytes
def test_a_sidecar_swapped_for_a_symlink_after_the_page_was_viewed_is_not_served(
    client_for: Callable[..., Any], local_runs: Runs, tmp_path: Path
) -> None:
    reader = client_for("reader")
    run_id = local_runs.run(A)
    target = sidecar(pictures(reader, A, run_id)[0])
    assert reader.get(run_url(A, run_id, "file", path=target)).status_code == 200  # viewed: cached
    secrets = tmp_path / "api-server.env"  # what the attacker is after: files the server can read
    secrets.write_bytes(b"AIRFLOW__API_AUTH__JWT_SECRET=not-for-readers\n")
    for link_to in (secrets, Path("/proc/self/environ")):
        os_path(target).unlink()
        os_path(target).symlink_to(link_to)

        answer = reader.get(run_url(A, run_id, "file", path=target))

        assert answer.status_code == 404, link_to
        assert b"not-for-readers" not in answer.content and b"AIRFLOW__" not in answer.content
    assert target not in [card["path"] for card in cards(reader.get(run_url(A, run_id)).text)]


def test_a_symlinked_sidecar_is_refused_on_a_cold_cache(
    client_for: Callable[..., Any], local_runs: Runs, tmp_path: Path
) -> None:
    reader = client_for("reader")
    run_id = local_runs.run(A)
    picture = pictures(reader, A, run_id)[1]
    target = sidecar(picture)
    copy = tmp_path / "elsewhere" / os_path(target).name  # a genuine sidecar, outside the folder
    copy.parent.mkdir()
    shutil.copy(os_path(target), copy)
    for link_to in (Path("/proc/self/environ"), copy):
        forget_sidecars()
        os_path(target).unlink()
        os_path(target).symlink_to(link_to)
        for path, action in ((target, "file"), (picture, "file"), (picture, "thumb"), (picture, "view")):
            answer = reader.get(run_url(A, run_id, action, path=path))
            assert answer.status_code == 404, (link_to, action, path, answer.status_code)
            assert b"PATH=" not in answer.content


def test_a_symlinked_picture_is_neither_served_nor_thumbnailed(
    client_for: Callable[..., Any], local_runs: Runs, tmp_path: Path
) -> None:
    reader = client_for("reader")
    run_id = local_runs.run(A)
    picture = pictures(reader, A, run_id)[2]
    copy = tmp_path / os_path(picture).name  # the same bytes: its sidecar still matches
    shutil.copy(os_path(picture), copy)
    os_path(picture).unlink()
    os_path(picture).symlink_to(copy)

    for action in ("file", "thumb"):
        assert reader.get(run_url(A, run_id, action, path=picture)).status_code == 404, action


def test_a_folder_in_the_path_swapped_for_a_symlink_is_refused(
    client_for: Callable[..., Any], local_runs: Runs
) -> None:
    reader = client_for("reader")
    run_id = local_runs.run(A)
    shown = pictures(reader, A, run_id)
    folder = local_runs.root / "a"
    folder.rename(local_runs.root / "a-moved")  # the same files, now behind a symlink
    folder.symlink_to(local_runs.root / "a-moved")

    assert pictures(reader, A, run_id) == []
    for path in shown[:3]:
        for action, asked in (("file", path), ("file", sidecar(path)), ("thumb", path), ("view", path)):
            assert reader.get(run_url(A, run_id, action, path=asked)).status_code == 404, (action, asked)


def test_a_sidecar_replaced_by_a_fifo_does_not_hold_the_api_server(
    client_for: Callable[..., Any], local_runs: Runs
) -> None:
    reader = client_for("reader")
    run_id = local_runs.run(A)
    target = sidecar(pictures(reader, A, run_id)[5])
    os_path(target).unlink()
    os.mkfifo(os_path(target))  # opening it for reading waits for a writer that never comes
    answers: list[int] = []
    asking = threading.Thread(
        target=lambda: answers.append(reader.get(run_url(A, run_id, "file", path=target)).status_code),
        daemon=True,
    )
    asking.start()
    asking.join(timeout=20)
    held = asking.is_alive()
    if held:  # let it go: a writer that closes at once ends the read
        os.close(os.open(os_path(target), os.O_WRONLY | os.O_NONBLOCK))
        asking.join(timeout=20)
    assert not held
    assert answers == [404]


# ------------------------------------------------------------------------ 2. forged XCom paths
def test_forged_xcom_paths_to_another_dags_pictures_are_not_served(
    client_for: Callable[..., Any], local_runs: Runs
) -> None:
    reader, editor, admin = client_for("reader"), client_for("editor"), client_for("admin")
    run_a, run_b = local_runs.run(A), local_runs.run(B)
    own = pictures(reader, A, run_a)
    theirs = pictures(admin, B, run_b)
    # A file planted in A's own folder, with a valid sidecar, named after a task A never saved.
    planted = own[0].rpartition("/")[0] + "/planted-task_0.png"
    data = png(64, "planted")
    os_path(planted).write_bytes(data)
    os_path(sidecar(planted)).write_text(
        json.dumps(
            {
                "lotimage_task_id": "planted-task",
                "index": 0,
                "file": os_path(planted).name,
                "bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "prompt": "planted",
            }
        ),
        encoding="utf-8",
    )
    # An Asset event made through the REST API naming B's folder carries no source task: ignored.
    asset = admin.get("/api/v2/assets", params={"uri_pattern": str(local_runs.root)}).json()["assets"]
    for found in asset:
        extra = {"lotimage_task_ids": ["planted-task"], "destination": planted.rpartition("/")[0]}
        made = admin.post("/api/v2/assets/events", json={"asset_id": found["id"], "extra": extra})
        assert made.status_code == 200, made.text
    forged = [*own, *theirs, *(sidecar(path) for path in theirs), planted]
    saved = "save_grids"
    from airflow_provider_lotimage.keys import RETURN_VALUE_XCOM_KEY

    with xcom_set_by(editor, A, run_a, saved, RETURN_VALUE_XCOM_KEY, forged):
        shown = set(pictures(reader, A, run_a))
        assert shown and not shown & {*theirs, planted}
        for path in [*theirs, *(sidecar(path) for path in theirs), planted, sidecar(planted)]:
            for action in ("file", "thumb", "view"):
                answer = reader.get(run_url(A, run_a, action, path=path))
                assert answer.status_code == 404, (action, path, answer.status_code)


def test_runs_recorded_without_a_destination_serve_nothing(
    client_for: Callable[..., Any], local_runs: Runs
) -> None:
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session
    from sqlalchemy import select

    reader = client_for("reader")
    run_id = local_runs.run(MANY)
    path = pictures(reader, MANY, run_id)[0]
    with create_session() as session:
        events = session.scalars(
            select(AssetEvent).where(AssetEvent.source_dag_id == MANY, AssetEvent.source_run_id == run_id)
        ).all()
        kept = {event.id: dict(event.extra) for event in events}
        for event in events:  # as SaveImagesOperator recorded them before it wrote the destination
            event.extra = {key: value for key, value in event.extra.items() if key != "destination"}
    try:
        assert pictures(reader, MANY, run_id) == []
        assert reader.get(run_url(MANY, run_id, "file", path=path)).status_code == 404
    finally:
        with create_session() as session:
            for event in session.scalars(select(AssetEvent).where(AssetEvent.id.in_(kept))):
                event.extra = kept[event.id]
    assert pictures(reader, MANY, run_id)[0] == path


# ------------------------------------------------------------------------------ 3. thumbnails
def test_a_forged_sidecar_quoting_another_dags_hash_gets_no_thumbnail(
    client_for: Callable[..., Any], local_runs: Runs, cold_cache: None
) -> None:
    reader, admin = client_for("reader"), client_for("admin")
    run_a, run_b = local_runs.run(A), local_runs.run(B)
    theirs = pictures(admin, B, run_b)[0]
    their_thumbnail = admin.get(run_url(B, run_b, "thumb", path=theirs))
    assert their_thumbnail.status_code == 200  # made, and cached
    their_meta = json.loads(os_path(sidecar(theirs)).read_text(encoding="utf-8"))
    own = pictures(reader, A, run_a)[3]
    meta = json.loads(os_path(sidecar(own)).read_text(encoding="utf-8"))
    meta.update(sha256=their_meta["sha256"], bytes=their_meta["bytes"])
    os_path(sidecar(own)).write_text(json.dumps(meta), encoding="utf-8")

    answer = reader.get(run_url(A, run_a, "thumb", path=own))

    assert answer.status_code == 404
    assert answer.content != their_thumbnail.content


def colour(jpeg: bytes) -> tuple[int, ...]:
    with Image.open(io.BytesIO(jpeg)) as image:
        return tuple(image.convert("RGB").getpixel((image.width // 2, image.height // 2)))


def test_a_replaced_picture_gets_a_fresh_thumbnail(client_for: Callable[..., Any], local_runs: Runs) -> None:
    reader = client_for("reader")
    run_id = local_runs.run(A)
    path = pictures(reader, A, run_id)[4]
    first = reader.get(run_url(A, run_id, "thumb", path=path))
    assert first.status_code == 200
    new = Image.new("RGB", (64, 64), (10, 200, 30))
    out = io.BytesIO()
    new.save(out, "PNG")
    rewrite_picture(path, out.getvalue(), width=64, height=64)

    second = reader.get(run_url(A, run_id, "thumb", path=path))

    assert second.status_code == 200
    assert second.content != first.content
    assert max(abs(a - b) for a, b in zip(colour(second.content), (10, 200, 30), strict=True)) < 8


def test_an_undecodable_picture_is_decoded_once(
    client_for: Callable[..., Any], local_runs: Runs, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_lotimage.gallery import thumbnails

    decoded: list[int] = []
    real_make = thumbnails.make
    monkeypatch.setattr(thumbnails, "make", lambda data: decoded.append(1) or real_make(data))
    reader = client_for("reader")
    run_id = local_runs.run(MANY)
    path = pictures(reader, MANY, run_id)[0]
    good = os_path(path).read_bytes()
    broken = good[:40] + bytes(len(good) - 40)  # a PNG header, then zeros where the pixels were
    rewrite_picture(path, broken)
    forget_sidecars()  # whatever the api-server remembered, it reads the new sidecar

    answers = [reader.get(run_url(MANY, run_id, "thumb", path=path)).status_code for _ in range(3)]

    assert answers == [404, 404, 404]
    assert len(decoded) == 1
    rewrite_picture(path, good)  # put back (new bytes, new key): a thumbnail again
    assert reader.get(run_url(MANY, run_id, "thumb", path=path)).status_code == 200


# -------------------------------------------------------------------------------- 4. the link
@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example/x.png",
        "http://cdn.discordapp.com.evil.example/x.png",
        "https://cdn.discordapp.com@evil.example/x.png",
        "https://evil.example\\@cdn.discordapp.com/x.png",
        "http://cdn.discordapp.com/x.png",  # Discord's CDN, but not over https
        "https://cdn.discordapp.com:8443/x.png",
        'https://evil.example/"><script>alert(1)</script>',
    ],
)
def test_the_link_does_not_redirect_to_a_host_it_does_not_know(
    client_for: Callable[..., Any], local_runs: Runs, url: str
) -> None:
    from airflow_provider_lotimage.keys import IMAGE_URL_XCOM_KEY

    run_id = local_runs.run(LINK, 0)  # its picture was seen, not stored: the link leads to the URL
    link = f"/lotimage/link/{LINK}/{quote(run_id, safe='')}/seen/-1"
    with xcom_set_by(client_for("editor"), LINK, run_id, "seen", IMAGE_URL_XCOM_KEY, url):
        answer = client_for("reader").get(link)

    assert answer.status_code == 200
    assert "location" not in answer.headers
    assert "<script>" not in answer.text
    named = answer.text.split('data-testid="target" href="', 1)[1].split('"', 1)[0]
    assert unescape(named) == url  # named as it is, to be followed by hand or not at all


def test_the_link_redirects_to_the_services_picture_hosts(
    client_for: Callable[..., Any], local_runs: Runs
) -> None:
    from airflow_provider_lotimage.keys import IMAGE_URL_XCOM_KEY

    run_id = local_runs.run(LINK, 0)
    link = f"/lotimage/link/{LINK}/{quote(run_id, safe='')}/seen/-1"
    for url in (
        "https://cdn.discordapp.com/attachments/1/2/x.png?ex=1&is=2&hm=3",
        "https://media.discordapp.net/attachments/1/2/x.png",
        "http://127.0.0.1:9/x.png",  # [lotimage] gallery_picture_hosts of these tests
    ):
        with xcom_set_by(client_for("editor"), LINK, run_id, "seen", IMAGE_URL_XCOM_KEY, url):
            answer = client_for("reader").get(link)
        assert answer.status_code == 303, url
        assert answer.headers["location"] == url


# ------------------------------------------------------------------------- 5. route parameters
def test_route_parameters_are_bounded(client_for: Callable[..., Any], local_runs: Runs) -> None:
    reader = client_for("reader", raise_errors=False)
    run_id = quote(local_runs.run(LINK), safe="")
    long_id = "d" * 251
    for url in (
        f"/lotimage/link/{LINK}/{run_id}/seen/{10**30}",
        f"/lotimage/link/{LINK}/{run_id}/seen/{2**63}",
        f"/lotimage/link/{LINK}/{run_id}/seen/-2",
        f"/lotimage/link/{LINK}/{run_id}/{long_id}/-1",
        f"/lotimage/link/{LINK}/{'r' * 251}/seen/-1",
        f"/lotimage/dags/{long_id}",
        run_url(LINK, local_runs.run(LINK), "file", path="p" * 5000),
        run_url(LINK, local_runs.run(LINK), "thumb", path=""),
    ):
        answer = reader.get(url)
        assert answer.status_code in (403, 404, 422), (url[:80], answer.status_code)


# ------------------------------------------------------------------------------- 6. headers
def test_every_answer_carries_the_security_headers(client_for: Callable[..., Any], local_runs: Runs) -> None:
    from airflow_provider_lotimage.keys import IMAGE_URL_XCOM_KEY

    reader = client_for("reader")
    run_id = local_runs.run(A)
    path = pictures(reader, A, run_id)[0]
    link_run = local_runs.run(LINK, 0)
    link = f"/lotimage/link/{LINK}/{quote(link_run, safe='')}/seen/-1"
    answers = {
        url: reader.get(url)
        for url in (
            "/lotimage/",
            f"/lotimage/dags/{A}",
            run_url(A, run_id),
            run_url(A, run_id, "view", path=path),
            run_url(A, run_id, "file", path=path),
            run_url(A, run_id, "file", path=sidecar(path)),
            run_url(A, run_id, "thumb", path=path),
            run_url(A, run_id, "file", path="/etc/passwd"),  # 404
            f"/lotimage/dags/{B}",  # 403
            f"/lotimage/link/{A}/{quote(run_id, safe='')}/save_grids/{10**6}",  # 422
            "/lotimage/static/gallery.css",
            "/lotimage/static/gallery.js",
            link,
        )
    }
    answers["anonymous"] = client_for(None).get("/lotimage/")
    with xcom_set_by(client_for("editor"), LINK, link_run, "seen", IMAGE_URL_XCOM_KEY, "https://x.example/"):
        answers["leaving"] = reader.get(link)
    for url, answer in answers.items():
        policy = answer.headers.get("content-security-policy", "")
        assert "default-src 'self'" in policy and "frame-ancestors 'self'" in policy, url
        assert answer.headers.get("x-content-type-options") == "nosniff", url
        if answer.headers.get("content-type", "").startswith("text/html") and answer.status_code == 200:
            # The policy allows no inline script or style: the pages must not need any.
            assert "style=" not in answer.text and "<script>" not in answer.text, url
    assert {answer.status_code for answer in answers.values()} >= {200, 303, 401, 403, 404, 422}


# ---------------------------------------------------------------------------------- 7. teams
def test_the_home_page_lists_no_dag_of_another_team(client_for: Callable[..., Any], local_runs: Runs) -> None:
    from airflow_provider_lotimage.version_compat import AIRFLOW_V_3_2_PLUS

    if not AIRFLOW_V_3_2_PLUS:
        pytest.skip("Airflow 3.1 knows no DAG's team when listing DAGs (nor does its own DAG list)")
    from airflow.models.dag import DagModel
    from airflow.models.dagbundle import DagBundleModel
    from airflow.models.team import Team
    from airflow.utils.session import create_session
    from sqlalchemy import delete, update

    member = client_for("member", teams=["team_a"])  # a viewer in team_a
    assert B in member.get("/lotimage/").text  # no DAG has a team yet: all are readable
    with create_session() as session:
        bundle = DagBundleModel(name="gallery-team-b")
        bundle.teams = [Team(name="team_b")]
        session.add(bundle)
        session.flush()
        session.execute(update(DagModel).where(DagModel.dag_id == B).values(bundle_name=bundle.name))
    try:
        home = member.get("/lotimage/")
        assert home.status_code == 200
        assert A in home.text
        assert B not in home.text
        assert B in client_for("admin").get("/lotimage/").text
    finally:
        with create_session() as session:
            session.execute(update(DagModel).where(DagModel.dag_id == B).values(bundle_name="dags-folder"))
            session.execute(delete(DagBundleModel).where(DagBundleModel.name == "gallery-team-b"))
            session.execute(delete(Team).where(Team.name == "team_b"))


# --------------------------------------------------------------------------------- 8. memory
#: Pictures decoded for a thumbnail: just under the gallery's thumbnail cap (4096²).
UNDER_THUMBNAIL_CAP = (4096, 4095)
#: Pictures just under the store's own cap (images.MAX_PIXELS, ten 2048² grids): refused unread.
UNDER_STORE_CAP = (6476, 6476)
AT_ONCE = 6
#: The most the api-server's peak memory may grow while the twelve thumbnails are asked for at once:
#: one and a half times what the builds may hold at once (Pillow's 4 bytes a pixel, for each).
MEMORY_BOUND = 1.5 * 2 * 4 * 4096 * 4096


@pytest.fixture(scope="module")
def large_run(
    airflow_db: None, gallery_env: pytest.MonkeyPatch, picture_server: str, tmp_path_factory
) -> str:
    """A run that stored six pictures under each cap (one colour each: small files, large canvases)."""
    from airflow_provider_lotimage.storage.images import MAX_PIXELS

    assert UNDER_STORE_CAP[0] * UNDER_STORE_CAP[1] <= MAX_PIXELS
    results = [
        dags.large(picture_server, f"large-{n}-{width}-{os.getpid()}", width, height)
        for n in range(AT_ONCE)
        for width, height in (UNDER_THUMBNAIL_CAP, UNDER_STORE_CAP)
    ]
    folder = tmp_path_factory.mktemp("large").as_uri()
    run = run_dag(dags.save_dag("gallery_large", folder, results, []))
    assert "success" in str(run.state).lower()
    return run.run_id


@pytest.fixture(scope="module")
def api_server(gallery_env: pytest.MonkeyPatch) -> Iterator[tuple[str, int]]:
    """Airflow's api-server app served by uvicorn in its own process (its memory is measured)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "tests.gallery.serve:core_app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    server = subprocess.Popen(command, cwd=REPO, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert server.poll() is None, "the api-server did not start"
            try:
                requests.get(f"{url}/lotimage/", timeout=2)
                break
            except requests.ConnectionError:
                time.sleep(0.3)
        yield url, server.pid
    finally:
        server.terminate()
        server.wait(timeout=30)


def memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a process, in bytes."""
    status = Path(f"/proc/{pid}/status").read_text()
    return {
        line.split(":")[0]: int(line.split()[1]) * 1024
        for line in status.splitlines()
        if line.startswith(("VmRSS:", "VmHWM:"))
    }


def test_thumbnails_of_large_pictures_at_once_stay_within_a_memory_bound(
    large_run: str, api_server: tuple[str, int], client_for: Callable[..., Any], local_runs: Runs
) -> None:
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

    url, pid = api_server
    # The admin, signed in as a client does (the other process has its own, empty, auth.READABLE).
    passwords = json.loads(Path(SimpleAuthManager.get_generated_password_file()).read_text())
    login = {"username": "admin", "password": passwords["admin"]}
    token = requests.post(f"{url}/auth/token", json=login, timeout=30).json()["access_token"]
    reader = requests.Session()
    reader.headers["Authorization"] = f"Bearer {token}"
    page = reader.get(f"{url}{run_url('gallery_large', large_run)}", timeout=60)
    assert page.status_code == 200, page.text
    paths = [card["path"] for card in cards(page.text)]
    assert len(paths) == 2 * AT_ONCE
    small = pictures(client_for("reader"), A, local_runs.run(A))[0]
    warm = reader.get(f"{url}{run_url(A, local_runs.run(A), 'thumb', path=small)}", timeout=60)
    assert warm.status_code == 200  # Pillow and the routes loaded
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # reset the peak to the present size
    before = memory(pid)

    def thumb(path: str) -> int:
        return reader.get(
            f"{url}{run_url('gallery_large', large_run, 'thumb', path=path)}", timeout=120
        ).status_code

    started = time.monotonic()
    with ThreadPoolExecutor(len(paths)) as pool:
        statuses = dict(zip(paths, pool.map(thumb, paths), strict=True))
    took = time.monotonic() - started
    after = memory(pid)
    growth = after["VmHWM"] - before["VmRSS"]
    print(f"api-server peak grew {growth / 2**20:.0f} MiB for {len(paths)} thumbnails at once ({took:.1f} s)")

    under_thumbnail_cap = [path for path in paths if f"-{UNDER_THUMBNAIL_CAP[0]}-" in path]
    assert {statuses[path] for path in under_thumbnail_cap} == {200}
    assert {statuses[path] for path in paths if path not in under_thumbnail_cap} == {404}
    assert growth < MEMORY_BOUND
    from airflow_provider_lotimage.gallery import thumbnails

    assert (thumbnails.BUILDS, thumbnails.MAX_PIXELS) == (2, 4096 * 4096)  # what the bound assumes
