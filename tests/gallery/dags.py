"""The DAGs the gallery tests run: SaveImagesOperator over made-up results served from loopback."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG, BaseOperator

from airflow_provider_lotimage.links import LotImagePictureLink, record_result
from airflow_provider_lotimage.operators.save_images import SaveImagesOperator

START = datetime(2026, 1, 1)
BUTTONS = ["U1", "U2", "U3", "U4", "V1", "V2", "V3", "V4", "🔄"]


def grid(base_url: str, task_id: str, prompt: str) -> dict[str, Any]:
    """A finished grid: one picture the save cuts into four (split_grid)."""
    return {
        "lotimage_task_id": task_id,
        "image_url": f"{base_url}/grid/{task_id}.png",
        "image_urls": [],
        "prompt": prompt,
        "buttons": BUTTONS,
        "progress": 100,
        "created_at": "2026-01-01T10:00:00Z",
    }


def upscale(base_url: str, task_id: str, parent: str, prompt: str) -> dict[str, Any]:
    """A finished upscale of ``parent``: a single picture (no U1 button)."""
    return {
        "lotimage_task_id": task_id,
        "originating_task_id": parent,
        "image_url": f"{base_url}/upscale/{task_id}.png",
        "image_urls": [],
        "prompt": prompt,
        "buttons": ["Vary (Strong)", "Vary (Subtle)"],
        "progress": 100,
        "created_at": "2026-01-01T10:05:00Z",
    }


def save_dag(dag_id: str, destination: str, grids: list[dict], upscales: list[dict]) -> DAG:
    """Store the grids (split) and their upscales into ``destination``."""
    with DAG(dag_id, schedule=None, start_date=START, catchup=False) as dag:
        SaveImagesOperator(task_id="save_grids", result=grids, destination=destination, split_grid=True)
        if upscales:
            SaveImagesOperator(task_id="save_upscales", result=upscales, destination=destination)
    return dag


class Seen(BaseOperator):
    """A waiting task stand-in: records a finished result as the sensor does, with its extra link."""

    operator_extra_links = (LotImagePictureLink(),)

    def __init__(self, *, result: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.result = result

    def execute(self, context: Any) -> dict[str, Any]:
        return record_result(context, self.result)


def link_dag(dag_id: str, destination: str, result: dict[str, Any]) -> DAG:
    """A waiting task that saw ``result`` finish, then the save of its picture."""
    with DAG(dag_id, schedule=None, start_date=START, catchup=False) as dag:
        seen = Seen(task_id="seen", result=result)
        save = SaveImagesOperator(
            task_id="save", result="{{ ti.xcom_pull('seen') }}", destination=destination, split_grid=True
        )
        seen >> save
    return dag


def large(base_url: str, task_id: str, width: int, height: int) -> dict[str, Any]:
    """A finished single picture of ``width`` × ``height`` pixels (one colour, so small to store)."""
    return {
        "lotimage_task_id": task_id,
        "image_url": f"{base_url}/big/{width}x{height}/{task_id}.png",
        "image_urls": [],
        "prompt": f"a large picture, {width}×{height}",
        "buttons": ["Vary (Strong)", "Vary (Subtle)"],
        "progress": 100,
        "created_at": "2026-01-01T10:10:00Z",
    }


class Reported(BaseOperator):
    """A batch report task stand-in: pushes a report as ``BatchReportOperator`` does."""

    def __init__(self, *, report: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.report = report

    def execute(self, context: Any) -> None:
        from airflow_provider_lotimage.keys import BATCH_REPORT_XCOM_KEY

        context["ti"].xcom_push(key=BATCH_REPORT_XCOM_KEY, value=self.report)


def batch_dag(dag_id: str, destination: str, grids: list[dict], report: dict[str, Any]) -> DAG:
    """The grids of a batch's healthy prompts stored, and the batch's report naming the failed ones."""
    with DAG(dag_id, schedule=None, start_date=START, catchup=False) as dag:
        SaveImagesOperator(task_id="save", result=grids, destination=destination)
        Reported(task_id="batch_report", report=report)
    return dag
