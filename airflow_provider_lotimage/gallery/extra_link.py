"""Where the "LotImage picture" extra link leads: the stored copy if there is one, else the service.

Airflow 3 evaluates an extra link once, on the worker, when the task ends, and keeps the result:
for a waiting task that is before any save task of the run has run. So the link is a fixed
gallery address (see :mod:`airflow_provider_lotimage.links`) and the choice is made here, when
it is clicked, cheaply: the task's result (its XCom) names the LotImage taskId, and the run's
recorded picture paths are matched by file name (SaveImagesOperator names files after the taskId),
so no storage is read. No stored copy yet: the picture URL the task recorded, while it is valid.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_lotimage.gallery import records
from airflow_provider_lotimage.gallery.index import PICTURE_NAME
from airflow_provider_lotimage.gallery.pages import Urls
from airflow_provider_lotimage.links import IMAGE_URL_XCOM_KEY
from airflow_provider_lotimage.picture_store import safe_task_id


def resolve(session: Any, urls: Urls, dag_id: str, run_id: str, task_id: str, map_index: int) -> str | None:
    """Return the gallery page of the stored picture, else the service's picture URL, else None."""
    result = records.task_xcom(session, dag_id, run_id, task_id, map_index, records.RETURN_KEY)
    lotimage_id = result.get("lotimage_task_id") if isinstance(result, dict) else result
    if isinstance(lotimage_id, str):
        stored = stored_copy(records.recorded_paths(session, dag_id, [run_id])[run_id], lotimage_id)
        if stored is not None:
            return urls.of("view", dag_id, run_id, stored)
    url = records.task_xcom(session, dag_id, run_id, task_id, map_index, IMAGE_URL_XCOM_KEY)
    return url if isinstance(url, str) and url.startswith(("http://", "https://")) else None


def stored_copy(paths: list[str], lotimage_id: str) -> str | None:
    """Return the recorded picture of that LotImage task: the whole picture (index 0) first."""
    stem = safe_task_id(lotimage_id)
    found = []
    for path in paths:
        match = PICTURE_NAME.match(path.rpartition("/")[2])
        if match and match["stem"].rpartition("_")[0] == stem:
            found.append((int(match["index"]), path))
    return min(found)[1] if found else None
