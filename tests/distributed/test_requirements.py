"""Without PostgreSQL or Redis the scenarios are skipped with the reason, except in CI, where they fail."""

from __future__ import annotations

import pytest

from airflow_harness.requirements import missing_requirements

from .conftest import require


def test_nothing_missing_runs() -> None:
    require([], ci=True)


def test_missing_program_skips_with_the_reason() -> None:
    with pytest.raises(pytest.skip.Exception, match=r"redis-server \(Debian package redis-server\)"):
        require(["redis-server (Debian package redis-server)"], ci=False)


def test_missing_program_fails_in_ci() -> None:
    with pytest.raises(pytest.fail.Exception, match=r"system-packages\.sh"):
        require(["PostgreSQL server programs (Debian package postgresql)"], ci=True)


def test_missing_requirements_names_each(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_harness import requirements

    monkeypatch.setattr(requirements, "postgres_bin_dir", lambda: None)
    monkeypatch.setattr(requirements, "redis_server_program", lambda: None)
    assert [m.split(" (")[0] for m in missing_requirements()] == [
        "PostgreSQL server programs",
        "redis-server",
    ]
