"""Test-wide Airflow set-up: a private AIRFLOW_HOME per test process (each pytest-xdist worker has
its own), no example DAGs, our example_dags folder; and which tests must not run in parallel.

These variables must be set before anything imports airflow, hence the top of this file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
#: Under pytest-xdist each worker process (gw0, gw1, ...) is a test process of its own: it gets its
#: own AIRFLOW_HOME (a subfolder of a given one) and so its own SQLite metadata DB.
_XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
_AIRFLOW_HOME = (
    Path(os.environ.get("LOTIMAGE_TEST_AIRFLOW_HOME") or tempfile.mkdtemp(prefix="lotimage-airflow-"))
    / _XDIST_WORKER
)
_AIRFLOW_HOME.mkdir(parents=True, exist_ok=True)
os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO_ROOT / "example_dags")
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
# A DB chosen outside the suite is kept; the one this file chose follows the AIRFLOW_HOME (an xdist
# worker inherits the environment of the process that started it, that process's DB included).
_OWN_DB = "LOTIMAGE_TEST_OWN_SQL_ALCHEMY_CONN"
if os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "") in ("", os.environ.get(_OWN_DB)):
    os.environ[_OWN_DB] = f"sqlite:///{_AIRFLOW_HOME / 'airflow.db'}"
    os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = os.environ[_OWN_DB]
os.environ.setdefault("AIRFLOW__CORE__EXECUTOR", "LocalExecutor")
os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "INFO")


import pytest  # noqa: E402  (after the environment above, on purpose)


def _install_airflow_shims() -> None:
    """Let the suite run on Airflow 3.1 and 3.2 too (tests/compat/shims.py; nothing on 3.3)."""
    from tests.compat import shims

    shims.install()


_install_airflow_shims()

#: How `make test` schedules the suite, decided here only (scripts/run-tests.sh runs it). Tests
#: marked ``serial`` run one at a time, after the others, in a pytest run of their own: the real
#: Airflow deployments (CPU-heavy, timing-sensitive), and the tests whose processes are timed
#: against a key's real rate (a call held up by a busy neighbour looks like a burst to the emulator,
#: which answers 429): the thousand-trigger test among them, which saw two 429s in one run beside
#: the deployments; and the outage rows, whose 3-second outage must outlast a retry loop and a
#: poll (in xdist workers one row once saw only a loop's worth of failed reads). Every other test
#: runs in pytest-xdist workers (``-n``).
SERIAL = (
    "tests/deployment/",
    "tests/distributed/",
    "tests/ratelimit/test_hooks_share_the_key.py",
    "tests/ratelimit/test_local.py",
    "tests/ratelimit/test_shared_budget.py",
    "tests/reliability/test_outages.py",
    "tests/triggers/test_many_triggers.py",
)


#: Of the serial tests, those bound by a key's real rate rather than the CPU (the thousand-trigger
#: test: about 400 s of waiting, 5 s of CPU). `make test` runs them beside the reduced stages,
#: which run at the lowest CPU priority so they cannot hold up the paced test's event loop
#: (scripts/run-paced-beside.sh); `scripts/run-tests.sh` leaves them out of its serial run.
PACED = ("tests/triggers/test_many_triggers.py",)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "serial: runs one at a time, never in an xdist worker (-n)")
    config.addinivalue_line("markers", "paced: bound by a key's real rate; runs beside CPU work at nice 19")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test by where it is (before ``-m`` selects)."""
    for item in items:
        where = item.path.resolve().relative_to(REPO_ROOT).as_posix()
        if where.startswith(SERIAL):
            item.add_marker(pytest.mark.serial)
        if where.startswith(PACED):
            item.add_marker(pytest.mark.paced)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Refuse to run serial tests in xdist workers: they would contend for the CPU they time."""
    if _XDIST_WORKER and item.get_closest_marker("serial"):
        pytest.fail("tests marked serial run without -n (the others: -m 'not serial')", pytrace=False)


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
