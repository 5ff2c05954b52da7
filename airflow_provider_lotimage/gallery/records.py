"""What the runs recorded: which runs stored LotImage pictures, and where.

A run's pictures are the return values (XCom) of its SaveImagesOperator tasks. Those tasks are
recognised by their Asset events, whose ``extra`` SaveImagesOperator marks with
``lotimage_task_ids``: that also finds subclasses and renamed tasks, and it finds only tasks that
succeeded (a failed save emits no event and pushes no return value). Everything is read through
the api-server's own SQLAlchemy session and models, as Airflow's API routes do; nothing here
touches storage.

The XCom alone is not trusted: anyone allowed to edit a DAG's XComs can write any path into it.
An Asset event with a source task instance, on the other hand, can only come from the task itself
(events created through the REST API have none). So a path counts only if the save task's event
vouches for it: a direct child of the ``destination`` the event recorded, named after one of its
``lotimage_task_ids`` (:func:`.index.in_destination`). Events recorded before SaveImagesOperator
wrote ``destination`` vouch for nothing: those runs show no pictures.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import String, cast, select

from airflow_provider_lotimage.gallery.index import in_destination
from airflow_provider_lotimage.keys import (
    BATCH_REPORT_XCOM_KEY,
    EVENT_DESTINATION,
    EVENT_TASK_IDS,
    RETURN_VALUE_XCOM_KEY,
)
from airflow_provider_lotimage.storage.layout import file_stems

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


@dataclass(frozen=True)
class RunInfo:
    """A DAG run that stored pictures, as listed on the DAG's page."""

    run_id: str
    run_after: datetime | None
    state: str | None


@dataclass(frozen=True)
class FailedPrompt:
    """A prompt a batch report of the run lists as failed: shown as text, never as a link or path."""

    index: int
    prompt: str
    #: ``(step, reason)`` of each failed step, the cause first.
    reasons: tuple[tuple[str, str], ...]


#: Bounds on what one page reads from batch reports (any XCom editor can write one): reports per
#: run, failed prompts shown, reasons per prompt and characters per text.
MAX_REPORTS, MAX_FAILED, MAX_REASONS, MAX_TEXT = 5, 200, 6, 300


@dataclass(frozen=True)
class SaveEvent:
    """The Asset event of one LotImage save: which task instance, where it stored, for which tasks."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    destination: str | None
    #: The file-name stems of the LotImage tasks it saved (``storage.layout.file_stems``).
    stems: frozenset[str]

    def vouches_for(self, path: str) -> bool:
        """Whether this save could have stored ``path`` (see the module doc)."""
        return self.destination is not None and in_destination(path, self.destination, self.stems)


def _marked_events(session: Session, *conditions: Any) -> list[SaveEvent]:
    """Return the Asset events of LotImage saves (events without a source task instance are ignored)."""
    from airflow.models.asset import AssetEvent

    query = select(
        AssetEvent.source_dag_id,
        AssetEvent.source_run_id,
        AssetEvent.source_task_id,
        AssetEvent.source_map_index,
        AssetEvent.extra,
    ).where(
        AssetEvent.source_dag_id.is_not(None),
        # A cheap pre-filter the database can do (JSON as text); the marker is checked below.
        cast(AssetEvent.extra, String).like(f"%{EVENT_TASK_IDS}%"),
        *conditions,
    )
    return [
        SaveEvent(
            dag_id,
            run_id,
            task_id,
            -1 if map_index is None else map_index,
            extra[EVENT_DESTINATION] if isinstance(extra.get(EVENT_DESTINATION), str) else None,
            file_stems(task for task in extra[EVENT_TASK_IDS] if isinstance(task, str)),
        )
        for dag_id, run_id, task_id, map_index, extra in session.execute(query)
        if isinstance(extra, dict) and isinstance(extra.get(EVENT_TASK_IDS), list) and run_id and task_id
    ]


def dags_with_pictures(session: Session) -> set[str]:
    """Every DAG with a run that stored LotImage pictures."""
    return {event.dag_id for event in _marked_events(session)}


def runs_with_pictures(session: Session, dag_id: str) -> list[RunInfo]:
    """Return the DAG's runs that stored pictures, newest first."""
    from airflow.models.asset import AssetEvent
    from airflow.models.dagrun import DagRun

    run_ids = {event.run_id for event in _marked_events(session, AssetEvent.source_dag_id == dag_id)}
    if not run_ids:
        return []
    rows = session.execute(
        select(DagRun.run_id, DagRun.run_after, DagRun.state).where(
            DagRun.dag_id == dag_id, DagRun.run_id.in_(run_ids)
        )
    ).all()
    runs = [RunInfo(run_id, run_after, str(state) if state else None) for run_id, run_after, state in rows]
    return sorted(runs, key=lambda run: (run.run_after is not None, run.run_after, run.run_id), reverse=True)


def _return_values(
    session: Session, dag_id: str, tasks: Iterable[tuple[str, str, int]]
) -> dict[tuple[str, str, int], Any]:
    """Return the values of ``(run_id, task_id, map_index)`` task instances, in the order pushed."""
    from airflow.models.xcom import XComModel

    wanted = set(tasks)
    if not wanted:
        return {}
    rows = session.execute(
        select(XComModel.run_id, XComModel.task_id, XComModel.map_index, XComModel.value)
        .where(
            XComModel.dag_id == dag_id,
            XComModel.key == RETURN_VALUE_XCOM_KEY,
            XComModel.run_id.in_({run_id for run_id, _, _ in wanted}),
            XComModel.task_id.in_({task_id for _, task_id, _ in wanted}),
        )
        .order_by(XComModel.timestamp)
    ).all()
    return {
        (row.run_id, row.task_id, row.map_index): XComModel.deserialize_value(row)
        for row in rows
        if (row.run_id, row.task_id, row.map_index) in wanted
    }


def recorded_paths(session: Session, dag_id: str, run_ids: Iterable[str]) -> dict[str, list[str]]:
    """Per run: the picture paths its save tasks returned and their events vouch for, in order."""
    from airflow.models.asset import AssetEvent

    run_ids = set(run_ids)
    events: dict[tuple[str, str, int], list[SaveEvent]] = {}
    for event in _marked_events(
        session, AssetEvent.source_dag_id == dag_id, AssetEvent.source_run_id.in_(run_ids)
    ):
        events.setdefault((event.run_id, event.task_id, event.map_index), []).append(event)
    values = _return_values(session, dag_id, events)
    paths: dict[str, list[str]] = {run_id: [] for run_id in run_ids}
    for instance, value in values.items():
        for path in value if isinstance(value, list) else []:
            if (
                isinstance(path, str)
                and path not in paths[instance[0]]
                and any(event.vouches_for(path) for event in events[instance])
            ):
                paths[instance[0]].append(path)
    return paths


def task_xcom(session: Session, dag_id: str, run_id: str, task_id: str, map_index: int, key: str) -> Any:
    """One XCom value of one task instance, or None."""
    from airflow.models.xcom import XComModel

    row = session.execute(
        select(XComModel.value).where(
            XComModel.dag_id == dag_id,
            XComModel.run_id == run_id,
            XComModel.task_id == task_id,
            XComModel.map_index == map_index,
            XComModel.key == key,
        )
    ).first()
    return None if row is None else XComModel.deserialize_value(row)


def pressed_buttons(session: Session, dag_id: str, run_id: str) -> dict[str, str]:
    """LotImage taskId -> the button pressed to make it, for the run's button tasks.

    The sidecar does not say which button made an upscale; the button task's rendered ``button``
    field does, next to its return value (the new task's result). Airflow keeps rendered fields for
    the most recent runs only, so older runs show no button.
    """
    from airflow.models.renderedtifields import RenderedTaskInstanceFields as Rtif

    rows = session.execute(
        select(Rtif.task_id, Rtif.map_index, Rtif.rendered_fields).where(
            Rtif.dag_id == dag_id, Rtif.run_id == run_id
        )
    ).all()
    buttons = {
        (task_id, map_index): fields["button"]
        for task_id, map_index, fields in rows
        if isinstance(fields, dict) and isinstance(fields.get("button"), str) and "lotimage_task_id" in fields
    }
    results = _return_values(session, dag_id, ((run_id, task, index) for task, index in buttons))
    found: dict[str, str] = {}
    for (_, task_id, map_index), result in results.items():
        new_id = result.get("lotimage_task_id") if isinstance(result, dict) else result
        if isinstance(new_id, str):
            found[new_id] = buttons[(task_id, map_index)]
    return found


def failed_prompts(session: Session, dag_id: str, run_id: str) -> list[FailedPrompt]:
    """Return the failed prompts the run's batch reports list (XCom ``lotimage_batch_report``), bounded.

    A report is only text to show (escaped by the page): it names no file the gallery would serve,
    so an edited XCom can at worst change what the list says, within :data:`MAX_FAILED` lines.
    """
    from airflow.models.xcom import XComModel

    rows = session.execute(
        select(XComModel.value)
        .where(XComModel.dag_id == dag_id, XComModel.run_id == run_id, XComModel.key == BATCH_REPORT_XCOM_KEY)
        .limit(MAX_REPORTS)
    ).all()
    failed: list[FailedPrompt] = []
    for row in rows:
        report = XComModel.deserialize_value(row)
        entries = report.get("entries") if isinstance(report, dict) else None
        for entry in entries if isinstance(entries, list) else []:
            if len(failed) < MAX_FAILED and isinstance(entry, dict) and entry.get("state") == "failed":
                failed.append(_failed_prompt(entry))
    return failed


def _failed_prompt(entry: dict[str, Any]) -> FailedPrompt:
    listed = entry.get("failures")
    failures: list[Any] = listed if isinstance(listed, list) else []
    reasons = tuple(
        (str(failure.get("step"))[:MAX_TEXT], str(failure.get("reason"))[:MAX_TEXT])
        for failure in failures[:MAX_REASONS]
        if isinstance(failure, dict)
    )
    index = entry.get("index")
    return FailedPrompt(
        index if isinstance(index, int) else -1, str(entry.get("prompt", ""))[:MAX_TEXT], reasons
    )
