"""The gallery's FastAPI app, mounted by the plugin on the api-server under ``/lotimage``.

Imported only there, on the first request (see :class:`.plugin.LazyApp`).

Every route goes through Airflow's auth manager: the user comes from the same JWT (header or the
UI's cookie) as the REST API's, an anonymous request gets 401, and each DAG's pages require
``is_authorized_dag(method="GET")`` for that DAG (403 otherwise); the home page lists only the DAGs
the user may read. A file is served only if it is a picture the run recorded, or that picture's
sidecar (:func:`_recorded`): any other path (``..``, absolute, another bucket, another DAG's or
run's destination) is 404 before storage is touched.
"""

from __future__ import annotations

from importlib import resources
from typing import Annotated, Any

from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag
from fastapi import Depends, FastAPI, HTTPException, Query, Request, status
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from airflow_provider_lotimage.gallery import pages, records, settings
from airflow_provider_lotimage.gallery.index import (
    Picture,
    group_pictures,
    paginate,
    read_pictures,
    read_sidecar,
    sidecar_path,
)

_STATIC = {"gallery.css": "text/css", "gallery.js": "text/javascript"}
_MEDIA = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp", "gif": "image/gif"}
_PRIVATE = {"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff"}


CAN_READ_DAG = Depends(requires_access_dag("GET"))
PageDep = Annotated[int, Query(ge=1, le=100_000)]


def _urls(request: Request) -> pages.Urls:
    """URLs under where the app is mounted, as the browser reached it (root path included)."""
    return pages.Urls(str(request.scope.get("root_path", "")).rstrip("/"))


def _not_found(what: str = "Not found") -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, what)


def _run_paths(session: Any, dag_id: str, run_id: str) -> list[str]:
    return records.recorded_paths(session, dag_id, [run_id])[run_id]


def _recorded(session: Any, dag_id: str, run_id: str, path: str) -> tuple[Picture, bool]:
    """Return the recorded picture ``path`` names (itself or its sidecar), and whether it is the sidecar."""
    for picture in _run_paths(session, dag_id, run_id):
        if path in (picture, sidecar_path(picture)):
            meta = read_sidecar(picture)
            if meta is None:
                break
            return Picture(picture, meta), path != picture
    raise _not_found("No such picture in this run")


def create_app() -> FastAPI:
    """Build the gallery app: pages, files, thumbnails and the extra link's redirect."""
    app = FastAPI(title="LotImage gallery", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/static/{name}")
    def static(name: str, user: GetUserDep) -> Response:
        if name not in _STATIC:
            raise _not_found()
        text = resources.files("airflow_provider_lotimage.gallery").joinpath("static", name).read_bytes()
        return Response(text, media_type=_STATIC[name], headers={"Cache-Control": "private, max-age=300"})

    @app.get("/", response_class=HTMLResponse)
    def home(request: Request, user: GetUserDep, session: SessionDep) -> str:
        from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails
        from airflow.api_fastapi.core_api.security import get_auth_manager

        manager = get_auth_manager()
        readable = {
            dag_id
            for dag_id in records.dags_with_pictures(session)
            if manager.is_authorized_dag(method="GET", details=DagDetails(id=dag_id), user=user)
        }
        return pages.home_page(_urls(request), readable)

    @app.get("/dags/{dag_id}", response_class=HTMLResponse, dependencies=[CAN_READ_DAG])
    def dag(request: Request, dag_id: str, session: SessionDep, page: PageDep = 1) -> str:
        runs = records.runs_with_pictures(session, dag_id)
        pages_count = max(1, -(-len(runs) // settings.RUNS_PER_PAGE))
        page = min(page, pages_count)
        shown = runs[(page - 1) * settings.RUNS_PER_PAGE : page * settings.RUNS_PER_PAGE]
        paths = records.recorded_paths(session, dag_id, [run.run_id for run in shown])
        counts = {run_id: len(found) for run_id, found in paths.items()}
        return pages.dag_page(_urls(request), dag_id, shown, counts, page, pages_count)

    @app.get("/dags/{dag_id}/runs/{run_id}", response_class=HTMLResponse, dependencies=[CAN_READ_DAG])
    def run(request: Request, dag_id: str, run_id: str, session: SessionDep, page: PageDep = 1) -> str:
        buttons = records.pressed_buttons(session, dag_id, run_id)
        pictures = read_pictures(_run_paths(session, dag_id, run_id), buttons)
        shown, pages_count = paginate(group_pictures(pictures), page, settings.page_size())
        page = min(page, pages_count)
        return pages.run_page(_urls(request), dag_id, run_id, shown, len(pictures), page, pages_count)

    @app.get("/dags/{dag_id}/runs/{run_id}/view", response_class=HTMLResponse, dependencies=[CAN_READ_DAG])
    def view(request: Request, dag_id: str, run_id: str, path: str, session: SessionDep) -> str:
        picture, is_sidecar = _recorded(session, dag_id, run_id, path)
        if is_sidecar:
            raise _not_found()
        button = records.pressed_buttons(session, dag_id, run_id).get(picture.task_id, "")
        picture = read_pictures([picture.path], {picture.task_id: button})[0]
        return pages.picture_page(_urls(request), dag_id, run_id, picture)

    @app.get("/dags/{dag_id}/runs/{run_id}/file", dependencies=[CAN_READ_DAG])
    def file(dag_id: str, run_id: str, path: str, session: SessionDep) -> Response:
        from airflow.sdk import ObjectStoragePath

        from airflow_provider_lotimage.gallery.thumbnails import ThumbnailError, read_verified

        picture, is_sidecar = _recorded(session, dag_id, run_id, path)
        try:
            if is_sidecar:
                data = ObjectStoragePath(path).read_bytes()
                return Response(data, media_type="application/json", headers=_PRIVATE)
            data = read_verified(picture)
        except (OSError, ThumbnailError):
            raise _not_found("The stored file cannot be read") from None
        media = _MEDIA.get(picture.name.rpartition(".")[2], "application/octet-stream")
        return Response(data, media_type=media, headers=_PRIVATE)

    @app.get("/dags/{dag_id}/runs/{run_id}/thumb", dependencies=[CAN_READ_DAG])
    def thumb(dag_id: str, run_id: str, path: str, session: SessionDep) -> FileResponse:
        from airflow_provider_lotimage.gallery.thumbnails import ThumbnailError, thumbnail

        picture, is_sidecar = _recorded(session, dag_id, run_id, path)
        if is_sidecar:
            raise _not_found()
        try:
            made = thumbnail(picture)
        except ThumbnailError as err:
            raise _not_found(f"No thumbnail: {err}") from None
        return FileResponse(made, media_type="image/jpeg", headers=_PRIVATE)

    @app.get("/link/{dag_id}/{run_id}/{task_id}/{map_index}", dependencies=[CAN_READ_DAG])
    def link(
        request: Request, dag_id: str, run_id: str, task_id: str, map_index: int, session: SessionDep
    ) -> RedirectResponse:
        from airflow_provider_lotimage.gallery.extra_link import resolve

        target = resolve(session, _urls(request), dag_id, run_id, task_id, map_index)
        if target is None:
            raise _not_found("This task recorded no picture")
        return RedirectResponse(target, status_code=status.HTTP_303_SEE_OTHER)

    return app
