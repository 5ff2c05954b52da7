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


def _install_airflow_shims() -> None:
    """Let the suite run on Airflow 3.1 and 3.2 too (tests/compat/shims.py; nothing on 3.3)."""
    from tests.compat import shims

    shims.install()


_install_airflow_shims()


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """A migrated metadata DB in the test AIRFLOW_HOME, made once per session."""
    from airflow.utils import db

    db.initdb()


@pytest.fixture
def output_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the example DAGs write pictures (read by the DAG files at parse time)."""
    out = tmp_path / "output"
    monkeypatch.setenv("LOTIMAGE_OUTPUT_DIR", str(out))
    monkeypatch.setenv("LOTIMAGE_POLL_INTERVAL", "0.3")
    return out


@pytest.fixture
def load_example(airflow_db: None):
    """Parse one example DAG file freshly (so it sees the test's environment)."""
    import importlib

    from airflow.dag_processing.dagbag import DagBag

    def load(dag_id: str):
        importlib.invalidate_caches()
        bag = DagBag(dag_folder=str(REPO_ROOT / "example_dags"))
        assert not bag.import_errors, bag.import_errors
        return bag.dags[dag_id]

    return load
