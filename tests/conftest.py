"""Test-wide Airflow set-up: a private AIRFLOW_HOME, no example DAGs, our example_dags folder.

These variables must be set before anything imports airflow, hence the top of this file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
_AIRFLOW_HOME = Path(
    os.environ.get("LOTIMAGE_TEST_AIRFLOW_HOME") or tempfile.mkdtemp(prefix="lotimage-airflow-")
)
os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO_ROOT / "example_dags")
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
os.environ.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{_AIRFLOW_HOME / 'airflow.db'}")
os.environ.setdefault("AIRFLOW__CORE__EXECUTOR", "LocalExecutor")
os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "INFO")


import pytest  # noqa: E402  (after the environment above, on purpose)


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """A migrated metadata DB in the test AIRFLOW_HOME, made once per session."""
    from airflow.utils import db

    db.initdb()
