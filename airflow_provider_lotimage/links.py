"""The "LotImage picture" extra link: a button in the task's UI page to the finished picture."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseOperatorLink

from airflow_provider_lotimage.redaction import redact_url

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import BaseOperator, Context, TaskInstanceKey

log = logging.getLogger(__name__)

#: The XCom key under which waiting tasks record the picture's URL.
IMAGE_URL_XCOM_KEY = "lotimage_image_url"


class LotImagePictureLink(BaseOperatorLink):
    """Links to the picture a sensor or waiting operator saw finished.

    LotImage's picture URLs expire after about a day, so the link is for recent runs; stored
    copies are what ``SaveImagesOperator`` is for.
    """

    name = "LotImage picture"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        """Return the picture URL the task instance recorded, or ``""`` (no link) if not an http(s) URL."""
        from airflow.providers.common.compat.sdk import XCom

        url = XCom.get_value(ti_key=ti_key, key=IMAGE_URL_XCOM_KEY)
        return url if isinstance(url, str) and url.startswith(("http://", "https://")) else ""


def record_result(context: Context, result: dict[str, Any]) -> dict[str, Any]:
    """Log a finished task, record its picture URL for the extra link, and return the result."""
    context["ti"].xcom_push(key=IMAGE_URL_XCOM_KEY, value=result.get("image_url"))
    log.info(
        "LotImage task %s finished: %s (%d separate pictures)",
        result.get("lotimage_task_id"),
        redact_url(str(result.get("image_url"))),
        len(result.get("image_urls") or []),
    )
    return result
