"""What a task remembers across its tries: the submitted taskId, and the sensor's reschedule watch.

On Airflow 3.3 that is Airflow's own ``context["task_state_store"]`` (scoped to the task
instance, kept across retries, deleted with its DAG run), and the Task SDK's
``ResumableJobMixin`` writes the submitted job there before waiting. Airflow 3.1 and 3.2 have
neither, so below 3.3 the same records live in Airflow Variables instead:

* :class:`VariableTaskState` has the store's ``get``/``set``/``delete`` interface. Each record is
  one Variable named ``<key>__<digest>``, the digest a SHA-256 of the task instance's
  ``dag_id/run_id/task_id/map_index`` (so ``lotimage_task__…`` for a submitted task,
  ``lotimage_progress_watch__…`` for a watch). The Task SDK's ``Variable`` goes through the API
  server, never the metadata database, like every other call of a task.
* :class:`VariableResumableJobMixin` makes the SDK mixin's decisions (reconnect to a running job,
  return a finished one, submit afresh otherwise) against that record.

Variables, unlike the task state store, outlive their DAG run, so :func:`release` deletes a record
once its task no longer needs it; on 3.3 it does nothing, leaving Airflow's store as it was.
Which of the two is used is decided by :data:`~..version_compat.HAS_TASK_STATE_STORE`, here only.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, Protocol

from airflow.providers.common.compat.sdk import Variable

from airflow_provider_lotimage.keys import variable_name
from airflow_provider_lotimage.version_compat import HAS_TASK_STATE_STORE

if TYPE_CHECKING:
    from airflow.sdk import Context
    from airflow.sdk.types import Logger


class TaskState(Protocol):
    """What this provider uses of a task state store: read and write one key of one task instance."""

    def get(self, key: str, default: Any = None) -> Any:
        """Return the value stored under ``key``, or ``default``."""

    def set(self, key: str, value: Any) -> None:
        """Store ``value`` (JSON data, not ``None``) under ``key``."""


class VariableTaskState:
    """A task instance's records kept in Airflow Variables (Airflow < 3.3), read and written as JSON.

    :param dag_id: the task instance's DAG.
    :param run_id: its DAG run.
    :param task_id: its task.
    :param map_index: its map index (``-1`` when not mapped).
    """

    def __init__(self, *, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> None:
        self.task_instance = f"{dag_id}/{run_id}/{task_id}/{map_index}"

    @classmethod
    def of(cls, context: Context) -> VariableTaskState:
        """Return the records of the running task instance.

        :param context: the task's context.
        """
        ti = context["ti"]
        map_index = ti.map_index
        return cls(
            dag_id=ti.dag_id,
            run_id=ti.run_id,
            task_id=ti.task_id,
            map_index=-1 if map_index is None else int(map_index),
        )

    def variable_key(self, key: str) -> str:
        """Return the name of the Variable that holds ``key``: ``<key>__<digest>`` (see :mod:`..keys`)."""
        return variable_name(key, self.task_instance)

    def get(self, key: str, default: Any = None) -> Any:
        """Return the value stored under ``key``, or ``default`` when there is none.

        :param key: the record's key, e.g. ``lotimage_task``.
        :param default: what to return without a record.
        """
        return Variable.get(self.variable_key(key), default=default, deserialize_json=True)

    def set(self, key: str, value: Any) -> None:
        """Store ``value`` under ``key``, replacing any earlier value.

        :param key: the record's key.
        :param value: JSON data; ``None`` is refused, as the task state store does.
        :raises ValueError: for ``None``.
        """
        if value is None:
            raise ValueError("Cannot set value as None")
        description = (
            f"LotImage provider: {key!r} of task instance {self.task_instance}, kept across its "
            "tries. Deleted when the task succeeds; safe to delete once it no longer runs."
        )
        Variable.set(self.variable_key(key), value, description=description, serialize_json=True)

    def delete(self, key: str) -> None:
        """Delete the record of ``key``; nothing happens when there is none."""
        Variable.delete(self.variable_key(key))


def task_state(context: Context) -> TaskState | None:
    """Return where the running task keeps records across tries (``None``: nowhere).

    :param context: the task's context.
    """
    if HAS_TASK_STATE_STORE:
        return context.get("task_state_store")
    return VariableTaskState.of(context)


def release(context: Context, key: str) -> None:
    """Drop the record of ``key`` once the task no longer needs it, where records outlive the run.

    A no-op on Airflow 3.3, whose store belongs to the DAG run (and, with
    ``[state_store] clear_on_success``, is cleared by Airflow itself).

    :param context: the task's context.
    :param key: the record's key.
    """
    if not HAS_TASK_STATE_STORE:
        VariableTaskState.of(context).delete(key)


class VariableResumableJobMixin(ABC):
    """Airflow < 3.3: the Task SDK's ``ResumableJobMixin``, with the record in a Variable.

    Same contract as the SDK's mixin (``external_id_key``, ``durable``, the six methods a
    subclass implements, ``execute_resumable`` called from ``execute``) and the same decisions:
    a stored job that is active is reconnected to, a succeeded one returns its result, anything
    else is submitted afresh; the new job's id is stored before any waiting.
    """

    if TYPE_CHECKING:
        log: Logger  # BaseOperator's, which the operator class adds

    external_id_key: str = "remote_job_id"

    def __init__(self, *, durable: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.durable = durable

    def execute_resumable(self, context: Context) -> Any:
        """Reconnect to the job a previous try stored, or submit one and store it before waiting.

        :param context: the task's context.
        :return: what ``poll_until_complete`` (reconnected) or ``get_job_result`` return.
        """
        store = task_state(context) if self.durable else None
        stored = store.get(self.external_id_key) if store is not None else None
        if stored:
            status = self.get_job_status(stored, context)
            if self.is_job_active(status):
                self.log.info("Reconnecting to existing job %s (%s)", stored, status)
                return self.poll_until_complete(stored, context)
            if self.is_job_succeeded(status):
                self.log.info("Job %s already completed successfully, skipping resubmission", stored)
                return self.get_job_result(stored, context)
            self.log.warning("Prior job %s in terminal state %r, resubmitting fresh", stored, status)
        external_id = self.submit_job(context)
        if store is not None and external_id is not None:
            store.set(self.external_id_key, external_id)
        self.poll_until_complete(external_id, context)
        return self.get_job_result(external_id, context)

    @abstractmethod
    def submit_job(self, context: Context) -> Any:
        """Submit the job and return its id (JSON data); ``None`` means nothing to store."""

    @abstractmethod
    def get_job_status(self, external_id: Any, context: Context) -> str:
        """Return the stored job's status, as the service names it."""

    @abstractmethod
    def is_job_active(self, status: str) -> bool:
        """Return whether a job of this status can be reconnected to."""

    @abstractmethod
    def is_job_succeeded(self, status: str) -> bool:
        """Return whether a job of this status finished successfully."""

    @abstractmethod
    def poll_until_complete(self, external_id: Any, context: Context) -> Any:
        """Wait until the job is done; raise when it failed."""

    @abstractmethod
    def get_job_result(self, external_id: Any, context: Context) -> Any:
        """Return the finished job's result."""


# mypy checks the operators against the SDK's mixin; at run time Airflow < 3.3 gets ours.
if TYPE_CHECKING or HAS_TASK_STATE_STORE:
    from airflow.providers.common.compat.sdk import ResumableJobMixin
else:
    ResumableJobMixin = VariableResumableJobMixin
