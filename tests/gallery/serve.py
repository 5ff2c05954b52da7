"""The api-server app for ``uvicorn --factory tests.gallery.serve:core_app`` (a process of its own).

The environment (AIRFLOW_HOME, the database, the auth manager, the JWT secret, ``[lotimage]``)
comes from the test that starts it, so it serves the same runs the test stored.
"""

from __future__ import annotations

from typing import Any


def core_app() -> Any:
    """Airflow's api-server app with the core API and the plugins, as the in-process tests use."""
    from airflow.api_fastapi.app import create_app

    return create_app("core")
