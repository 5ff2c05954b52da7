"""The "LotImage picture" extra link: the service's picture before it is stored, the gallery after."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from tests.gallery.conftest import Runs


def link_xcom(run_id: str) -> str:
    """What Airflow recorded for the extra link when the waiting task ended (on the worker)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        row = session.execute(
            select(XComModel.value).where(
                XComModel.dag_id == "gallery_link",
                XComModel.run_id == run_id,
                XComModel.task_id == "seen",
                XComModel.key.like("_link_%"),
            )
        ).first()
        assert row is not None
        return XComModel.deserialize_value(row)


@pytest.mark.parametrize("run", [0, -1], ids=["before storing", "after storing"])
def test_the_link_leads_to_the_service_before_storing_and_to_the_gallery_after(
    client_for, local_runs: Runs, run: int
) -> None:
    run_id = local_runs.run("gallery_link", run)
    recorded = link_xcom(run_id)
    assert recorded == f"http://airflow.test/lotimage/link/gallery_link/{quote(run_id, safe='')}/seen/-1"
    answer = client_for("reader").get(recorded.removeprefix("http://airflow.test"))
    assert answer.status_code == 303
    target = answer.headers["location"]
    if run == 0:  # the save did not run: the service's (expiring) picture URL
        assert target.startswith("http://127.0.0.1:") and target.endswith(".png")
    else:  # stored: the gallery's page of the whole picture
        assert target.startswith(f"/lotimage/dags/gallery_link/runs/{quote(run_id, safe='')}/view?path=")
        assert quote("_0.png") in target or "_0.png" in target
        assert client_for("reader").get(target).status_code == 200


def test_the_link_obeys_dag_access(client_for, local_runs: Runs) -> None:
    from tests.gallery import auth

    run_id = quote(local_runs.run("gallery_link"), safe="")
    auth.READABLE.discard("gallery_link")
    try:
        assert client_for("reader").get(f"/lotimage/link/gallery_link/{run_id}/seen/-1").status_code == 403
    finally:
        auth.READABLE.add("gallery_link")
    assert client_for("reader").get(f"/lotimage/link/gallery_link/{run_id}/nothing/-1").status_code == 404


def test_get_link_without_the_gallery_or_without_a_picture(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_lotimage import links

    class Key:
        dag_id, run_id, task_id, map_index = "d", "manual__2026-01-01T00:00:00+00:00", "t", 3

    values = {"url": "https://cdn.example/x.png"}
    monkeypatch.setattr(
        "airflow.providers.common.compat.sdk.XCom.get_value", lambda **kw: values["url"], raising=False
    )
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example/sub/")
    link = links.LotImagePictureLink()
    assert link.get_link(None, ti_key=Key()) == (  # type: ignore[arg-type]
        "https://airflow.example/sub/lotimage/link/d/manual__2026-01-01T00%3A00%3A00%2B00%3A00/t/3"
    )
    monkeypatch.setenv("AIRFLOW__LOTIMAGE__GALLERY_EXTRA_LINK", "False")
    assert link.get_link(None, ti_key=Key()) == "https://cdn.example/x.png"  # type: ignore[arg-type]
    values["url"] = "javascript:alert(1)"
    assert link.get_link(None, ti_key=Key()) == ""  # type: ignore[arg-type]
