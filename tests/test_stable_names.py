"""Every name users import and Airflow stores stays as it is, whatever moves inside the package.

What is pinned here is what outlives a change of the code: DAG files import the operators, the
sensor, the hook, the trigger, the exceptions and the extra link by path; Airflow stores the
trigger's and the link's class paths, the trigger's keyword arguments, XComs, Variables, a DAG
param, ``[lotimage]`` options and Asset event extras; the rate budget lives under a Redis key and
in a file every process of a host shares; stored pictures carry sidecars that a later run and the
gallery read back; a stored submission carries a fingerprint a retry compares. Renaming any of
them breaks what is already deployed or stored, so each is spelled out here as a literal, and
checked where the code uses it, not only where it is defined.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import tempfile
from dataclasses import fields
from importlib.metadata import distribution
from pathlib import Path
from typing import Any

import pytest

PACKAGE = "airflow_provider_lotimage"
DISTRIBUTION = "airflow-provider-lotimage"

#: The import paths the README and the reference show, and what each must hold.
PUBLIC = {
    "operators.imagine": ["ImagineOperator"],
    "operators.button": ["ButtonOperator"],
    "operators.save_images": ["SaveImagesOperator"],
    "operators.submit": ["LotImageSubmitOperator"],
    "sensors.task_progress": ["TaskProgressSensor"],
    "hooks.lotimage": ["LotImageHook"],
    "triggers.task_progress": ["TaskProgressTrigger"],
    "links": ["LotImagePictureLink"],
    "batch.group": ["lotimage_batch"],
    "batch.report": ["BatchReport", "PromptReport", "PromptFailure", "Tolerance"],
    "batch.operators": ["PromptSaveOperator", "BatchReportOperator"],
    "exceptions": [
        "LotImageError",
        "AmbiguousSubmitError",
        "AuthError",
        "ConnectionConfigError",
        "ImageDownloadError",
        "InvalidRequestError",
        "LotImageInputError",
        "PaidTaskBudgetBusyError",
        "PaidTaskBudgetError",
        "ProxyError",
        "QuotaExhaustedError",
        "RateLimitedError",
        "StorageError",
        "TLSError",
        "TaskFailedError",
        "TaskNotFoundError",
        "TaskStalledError",
        "TaskTimeoutError",
        "TransientError",
    ],
}

TRIGGER_PATH = f"{PACKAGE}.triggers.task_progress.TaskProgressTrigger"
LINK_PATH = f"{PACKAGE}.links.LotImagePictureLink"

#: The keyword arguments a TaskProgressTrigger was serialized with before the package was laid out
#: in layers (a trigger stored then is still in the triggerer's table after an upgrade).
SERIALIZED_BEFORE = {
    "lotimage_task_id": "t-1",
    "lotimage_conn_id": "lotimage_default",
    "poll_interval": 3.0,
    "end_time": 2_000_000_060.0,
    "stall_timeout": 900.0,
    "started_at": 2_000_000_000.0,
    "first_poll_at": 2_000_000_010.0,
    "end_from_trigger": True,
    "release_keys": ["lotimage_task", "lotimage_paid_tasks"],
    "push_return_value": False,
    "push_task_id": True,
    "kind": "upscale",
    "adaptive_polling": False,
}

SIDECAR_FIELDS = [
    "lotimage_task_id",
    "originating_task_id",
    "prompt",
    "index",
    "file",
    "source_url",
    "split_from_grid",
    "width",
    "height",
    "format",
    "bytes",
    "sha256",
    "created_at",
    "stored_at",
]


@pytest.mark.parametrize(("module", "names"), PUBLIC.items(), ids=list(PUBLIC))
def test_the_public_import_paths(module: str, names: list[str]) -> None:
    imported = importlib.import_module(f"{PACKAGE}.{module}")
    for name in names:
        assert getattr(imported, name).__module__ == f"{PACKAGE}.{module}", name


def test_a_batch_is_imported_from_the_batch_package() -> None:
    batch = importlib.import_module(f"{PACKAGE}.batch")
    for name in ("lotimage_batch", "BatchReport", "PromptReport", "PromptFailure", "Tolerance"):
        assert name in batch.__all__ and getattr(batch, name) is not None, name


def test_the_class_paths_airflow_stores() -> None:
    from airflow_provider_lotimage.get_provider_info import get_provider_info
    from airflow_provider_lotimage.links import LotImagePictureLink
    from airflow_provider_lotimage.sensors.task_progress import TaskProgressSensor
    from airflow_provider_lotimage.triggers.task_progress import TaskProgressTrigger

    info = get_provider_info()
    assert TaskProgressTrigger("t-1", first_poll_at=0.0).serialize()[0] == TRIGGER_PATH
    assert TaskProgressSensor.start_trigger_args.trigger_cls == TRIGGER_PATH
    assert info["extra-links"] == [LINK_PATH]
    assert (LotImagePictureLink.name, LotImagePictureLink().xcom_key) == (
        "LotImage picture",
        "_link_LotImagePictureLink",
    )
    (connection_type,) = info["connection-types"]
    assert connection_type["connection-type"] == "lotimage"
    assert connection_type["hook-class-name"] == f"{PACKAGE}.hooks.lotimage.LotImageHook"
    assert info["triggers"][0]["python-modules"] == [f"{PACKAGE}.triggers.task_progress"]


def test_the_entry_points() -> None:
    points = {(point.group, point.name): point.value for point in distribution(DISTRIBUTION).entry_points}
    assert points == {
        ("apache_airflow_provider", "provider_info"): f"{PACKAGE}.get_provider_info:get_provider_info",
        ("airflow.plugins", "lotimage_gallery"): f"{PACKAGE}.gallery.plugin:LotImageGalleryPlugin",
    }


def test_a_trigger_serialized_before_deserializes_to_the_same_kwargs() -> None:
    from airflow_provider_lotimage.triggers.task_progress import TaskProgressTrigger

    trigger = TaskProgressTrigger(**json.loads(json.dumps(SERIALIZED_BEFORE)))
    assert trigger.serialize() == (TRIGGER_PATH, SERIALIZED_BEFORE)
    assert trigger.release_keys == ["lotimage_task", "lotimage_paid_tasks"]
    assert (trigger.kind, trigger.adaptive_polling, trigger.first_poll_at) == (
        "upscale",
        False,
        2_000_000_010.0,
    )


def test_the_trigger_stores_the_xcoms_a_task_would() -> None:
    from airflow_provider_lotimage.triggers.task_progress import TaskProgressTrigger

    trigger = TaskProgressTrigger(**SERIALIZED_BEFORE)
    result = {"lotimage_task_id": "t-1", "image_url": "https://cdn.example/a.png"}
    assert set(trigger.end_xcoms(result)) == {"lotimage_image_url", "lotimage_task_id"}
    again = TaskProgressTrigger(**{**SERIALIZED_BEFORE, "push_return_value": True})
    assert set(again.end_xcoms(result)) == {"lotimage_image_url", "lotimage_task_id", "return_value"}


def test_the_keys_of_xcoms_records_and_the_dag_param() -> None:
    from airflow_provider_lotimage import keys
    from airflow_provider_lotimage.operators.submit import LotImageSubmitOperator

    assert (keys.TASK_ID_XCOM_KEY, keys.IMAGE_URL_XCOM_KEY, keys.RETURN_VALUE_XCOM_KEY) == (
        "lotimage_task_id",
        "lotimage_image_url",
        "return_value",
    )
    assert (keys.PAID_TASKS_KEY, keys.SUBMITTED_TASK_KEY, keys.WATCH_STATE_KEY) == (
        "lotimage_paid_tasks",
        "lotimage_task",
        "lotimage_progress_watch",
    )
    assert (keys.FAILURE_XCOM_KEY, keys.PROMPT_REPORT_XCOM_KEY, keys.BATCH_REPORT_XCOM_KEY) == (
        "lotimage_failure",
        "lotimage_prompt_report",
        "lotimage_batch_report",
    )
    assert LotImageSubmitOperator.external_id_key == "lotimage_task"
    assert keys.BUDGET_PARAM == "max_paid_tasks_per_run"


def test_the_variable_names_below_airflow_3_3() -> None:
    from airflow_provider_lotimage.utils.task_state import VariableTaskState

    digest = hashlib.sha256(b"d/manual__2026/t/3").hexdigest()[:32]
    records = VariableTaskState(dag_id="d", run_id="manual__2026", task_id="t", map_index=3)
    assert [records.variable_key(key) for key in ("lotimage_task", "lotimage_progress_watch")] == [
        f"lotimage_task__{digest}",
        f"lotimage_progress_watch__{digest}",
    ]
    assert records.variable_key("lotimage_paid_tasks") == f"lotimage_paid_tasks__{digest}"


def test_the_asset_event_extra() -> None:
    from airflow_provider_lotimage import keys

    assert [
        keys.EVENT_NEW_COUNT,
        keys.EVENT_UNCHANGED_COUNT,
        keys.EVENT_NEW_PATHS,
        keys.EVENT_TASK_IDS,
        keys.EVENT_DESTINATION,
    ] == ["new_count", "unchanged_count", "new_paths", "lotimage_task_ids", "destination"]


def test_the_config_options_and_the_gallery_prefix() -> None:
    from airflow_provider_lotimage import config
    from airflow_provider_lotimage.get_provider_info import get_provider_info

    options = get_provider_info()["config"]["lotimage"]["options"]
    assert {name: option["default"] for name, option in options.items()} == {
        "gallery_thumbnail_folder": "",
        "gallery_page_size": "48",
        "gallery_picture_hosts": "",
        "gallery_extra_link": "True",
        "lineage_include_prompt": "False",
        "webhook_redis_conn_id": "redis_default",
    }
    assert (config.SECTION, config.GALLERY_PREFIX) == ("lotimage", "/lotimage")


def test_the_webhook_names() -> None:
    """Webhook URLs given to the service, and Redis keys of waits in flight, outlive a release."""
    from airflow_provider_lotimage.client import webhook
    from airflow_provider_lotimage.webhooks import redis_store

    assert (webhook.WEBHOOK_PREFIX, webhook.DELIVERY_ROUTE) == ("/lotimage-webhooks", "/deliveries")
    assert webhook.webhook_url("https://a.example/", "T" * 43) == (
        "https://a.example/lotimage-webhooks/deliveries?token=" + "T" * 43
    )
    assert redis_store.registration_key("k") == "lotimage:webhook:k"
    assert redis_store.delivery_key("k") == "lotimage:webhook:k:delivered"


def test_the_rate_budget_names() -> None:
    from airflow_provider_lotimage.ratelimit import redis_budget
    from airflow_provider_lotimage.ratelimit.base import key_identity
    from airflow_provider_lotimage.ratelimit.local import local_limiter

    identity = key_identity("https://api.lotimage.com", "sk-key")
    assert identity == hashlib.sha256(b"https://api.lotimage.com\0sk-key").hexdigest()[:20]
    assert redis_budget.KEY_PREFIX == "lotimage:rate:"
    limiter = local_limiter(identity, 3.0, "host")
    assert (
        limiter.state_file
        == Path(tempfile.gettempdir()) / "airflow-provider-lotimage" / f"rate-{identity}.json"
    )


def test_the_sidecar_and_the_picture_names() -> None:
    from airflow_provider_lotimage.storage.layout import Sidecar, picture_name, safe_task_id, sidecar_name

    assert [field.name for field in fields(Sidecar)] == SIDECAR_FIELDS
    sidecar = Sidecar(lotimage_task_id="t-1", index=2, file="t-1_2.png", bytes=10, sha256="0" * 64)
    assert list(json.loads(sidecar.to_json())) == SIDECAR_FIELDS
    assert (picture_name("t-1", 2, "PNG"), sidecar_name("t-1", 2)) == ("t-1_2.png", "t-1_2.json")
    digest = hashlib.sha256(b"a/b").hexdigest()[:10]
    assert safe_task_id("a/b") == f"a_b-{digest}"


def test_the_fingerprint_a_stored_submission_carries() -> None:
    """A retry compares it with the stored one: a new formula would submit, and pay, again."""
    from airflow_provider_lotimage.operators.imagine import ImagineOperator

    task: Any = ImagineOperator(task_id="i", prompt="p")
    fields_text = json.dumps({"class": "ImagineOperator", "cutting": False, "prompt": "p"}, sort_keys=True)
    assert task._fingerprint() == hashlib.sha256(fields_text.encode()).hexdigest()[:16]
