"""An auth manager for the route tests: ``reader`` reads only the DAGs in READABLE, ``editor`` edits them.

Every other user is decided by Airflow's simple auth manager, teams included: on Airflow 3.2+ a
user whose token names teams may not touch a DAG of another team (its bundle's team).
"""

from __future__ import annotations

from typing import Any

from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

READABLE: set[str] = set()


class OneDagReaderAuthManager(SimpleAuthManager):
    """The simple auth manager, except for ``reader`` (reads READABLE) and ``editor`` (edits READABLE)."""

    def is_authorized_dag(
        self, *, method: Any, user: Any, access_entity: Any = None, details: Any = None
    ) -> bool:
        readable = details is not None and details.id in READABLE
        if user.get_name() == "reader":
            return method == "GET" and readable
        if user.get_name() == "editor":  # may also change these DAGs' runs and XComs, nothing else
            return readable
        return super().is_authorized_dag(
            method=method, user=user, access_entity=access_entity, details=details
        )
