"""Fixtures for running the example DAGs with ``dag.test()`` against the emulator."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

EXAMPLE_DAGS = Path(__file__).resolve().parents[2] / "example_dags"


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
    from airflow.dag_processing.dagbag import DagBag

    def load(dag_id: str):
        importlib.invalidate_caches()
        bag = DagBag(dag_folder=str(EXAMPLE_DAGS))
        assert not bag.import_errors, bag.import_errors
        return bag.dags[dag_id]

    return load
