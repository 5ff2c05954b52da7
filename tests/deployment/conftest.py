"""Fixtures for tests that need a running Airflow deployment.

One deployment per module: starting four Airflow services costs ~15 s on two cores, so tests
share it; a failing test gets the services' log tails in its report.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_harness import AirflowDeployment

HARNESS_DAGS = Path(__file__).parent / "dags"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "deployment: starts a real local Airflow deployment (slow, ~1 min per module)"
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Remember each phase's report on the item so fixtures can tell whether the test failed."""
    report = yield
    setattr(item, f"_deployment_rep_{report.when}", report)
    return report


@pytest.fixture(scope="module")
def module_deployment() -> Iterator[AirflowDeployment]:
    """A started deployment running the harness DAGs, torn down after the module."""
    with AirflowDeployment(HARNESS_DAGS) as deployment:
        yield deployment


def write_log_tails_if_failed(
    request: pytest.FixtureRequest, deployment: AirflowDeployment, lines: int
) -> None:
    """After a failed test, the services' last log lines: what the deployment did meanwhile."""
    report = getattr(request.node, "_deployment_rep_call", None)
    if report is not None and report.failed:
        sys.stderr.write(deployment.format_log_tails(lines))


@pytest.fixture
def airflow_deployment(
    module_deployment: AirflowDeployment, request: pytest.FixtureRequest
) -> Iterator[AirflowDeployment]:
    """The module's deployment; prints the service log tails if the test failed."""
    yield module_deployment
    write_log_tails_if_failed(request, module_deployment, 60)


@pytest.fixture
def af(deployment: AirflowDeployment, request: pytest.FixtureRequest) -> Iterator[AirflowDeployment]:
    """The module's own ``deployment`` fixture; prints the service log tails if the test failed."""
    yield deployment
    write_log_tails_if_failed(request, deployment, 80)
