"""The baseline: the provider's batch (grid, four upscales, every picture stored) written with
``apache-airflow-providers-http`` alone, as a careful user would write it without this provider.

Per prompt, a mapped task group: ``HttpOperator`` submits, ``HttpSensor`` in poke mode waits for
progress 100 (its ``PokeReturnValue`` hands the finished task's body on, so nothing is read
twice), a plain task downloads the picture; then the same for U1..U4 of the grid. The key travels
in the ``lotimage_http`` connection's extra as an ``Authorization`` header (HttpHook sends extra
fields as headers). Submissions retry with exponential back-off: a 429 in the body fails the
response check, and a retry resends what the service never accepted.

It takes the same run conf (``prompts``), pool (``$LOTIMAGE_POOL``), poll interval
(``$LOTIMAGE_POLL_INTERVAL``) and output folder (``$LOTIMAGE_OUTPUT_DIR/baseline``) as the
provider's ``example_lotimage_batch``, so the two differ only in how they call and wait.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import requests
from airflow.providers.http.operators.http import HttpOperator
from airflow.providers.http.sensors.http import HttpSensor
from airflow.sdk import DAG, Param, PokeReturnValue, task, task_group

CONN_ID = "lotimage_http"
IMAGINE = "/midjourney/v1/imagine"
BUTTON = "/midjourney/v1/button"
PROGRESS = "/midjourney/v1/task/progress"
JSON_HEADERS = {"Content-Type": "application/json"}
UPSCALE_BUTTONS = ["U1", "U2", "U3", "U4"]
OUTPUT_DIR = Path(os.environ.get("LOTIMAGE_OUTPUT_DIR", "output")).resolve() / "baseline"
POLL_INTERVAL = float(os.environ.get("LOTIMAGE_POLL_INTERVAL", "10"))
POOL = os.environ.get("LOTIMAGE_POOL", "lotimage")


def accepted(response: requests.Response) -> bool:
    """A submission counts only with body status 200 and a taskId (429s come as HTTP 200)."""
    body = response.json()
    return body.get("status") == 200 and bool(body.get("taskId"))


def task_id_of(response: requests.Response) -> str:
    return str(response.json()["taskId"])


def finished(response: requests.Response) -> PokeReturnValue:
    """Done at progress 100 with a picture; the body goes to XCom for the download.

    A 429 or 5xx in the body means "poke again"; a failed or unknown task fails the sensor.
    """
    body = response.json()
    if body.get("status") in (400, 401, 403, 404):
        raise ValueError(f"LotImage answered {body}")
    progress = str(body.get("progress", "0")).rstrip("%")
    done = body.get("status") == 200 and progress in ("100", "100.0") and bool(body.get("imageUrl"))
    return PokeReturnValue(is_done=done, xcom_value=body if done else None)


def follow(submit_task_id: str) -> str:
    """The ``task/progress`` body for the taskId a submit task of the same group pushed."""
    return '{"taskId": "' + pulled(submit_task_id) + '"}'


def pulled(submit_task_id: str) -> str:
    """A template for the taskId a submit task of the same mapped group (same index) pushed."""
    return '{{ ti.xcom_pull(task_ids="render.' + submit_task_id + '", map_indexes=ti.map_index) }}'


with DAG(
    dag_id="baseline_http_batch",
    description="The batch DAG written with HttpOperator + HttpSensor only (benchmark baseline)",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["benchmark", "baseline"],
    params={"prompts": Param([], type="array", items={"type": "string", "minLength": 1})},
    # 429s come in bursts when several sensors and submits meet in the same second: back off.
    default_args={
        "retries": 8,
        "retry_delay": timedelta(seconds=5),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(seconds=60),
    },
) as dag:

    @task
    def load_prompts(params: dict[str, Any] | None = None) -> list[str]:
        return [json.dumps({"prompt": prompt}) for prompt in (params or {})["prompts"]]

    @task
    def save_picture(result: dict[str, Any]) -> str:
        """Download the finished task's picture into the baseline folder."""
        OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
        response = requests.get(result["imageUrl"], timeout=60)
        response.raise_for_status()
        path = OUTPUT_DIR / f"{result['taskId']}.png"
        path.write_bytes(response.content)
        return str(path)

    def render_one(name: str, endpoint: str, body: str) -> tuple[HttpOperator, HttpSensor]:
        submit = HttpOperator(
            task_id=f"submit_{name}",
            http_conn_id=CONN_ID,
            endpoint=endpoint,
            method="POST",
            data=body,
            headers=JSON_HEADERS,
            response_check=accepted,
            response_filter=task_id_of,
            pool=POOL,
        )
        wait = HttpSensor(
            task_id=f"wait_{name}",
            http_conn_id=CONN_ID,
            endpoint=PROGRESS,
            method="POST",
            request_params=follow(f"submit_{name}"),  # type: ignore[arg-type]  # a JSON body
            headers=JSON_HEADERS,
            response_check=finished,
            mode="poke",
            poke_interval=POLL_INTERVAL,
            timeout=30 * 60,
            pool=POOL,
        )
        submit >> wait >> save_picture.override(task_id=f"save_{name}")(wait.output)  # type: ignore[arg-type]
        return submit, wait

    @task_group(group_id="render")
    def render(body: str) -> None:
        _, grid_done = render_one("imagine", IMAGINE, body)
        grid = pulled("submit_imagine")
        for button in UPSCALE_BUTTONS:
            upscale_body = '{"taskId": "' + grid + '", "button": "' + button + '"}'
            submit, _ = render_one(button, BUTTON, upscale_body)
            grid_done >> submit

    render.expand(body=load_prompts())
