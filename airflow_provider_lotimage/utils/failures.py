"""How an error of this provider ends an Airflow task: with or without Airflow's retries.

Operators and the sensor run their work inside :func:`fail_fast`; which errors it lets through to
Airflow's retries is decided by the error classes themselves (:mod:`..exceptions`), never here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_lotimage.exceptions import LotImageError


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
