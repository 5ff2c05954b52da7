"""How an error of this provider ends an Airflow task: with or without Airflow's retries, and recorded.

Operators and the sensor run their work inside :func:`fail_fast`; which errors it lets through to
Airflow's retries is decided by the error classes themselves (:mod:`..exceptions`), never here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from airflow.providers.common.compat.sdk import AirflowFailException, AirflowSkipException, TaskDeferred

from airflow_provider_lotimage.client.redaction import scrub
from airflow_provider_lotimage.exceptions import LotImageError
from airflow_provider_lotimage.keys import FAILURE_XCOM_KEY

if TYPE_CHECKING:
    from airflow.sdk import Context


@contextlib.contextmanager
def fail_fast(*, resubmits: bool) -> Iterator[None]:
    """Turn errors that no Airflow retry can fix into ``AirflowFailException``.

    :param resubmits: whether a retry of this task submits a new paid task (see
        :meth:`~airflow_provider_lotimage.exceptions.LotImageError.ends_task`).
    :raises AirflowFailException: for a final error, chained to it.
    """
    try:
        yield
    except LotImageError as err:
        if err.ends_task(resubmits=resubmits):
            raise AirflowFailException(f"{type(err).__name__}: {err}") from err
        raise


def failure_record(err: BaseException) -> dict[str, object]:
    """Describe why a task failed, for a report: the error's class, its message, and whether it is final.

    An ``AirflowFailException`` raised by :func:`fail_fast` is described by the LotImage error it
    wraps, whose message quotes the service's reason. Other errors' text is scrubbed of URL
    credentials; no error of this provider carries the key.
    """
    cause = err.__cause__ if isinstance(err, AirflowFailException) else None
    shown = cause if isinstance(cause, LotImageError) else err
    return {
        "error": type(shown).__name__,
        "reason": scrub(str(shown)) or type(shown).__name__,
        "final": isinstance(err, AirflowFailException),
    }


@contextlib.contextmanager
def recorded_failure(context: Context) -> Iterator[None]:
    """Push why the task failed (XCom ``lotimage_failure``) before the failure reaches Airflow.

    A batch then reports every failed prompt with the service's reason although the task code of
    its report cannot read other tasks' logs. A deferral is not a failure, and a push that fails
    must not hide the error that caused it.
    """
    try:
        yield
    except (TaskDeferred, AirflowSkipException):
        raise
    except Exception as err:
        with contextlib.suppress(Exception):
            context["ti"].xcom_push(key=FAILURE_XCOM_KEY, value=failure_record(err))
        raise
