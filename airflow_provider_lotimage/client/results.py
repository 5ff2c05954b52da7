"""The result dict: what a finished LotImage task is, as every task of this provider returns it.

``TaskProgressSensor``, the waiting ``ImagineOperator``/``ButtonOperator`` and the trigger all
return (and push as ``return_value``) the same dict, made in one place
(:meth:`~airflow_provider_lotimage.client.contract.TaskProgress.to_result`). This ``TypedDict``
names its keys so DAG code, e.g. a ``@task`` that reads a result, is checked by mypy; at run time
it is a plain ``dict`` (XCom stores it as JSON).
"""

from __future__ import annotations

from typing import TypedDict

__all__ = ["LotImageResult"]


class LotImageResult(TypedDict):
    """A finished LotImage task (``SaveImagesOperator`` takes one, or a list of them).

    :ivar lotimage_task_id: the task's id at LotImage.
    :ivar prompt: the prompt as LotImage recorded it, or ``None`` when it gave none.
    :ivar image_url: the picture (a grid of four unless the task is an upscale); a signed link that
        expires after about 24 hours.
    :ivar image_urls: the four pictures of the grid, separately, when submitted with ``cutting``;
        else empty.
    :ivar progress: 100 for a finished task.
    :ivar buttons: the buttons the task offers (``U1``... ``V4``, ``🔄``, ...), for ``ButtonOperator``.
    :ivar created_at: when LotImage created the task (its own text), or ``None``.
    :ivar originating_task_id: the parent task of a button's task, or ``None`` for an imagine.
    """

    lotimage_task_id: str
    prompt: str | None
    image_url: str | None
    image_urls: list[str]
    progress: int
    buttons: list[str]
    created_at: str | None
    originating_task_id: str | None
