"""The gallery's FastAPI app, mounted by the plugin on the api-server under ``/lotimage``.

Imported only there, on the first request (see :class:`.plugin.LazyApp`).

Every route goes through Airflow's auth manager: the user comes from the same JWT (header or the
UI's cookie) as the REST API's, an anonymous request gets 401, and each DAG's pages require
``is_authorized_dag(method="GET")`` for that DAG (403 otherwise); the home page lists the DAGs the
auth manager says the user may read (``get_authorized_dag_ids``, teams included). A file is served
only if it is a picture the run recorded, or that picture's sidecar (:func:`_recorded`): any other
path (``..``, absolute, another bucket, another DAG's or run's destination) is 404 before storage
is touched. What is served is what was read once and checked: the sidecar's bytes that were
parsed, the picture's bytes that matched its sidecar's hash, never a path read again. Route
parameters are bounded (a too long id or path, a ``map_index`` out of range: 422), and every
answer carries the headers of :mod:`.headers`.
"""

from __future__ import annotations

import dataclasses
from importlib import resources
from typing import Annotated, Any

from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag
from airflow.models.base import ID_LEN
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from airflow_provider_lotimage import config
from airflow_provider_lotimage.gallery import pages, records
from airflow_provider_lotimage.gallery.headers import SecurityHeaders
from airflow_provider_lotimage.gallery.index import (
    Picture,
    button_of,
    group_pictures,
    paginate,
    read_pictures,
    read_sidecar,
)
from airflow_provider_lotimage.storage.layout import sidecar_path

_STATIC = {"gallery.css": "text/css", "gallery.js": "text/javascript"}
_MEDIA = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp", "gif": "image/gif"}
_PRIVATE = {"Cache-Control": "private, max-age=3600"}

#: The longest ``path`` parameter, and the highest ``map_index`` of the link route.
MAX_PATH = 4096
MAX_MAP_INDEX = 100_000

#: Runs per page of a DAG's run list.
RUNS_PER_PAGE = 20

CAN_READ_DAG = Depends(requires_access_dag("GET"))
PageDep = Annotated[int, Query(ge=1, le=100_000)]
DagIdDep = Annotated[str, Path(max_length=ID_LEN)]
RunIdDep = Annotated[str, Path(max_length=ID_LEN)]
TaskIdDep = Annotated[str, Path(max_length=ID_LEN)]
PathDep = Annotated[str, Query(min_length=1, max_length=MAX_PATH)]
MapIndexDep = Annotated[int, Path(ge=-1, le=MAX_MAP_INDEX)]


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
            sidecar = read_sidecar(picture)
            if sidecar is None:
                break
            return Picture(picture, sidecar[1], sidecar_bytes=sidecar[0]), path != picture
    raise _not_found("No such picture in this run")


router = APIRouter()


@router.get("/static/{name}")
def static(name: str, user: GetUserDep) -> Response:
    """Serve the gallery's stylesheet or script (signed-in users only, like every route)."""
    if name not in _STATIC:
        raise _not_found()
    text = resources.files("airflow_provider_lotimage.gallery").joinpath("static", name).read_bytes()
    return Response(text, media_type=_STATIC[name], headers={"Cache-Control": "private, max-age=300"})


@router.get("/", response_class=HTMLResponse)
def home(request: Request, user: GetUserDep, session: SessionDep) -> str:
    """List the DAGs the user may read whose runs stored pictures."""
    from airflow.api_fastapi.core_api.security import get_auth_manager

    # As Airflow's own DAG list asks: the auth manager knows each DAG's team (Airflow 3.2+).
    readable = get_auth_manager().get_authorized_dag_ids(user=user, method="GET", session=session)
    return pages.home_page(_urls(request), records.dags_with_pictures(session) & readable)


@router.get("/dags/{dag_id}", response_class=HTMLResponse, dependencies=[CAN_READ_DAG])
def dag(request: Request, dag_id: DagIdDep, session: SessionDep, page: PageDep = 1) -> str:
    """List a DAG's runs that stored pictures, newest first, paged."""
    runs = records.runs_with_pictures(session, dag_id)
    pages_count = max(1, -(-len(runs) // RUNS_PER_PAGE))
    page = min(page, pages_count)
    shown = runs[(page - 1) * RUNS_PER_PAGE : page * RUNS_PER_PAGE]
    paths = records.recorded_paths(session, dag_id, [run.run_id for run in shown])
    counts = {run_id: len(found) for run_id, found in paths.items()}
    return pages.dag_page(_urls(request), dag_id, shown, counts, page, pages_count)


@router.get("/dags/{dag_id}/runs/{run_id}", response_class=HTMLResponse, dependencies=[CAN_READ_DAG])
def run(request: Request, dag_id: DagIdDep, run_id: RunIdDep, session: SessionDep, page: PageDep = 1) -> str:
    """Show one run's pictures, grouped by LotImage task, paged."""
    buttons = records.pressed_buttons(session, dag_id, run_id)
    pictures = read_pictures(_run_paths(session, dag_id, run_id), buttons)
    shown, pages_count = paginate(group_pictures(pictures), page, config.page_size())
    page = min(page, pages_count)
    failed = records.failed_prompts(session, dag_id, run_id)
    return pages.run_page(_urls(request), dag_id, run_id, shown, len(pictures), page, pages_count, failed)


@router.get("/dags/{dag_id}/runs/{run_id}/view", response_class=HTMLResponse, dependencies=[CAN_READ_DAG])
def view(request: Request, dag_id: DagIdDep, run_id: RunIdDep, path: PathDep, session: SessionDep) -> str:
    """Show one recorded picture at full size, with its facts."""
    picture, is_sidecar = _recorded(session, dag_id, run_id, path)
    if is_sidecar:
        raise _not_found()
    button = button_of(picture.sidecar, records.pressed_buttons(session, dag_id, run_id))
    picture = dataclasses.replace(picture, button=button)
    return pages.picture_page(_urls(request), dag_id, run_id, picture)


@router.get("/dags/{dag_id}/runs/{run_id}/file", dependencies=[CAN_READ_DAG])
def file(dag_id: DagIdDep, run_id: RunIdDep, path: PathDep, session: SessionDep) -> Response:
    """Serve a recorded picture, or its sidecar, as the bytes that were checked."""
    from airflow_provider_lotimage.gallery.files import Unreadable
    from airflow_provider_lotimage.gallery.index import read_verified

    picture, is_sidecar = _recorded(session, dag_id, run_id, path)
    if is_sidecar:  # the very bytes that were parsed and checked
        return Response(picture.sidecar_bytes, media_type="application/json", headers=_PRIVATE)
    try:
        data = read_verified(picture)
    except Unreadable:
        raise _not_found("The stored file cannot be read") from None
    media = _MEDIA.get(picture.name.rpartition(".")[2], "application/octet-stream")
    return Response(data, media_type=media, headers=_PRIVATE)


@router.get("/dags/{dag_id}/runs/{run_id}/thumb", dependencies=[CAN_READ_DAG])
def thumb(dag_id: DagIdDep, run_id: RunIdDep, path: PathDep, session: SessionDep) -> Response:
    """Serve a recorded picture's thumbnail (made now if need be, see :mod:`.thumbnails`)."""
    from airflow_provider_lotimage.gallery.thumbnails import ThumbnailBusy, ThumbnailError, thumbnail

    picture, is_sidecar = _recorded(session, dag_id, run_id, path)
    if is_sidecar:
        raise _not_found()
    try:
        made = thumbnail(dag_id, picture)
    except ThumbnailError as err:
        raise _not_found(f"No thumbnail: {err}") from None
    except ThumbnailBusy:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "Thumbnails are being made", {"Retry-After": "2"}
        ) from None
    return Response(made, media_type="image/jpeg", headers=_PRIVATE)


@router.get("/link/{dag_id}/{run_id}/{task_id}/{map_index}", dependencies=[CAN_READ_DAG])
def link(
    request: Request,
    dag_id: DagIdDep,
    run_id: RunIdDep,
    task_id: TaskIdDep,
    map_index: MapIndexDep,
    session: SessionDep,
) -> Response:
    """Lead the extra link to the stored copy, a picture host, or a page naming the address."""
    from airflow_provider_lotimage.gallery.extra_link import resolve, trusted_picture_url

    target = resolve(session, _urls(request), dag_id, run_id, task_id, map_index)
    if target is None:
        raise _not_found("This task recorded no picture")
    url = target.url if target.in_gallery else trusted_picture_url(target.url)
    if url is None:  # an XCom anyone who may edit it could have set: named, not followed
        return HTMLResponse(pages.leaving_page(_urls(request), target.url))
    return RedirectResponse(url, status_code=status.HTTP_303_SEE_OTHER)


def create_app() -> FastAPI:
    """Build the gallery app: pages, files, thumbnails and the extra link's redirect."""
    app = FastAPI(title="LotImage gallery", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(SecurityHeaders)
    app.include_router(router)
    return app
