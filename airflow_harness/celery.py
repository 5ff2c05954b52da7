"""CeleryExecutor for the distributed topology: its settings, the workers' command line, readiness.

Celery's broker and result backend are one private Redis (databases 0 and 1), never the metadata
database: the workers then need nothing but Redis and the api-server, as on real worker machines.
"""

from __future__ import annotations

import re

from .config import airflow_command

#: ``ServiceSpec.kind`` of a Celery worker.
WORKER_KIND = "celery-worker"

#: Celery logs ``<name>@<host> ready.`` once the worker consumes from its queues.
_READY_RE = re.compile(r"\S+@\S+ ready\.")


def celery_config(redis_url: str, concurrency: int) -> dict[str, str]:
    """Airflow settings for CeleryExecutor on the Redis at ``redis_url`` (``redis://host:port/0``).

    ``sync_parallelism`` 1: the scheduler fetches task states from Redis in-process instead of
    forking a pool on every loop (a cost two cores feel, for no gain at this size).
    """
    base = redis_url.rsplit("/", 1)[0]
    return {
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CELERY__BROKER_URL": f"{base}/0",
        "AIRFLOW__CELERY__RESULT_BACKEND": f"{base}/1",
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(concurrency),
        "AIRFLOW__CELERY__SYNC_PARALLELISM": "1",
    }


def worker_argv(name: str, concurrency: int) -> list[str]:
    """``airflow celery worker`` as Celery node ``<name>@<host>``, serving no logs (files are read)."""
    return [
        *airflow_command(), "celery", "worker", "--celery-hostname", f"{name}@%h",
        "--concurrency", str(concurrency), "--skip-serve-logs",
    ]  # fmt: skip


def worker_ready(output: str) -> bool:
    """Whether a worker's output since its start says it is consuming tasks."""
    return _READY_RE.search(output) is not None
