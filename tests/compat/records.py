"""Where a task's records ended up, read from the metadata database by the test process."""

from __future__ import annotations

import json
from typing import Any


def variable_record(dag_id: str, run_id: str, task_id: str, key: str) -> Any:
    """The JSON value of the Variable that holds ``key`` of a task instance, or None."""
    from airflow.models.variable import Variable
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from airflow_provider_lotimage.utils.task_state import VariableTaskState

    name = VariableTaskState(dag_id=dag_id, run_id=run_id, task_id=task_id).variable_key(key)
    with create_session() as session:
        variable = session.scalars(select(Variable).where(Variable.key == name)).one_or_none()
        return None if variable is None else json.loads(variable.val)


def store_record(dag_id: str, run_id: str, task_id: str, key: str) -> Any:
    """Airflow 3.3: the JSON value of ``key`` in the task state store of a task instance, or None."""
    from airflow.models.task_state_store import TaskStateStoreModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    query = select(TaskStateStoreModel).where(
        TaskStateStoreModel.dag_id == dag_id,
        TaskStateStoreModel.run_id == run_id,
        TaskStateStoreModel.task_id == task_id,
        TaskStateStoreModel.key == key,
    )
    with create_session() as session:
        row = session.scalars(query).one_or_none()
        return None if row is None else json.loads(row.value)


def durable_record(run: Any, task_id: str, key: str) -> Any:
    """What a task instance of ``run`` keeps under ``key`` where this Airflow keeps it."""
    from airflow_provider_lotimage.version_compat import HAS_TASK_STATE_STORE

    read = store_record if HAS_TASK_STATE_STORE else variable_record
    return read(run.dag_id, run.run_id, task_id, key)


def leftover_variables(run: Any, task_id: str, *keys: str) -> dict[str, Any]:
    """The Variables this provider left behind for a task instance of ``run`` (key -> value)."""
    found = {key: variable_record(run.dag_id, run.run_id, task_id, key) for key in keys}
    return {key: value for key, value in found.items() if value is not None}
