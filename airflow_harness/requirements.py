"""What the distributed topology needs from the machine, said so that a person can fix it.

Tests skip (or, in CI, fail) with this list; the benchmark refuses to start with it.
"""

from __future__ import annotations

import importlib.util

from .postgres import postgres_bin_dir
from .redis_server import redis_server_program

#: Python modules the distributed topology needs, and the pip packages (the ``test`` extra) with them.
MODULES = {"psycopg2": "psycopg2-binary", "asyncpg": "asyncpg", "celery": "celery", "redis": "redis"}


def missing_requirements() -> list[str]:
    """Each program or module the distributed topology needs and this machine lacks."""
    missing = []
    if postgres_bin_dir() is None:
        missing.append("PostgreSQL server programs (Debian package postgresql)")
    if redis_server_program() is None:
        missing.append("redis-server (Debian package redis-server)")
    missing += [
        f"Python module {module} (pip package {package}, in the 'test' extra)"
        for module, package in MODULES.items()
        if importlib.util.find_spec(module) is None
    ]
    return missing
