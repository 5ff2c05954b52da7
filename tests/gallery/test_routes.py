"""The gallery's routes on Airflow's api-server app: pages, access control, files, thumbnails, paging."""

from __future__ import annotations

import re
from html import unescape
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.gallery.conftest import FAILED_PROMPTS, MANY_GRIDS, PAGE_SIZE, Runs, cards, run_url, sidecar_of

pytestmark = pytest.mark.usefixtures("local_runs")


def test_the_plugin_is_mounted_by_airflow_and_lists_only_readable_dags(client_for, local_runs: Runs) -> None:
    page = client_for("reader").get("/lotimage/")
    assert page.status_code == 200, page.text
    assert "gallery_dag_a" in page.text and "gallery_many" in page.text
    assert "gallery_dag_b" not in page.text
    assert "gallery_dag_b" in client_for("admin").get("/lotimage/").text


def test_anonymous_gets_401_everywhere(client_for, local_runs: Runs) -> None:
    anonymous = client_for(None)
    run_id = local_runs.run("gallery_dag_a")
    for url in (
        "/lotimage/",
        "/lotimage/static/gallery.css",
        "/lotimage/dags/gallery_dag_a",
        run_url("gallery_dag_a", run_id),
        run_url("gallery_dag_a", run_id, "thumb", path="x"),
        f"/lotimage/link/gallery_link/{quote(local_runs.run('gallery_link'), safe='')}/seen/-1",
    ):
        assert anonymous.get(url).status_code in (401, 403), url


def test_a_dag_the_user_may_not_read_is_403(client_for, local_runs: Runs) -> None:
    reader = client_for("reader")
    run_id = local_runs.run("gallery_dag_b")
    assert reader.get("/lotimage/dags/gallery_dag_b").status_code == 403
    assert reader.get(run_url("gallery_dag_b", run_id)).status_code == 403
    admin_page = client_for("admin").get(run_url("gallery_dag_b", run_id)).text
    (picture,) = [card["path"] for card in cards(admin_page) if card["path"].endswith("_0.png")]
    assert reader.get(run_url("gallery_dag_b", run_id, "file", path=picture)).status_code == 403


def test_run_page_shows_every_stored_picture_grouped(client_for, local_runs: Runs) -> None:
    run_id = local_runs.run("gallery_dag_a")
    page = client_for("reader").get(run_url("gallery_dag_a", run_id))
    assert page.status_code == 200
    shown = cards(page.text)
    stored = sorted(str(p) for p in (local_runs.root / "a").glob("*.png"))
    assert sorted(card["path"].removeprefix("file://") for card in shown) == stored
    assert len(shown) == 2 * 5 + 2
    for card in shown:
        assert card["prompt"] == sidecar_of(card["path"])["prompt"]
    # The upscales of the first grid come right after its five pictures, under "Made from it".
    first_group = page.text.split('data-testid="group"')[1]
    assert first_group.count('data-testid="picture"') == 7 and "Made from it" in first_group
    for word in ("Quadrant U1", "Quadrant U4", "Whole picture", "LotImage task", "Sidecar JSON", "Stored in"):
        assert word in page.text


def test_a_batch_run_lists_its_failed_prompts_with_their_reasons_next_to_its_pictures(
    client_for, local_runs: Runs
) -> None:
    from airflow_provider_lotimage.gallery.records import MAX_FAILED

    run_id = local_runs.run("gallery_batch")
    page = client_for("reader").get(run_url("gallery_batch", run_id))
    assert page.status_code == 200
    assert len(cards(page.text)) == 1  # the healthy prompt's grid
    failed = page.text.split('data-testid="failed-prompts"')[1]
    assert f"Failed prompts ({MAX_FAILED})" in failed  # 250 in the report; a page reads a bounded number
    assert failed.count('data-testid="failed-prompt"') == MAX_FAILED < FAILED_PROMPTS
    assert "imagine: Banned prompt detected [status 400]" in failed
    assert "U1: not run: step imagine of this prompt failed" in failed
    assert "<script>alert(1)</script>" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt; a banned owl" in failed
    # A run without a batch report lists no failed prompts.
    assert (
        "Failed prompts"
        not in client_for("reader").get(run_url("gallery_dag_a", local_runs.run("gallery_dag_a"))).text
    )


def test_traversal_and_foreign_paths_are_404(client_for, local_runs: Runs) -> None:
    reader = client_for("reader")
    run_a = local_runs.run("gallery_dag_a")
    picture_a = cards(reader.get(run_url("gallery_dag_a", run_a)).text)[0]["path"]
    admin_b = client_for("admin").get(run_url("gallery_dag_b", local_runs.run("gallery_dag_b"))).text
    picture_b = cards(admin_b)[0]["path"]
    folder_a = picture_a.rpartition("/")[0]
    attempts = [
        f"{folder_a}/../b/{picture_b.rpartition('/')[2]}",
        f"{folder_a}/%2e%2e/b/{picture_b.rpartition('/')[2]}",
        picture_b,  # another DAG's destination
        picture_b.removeprefix("file://"),
        "/etc/passwd",
        "file:///etc/passwd",
        "s3://other-bucket/" + picture_a.rpartition("/")[2],
        f"{folder_a}/",
        f"{folder_a}/nothing_0.png",
    ]
    for action in ("file", "thumb", "view"):
        for path in attempts:
            answer = reader.get(run_url("gallery_dag_a", run_a, action, path=path))
            assert answer.status_code == 404, (action, path, answer.status_code)
    # The same picture through a run that did not record it is 404 too.
    other_run = local_runs.run("gallery_many")
    assert reader.get(run_url("gallery_many", other_run, "file", path=picture_a)).status_code == 404


def test_full_size_and_sidecar_are_served(client_for, local_runs: Runs) -> None:
    reader = client_for("reader")
    run_id = local_runs.run("gallery_dag_a")
    card = cards(reader.get(run_url("gallery_dag_a", run_id)).text)[0]
    view = reader.get(run_url("gallery_dag_a", run_id, "view", path=card["path"]))
    assert view.status_code == 200 and 'data-testid="full-picture"' in view.text
    full = reader.get(run_url("gallery_dag_a", run_id, "file", path=card["path"]))
    assert full.status_code == 200 and full.headers["content-type"] == "image/png"
    assert full.content == Path(card["path"].removeprefix("file://")).read_bytes()
    sidecar = card["path"].rpartition(".")[0] + ".json"
    assert sidecar.replace("&", "&amp;") in view.text or quote(sidecar, safe="") in view.text
    meta = reader.get(run_url("gallery_dag_a", run_id, "file", path=sidecar))
    assert meta.status_code == 200 and meta.json() == sidecar_of(card["path"])


def test_thumbnails_are_made_once_and_cached(client_for, local_runs: Runs, monkeypatch) -> None:
    from airflow_provider_lotimage import config
    from airflow_provider_lotimage.gallery import thumbnails

    made: list[int] = []
    real_make = thumbnails.make
    monkeypatch.setattr(thumbnails, "make", lambda data: made.append(1) or real_make(data))
    reader = client_for("reader")
    run_id = local_runs.run("gallery_dag_a")
    path = cards(reader.get(run_url("gallery_dag_a", run_id)).text)[1]["path"]
    first = reader.get(run_url("gallery_dag_a", run_id, "thumb", path=path))
    second = reader.get(run_url("gallery_dag_a", run_id, "thumb", path=path))
    assert first.status_code == second.status_code == 200
    assert first.headers["content-type"] == "image/jpeg" and first.content == second.content
    assert len(made) == 1
    cached = list(config.thumbnail_folder().rglob("*.jpg"))
    assert any(file.read_bytes() == first.content for file in cached)


def test_hundreds_of_pictures_are_paged_without_splitting_a_grid(client_for, local_runs: Runs) -> None:
    reader = client_for("reader")
    run_id = local_runs.run("gallery_many")
    seen: list[str] = []
    pages = MANY_GRIDS * 5 // PAGE_SIZE
    for number in range(1, pages + 1):
        page = reader.get(run_url("gallery_many", run_id, page=str(number)))
        assert page.status_code == 200
        assert f"page {number} of {pages}" in page.text
        found = cards(page.text)
        assert len(found) == PAGE_SIZE
        seen += [card["path"] for card in found]
    assert len(seen) == len(set(seen)) == MANY_GRIDS * 5
    beyond = reader.get(run_url("gallery_many", run_id, page=str(pages + 5)))
    assert f"page {pages} of {pages}" in beyond.text


def test_dag_page_lists_runs_newest_first(client_for, local_runs: Runs) -> None:
    page = client_for("reader").get("/lotimage/dags/gallery_link")
    assert page.status_code == 200
    listed = [unescape(run) for run in re.findall(r'data-testid="run"><a href="[^"]+">([^<]+)<', page.text)]
    assert listed[0] == local_runs.run("gallery_link")  # the newest run (other modules' runs follow)
    assert listed == sorted(listed, reverse=True)  # manual run ids sort by time
    # The first run stored nothing (its save was only marked successful): not listed.
    assert local_runs.run("gallery_link", 0) not in listed
