"""An auth manager for the route tests: user ``reader`` may read only the DAGs in READABLE."""

from __future__ import annotations

from typing import Any

from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

READABLE: set[str] = set()


class OneDagReaderAuthManager(SimpleAuthManager):
    """The simple auth manager, except that ``reader`` reads only READABLE's DAGs."""

    def is_authorized_dag(
        self, *, method: Any, user: Any, access_entity: Any = None, details: Any = None
    ) -> bool:
        if user.get_name() == "reader":
            return method == "GET" and details is not None and details.id in READABLE
        return super().is_authorized_dag(
            method=method, user=user, access_entity=access_entity, details=details
        )
