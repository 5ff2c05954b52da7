"""One distributed deployment for every scenario of this folder, and the emulator it calls.

The deployment (``Topology.distributed()``: PostgreSQL, CeleryExecutor with two workers on Redis,
two triggerers, a second Redis for the rate budget) takes about half a minute to start on two
cores, so all scenarios share it: the fixture is package-scoped, stopped after this folder's last
test rather than at the end of the whole session. Each scenario starts from a reset emulator and
the LotImage connection in scope ``redis``, and leaves every service running.

Without PostgreSQL or redis-server (``scripts/system-packages.sh`` installs them as root) the
scenarios are skipped, with the reason; with ``CI=true`` they fail instead, since CI must run them.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from lotimage_emulator import Emulator, run_emulator

from airflow_harness import AirflowDeployment, pid_alive
from airflow_harness.redis_server import redis_connection
from airflow_harness.requirements import missing_requirements
from airflow_harness.topology import Topology

from .helpers import API_KEY, POLL_INTERVAL, POOL, POOL_SLOTS, set_lotimage_connection

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_DAGS = REPO_ROOT / "example_dags"
SCENARIO_DAGS = Path(__file__).resolve().parent / "dags"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "distributed: runs on the shared distributed deployment (PostgreSQL, Celery, Redis)"
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Remember each phase's report on the item so fixtures can tell whether the test failed."""
    report = yield
    setattr(item, f"_distributed_rep_{report.when}", report)
    return report


def require(missing: list[str], ci: bool) -> None:
    """Skip when something is ``missing``; fail instead in CI, where nothing may be skipped for it."""
    if not missing:
        return
    reason = f"distributed deployment needs {'; '.join(missing)} (run: sudo bash scripts/system-packages.sh)"
    if ci:
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="package")
def requirements_met() -> None:
    """Skip the scenarios when a program is missing; fail them instead under ``CI=true``."""
    require(missing_requirements(), ci=os.environ.get("CI") == "true")


@pytest.fixture(scope="package")
def emulator(requirements_met: None) -> Iterator[Emulator]:
    """The key's real limits (3 calls/s, 3 tasks running); an imagine 8 s, an upscale 5 s.

    Renders last several seconds so that no trigger fires within a second or two of its deferral
    (the "state mismatch" race; see :func:`airflow_harness.config.distributed_config`).
    """
    with run_emulator(
        keys=(API_KEY,),
        rate_limit=3.0,
        max_running=3,
        time_scale=1.0,
        imagine_seconds=8.0,
        upscale_seconds=5.0,
        grid_size=256,
    ) as running:
        yield running


@pytest.fixture(scope="package")
def output_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("distributed-output")


@pytest.fixture(scope="package")
def dags_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The batch example with its prompts, and this folder's DAGs: only what the scenarios run."""
    folder = tmp_path_factory.mktemp("distributed-dags")
    shutil.copy(EXAMPLE_DAGS / "example_lotimage_batch.py", folder)
    shutil.copytree(EXAMPLE_DAGS / "prompts", folder / "prompts")
    for dag_file in SCENARIO_DAGS.glob("*.py"):
        shutil.copy(dag_file, folder)
    return folder


@pytest.fixture(scope="package")
def distributed(emulator: Emulator, dags_folder: Path, output_dir: Path) -> Iterator[AirflowDeployment]:
    """The shared deployment, with the ``lotimage`` pool and the LotImage connection (scope ``redis``).

    The LotImage connection lives in the metadata DB, not in the environment, so a scenario can
    change its extra between runs (an environment connection would shadow it).
    """
    topology = Topology.distributed(celery_workers=2, triggerers=2, worker_concurrency=4)
    assert topology.budget_redis_url is not None
    env = {
        "AIRFLOW_CONN_REDIS_DEFAULT": redis_connection(topology.budget_redis_url),
        "LOTIMAGE_OUTPUT_DIR": str(output_dir),
        "LOTIMAGE_POLL_INTERVAL": str(POLL_INTERVAL),
        "LOTIMAGE_POOL": POOL,
    }
    with AirflowDeployment(dags_folder, env=env, topology=topology, parallelism=8) as af:
        print(f"\ndistributed deployment started in {af.timings['start']:.1f}s: {af.timings}", flush=True)
        af.api(
            "POST",
            "pools",
            {"name": POOL, "slots": POOL_SLOTS, "description": "LotImage calls", "include_deferred": True},
            ok=(200, 201),
        )
        set_lotimage_connection(af, emulator.url, scope="redis", create=True)
        yield af
        pids = af.all_pids()
        cluster = af.postgres.workdir if af.postgres is not None else None
    # Teardown ends every process, Postgres's and Redis's too, and removes what it made.
    assert pids and not [pid for pid in pids if pid_alive(pid)]
    assert cluster is not None and not cluster.exists()
    assert af.keep_home or not af.home.exists()


@pytest.fixture
def af(
    distributed: AirflowDeployment, emulator: Emulator, request: pytest.FixtureRequest
) -> Iterator[AirflowDeployment]:
    """The shared deployment for one scenario: a reset emulator, scope ``redis``, log tails on failure."""
    emulator.reset()
    set_lotimage_connection(distributed, emulator.url, scope="redis")
    yield distributed
    report = getattr(request.node, "_distributed_rep_call", None)
    if report is not None and report.failed:
        sys.stderr.write(distributed.format_log_tails(60))
