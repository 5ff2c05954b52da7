"""Where the "LotImage picture" extra link leads: the stored copy if there is one, else the service.

Airflow 3 evaluates an extra link once, on the worker, when the task ends, and keeps the result:
for a waiting task that is before any save task of the run has run. So the link is a fixed
gallery address (see :mod:`airflow_provider_lotimage.links`) and the choice is made here, when
it is clicked, cheaply: the task's result (its XCom) names the LotImage taskId, and the run's
recorded picture paths are matched by file name (SaveImagesOperator names files after the taskId),
so no storage is read. No stored copy yet: the picture URL the task recorded, while it is valid.

That URL is an XCom, which anyone allowed to edit the DAG's XComs can set: redirecting to it
blindly would make Airflow's own domain an open redirect. So the gallery redirects only to the
hosts LotImage's pictures come from (:func:`trusted_picture_url`): Discord's CDN, the service's
default host, and ``[lotimage] gallery_picture_hosts``. Any other URL gets a page that names it,
with a plain link the user may follow or not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from airflow_provider_lotimage import config
from airflow_provider_lotimage.client.contract import DEFAULT_BASE_URL
from airflow_provider_lotimage.gallery import records
from airflow_provider_lotimage.gallery.pages import Urls
from airflow_provider_lotimage.keys import IMAGE_URL_XCOM_KEY, RETURN_VALUE_XCOM_KEY
from airflow_provider_lotimage.storage.layout import PictureName, safe_task_id

#: Where LotImage's pictures are served (the contract: Discord's CDN), plus the service itself.
PICTURE_HOSTS = frozenset({"cdn.discordapp.com", "media.discordapp.net", urlsplit(DEFAULT_BASE_URL).hostname})

# Characters browsers read differently from urlsplit (a backslash is a slash to them), or strip.
_AMBIGUOUS = re.compile(r"[\\\s\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Target:
    """Where the link leads: ``url``, and whether it is a page of the gallery itself."""

    url: str
    in_gallery: bool


def resolve(
    session: Any, urls: Urls, dag_id: str, run_id: str, task_id: str, map_index: int
) -> Target | None:
    """Return the gallery page of the stored picture, else the service's picture URL, else None."""
    result = records.task_xcom(session, dag_id, run_id, task_id, map_index, RETURN_VALUE_XCOM_KEY)
    lotimage_id = result.get("lotimage_task_id") if isinstance(result, dict) else result
    if isinstance(lotimage_id, str):
        stored = stored_copy(records.recorded_paths(session, dag_id, [run_id])[run_id], lotimage_id)
        if stored is not None:
            return Target(urls.of("view", dag_id, run_id, stored), in_gallery=True)
    url = records.task_xcom(session, dag_id, run_id, task_id, map_index, IMAGE_URL_XCOM_KEY)
    if isinstance(url, str) and url.startswith(("http://", "https://")):
        return Target(url, in_gallery=False)
    return None


def trusted_picture_url(url: str) -> str | None:
    """Return ``url`` rebuilt from its parts if it is on a picture host (see the module doc), else None.

    Discord's hosts only over https on the default port; configured hosts over http or https,
    ``host`` matching any port and ``host:port`` that port. A URL with credentials, or with
    characters browsers read differently (a backslash, spaces, controls), is never trusted.
    """
    if _AMBIGUOUS.search(url):
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host or "@" in parts.netloc:
        return None
    extra = config.picture_hosts()
    fixed = host in PICTURE_HOSTS and parts.scheme == "https" and port is None
    if not (fixed or host in extra or f"{host}:{port}" in extra):
        return None
    return urlunsplit(parts)


def stored_copy(paths: list[str], lotimage_id: str) -> str | None:
    """Return the recorded picture of that LotImage task: the whole picture (index 0) first."""
    stem = safe_task_id(lotimage_id)
    found = []
    for path in paths:
        parsed = PictureName.parse(path.rpartition("/")[2])
        if parsed is not None and parsed.task_stem == stem:
            found.append((parsed.index, path))
    return min(found)[1] if found else None
