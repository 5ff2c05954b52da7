"""The "LotImage picture" extra link: a button in the task's UI page to the finished picture.

Where it leads: the stored copy in the LotImage gallery once SaveImagesOperator has stored the
picture, the service's (expiring) picture URL only before that. How it knows, cheaply: Airflow 3
calls ``get_link`` once, on the worker, when the task ends, and shows the stored answer; at that
moment no save task of the run has run yet, so ``get_link`` cannot know. It therefore returns a
fixed gallery address (``<base_url>/lotimage/link/<dag>/<run>/<task>/<map_index>``), costing one
XCom read, and the gallery decides at each click (:mod:`airflow_provider_lotimage.gallery.extra_link`):
a recorded picture of that LotImage taskId in the run (matched by file name, no storage read),
else a redirect to the service's URL. With ``[lotimage] gallery_extra_link = False`` (an
api-server without the gallery plugin) the link is the service's URL, as before.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow.providers.common.compat.sdk import BaseOperatorLink

from airflow_provider_lotimage import config
from airflow_provider_lotimage.client.redaction import redact_url
from airflow_provider_lotimage.keys import IMAGE_URL_XCOM_KEY

if TYPE_CHECKING:
    from collections.abc import Mapping

    from airflow.providers.common.compat.sdk import BaseOperator, Context, TaskInstanceKey

    from airflow_provider_lotimage.client.results import LotImageResult

log = logging.getLogger(__name__)


class LotImagePictureLink(BaseOperatorLink):
    """Links to the picture a sensor or waiting operator saw finished (see the module doc).

    LotImage's picture URLs expire after about a day; the gallery's stored copy does not.
    """

    name = "LotImage picture"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        """Return the gallery's address for this task's picture, or ``""`` if it recorded none."""
        from airflow.providers.common.compat.sdk import XCom

        return link_for(XCom.get_value(ti_key=ti_key, key=IMAGE_URL_XCOM_KEY), ti_key)


def link_for(url: Any, ti_key: TaskInstanceKey) -> str:
    """Return the link for a task instance that recorded the picture URL ``url`` (see the module doc).

    Apart from :meth:`LotImagePictureLink.get_link` so that a trigger ending the task can store the
    link from the URL it has, without reading back the XCom it has just written.
    """
    if not (isinstance(url, str) and url.startswith(("http://", "https://"))):
        return ""
    if not config.gallery_extra_link():
        return url
    return gallery_link(config.link_root(), ti_key)


def gallery_link(root: str, ti_key: TaskInstanceKey) -> str:
    """Return the gallery address under ``root`` that leads to a task instance's picture, stored or not."""
    parts = (ti_key.dag_id, ti_key.run_id, ti_key.task_id, str(ti_key.map_index))
    return root + "/link/" + "/".join(quote(part, safe="") for part in parts)


def record_result(context: Context, result: LotImageResult) -> LotImageResult:
    """Log a finished task, record its picture URL for the extra link, and return the result."""
    context["ti"].xcom_push(key=IMAGE_URL_XCOM_KEY, value=result.get("image_url"))
    log_finished(log, result)
    return result


def log_finished(logger: Any, result: Mapping[str, Any]) -> None:
    """Log a finished task the same way wherever it ends: a worker, or the triggerer."""
    logger.info(
        "LotImage task %s finished: %s (%d separate pictures)",
        result.get("lotimage_task_id"),
        redact_url(str(result.get("image_url"))),
        len(result.get("image_urls") or []),
    )
