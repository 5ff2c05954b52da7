"""The version tests run real DAGs: they need the metadata database."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _db(airflow_db: None) -> None:
    return None
