"""The servers a topology needs besides Airflow: PostgreSQL, Celery's Redis, the rate budget's Redis.

They start before the Airflow services and stop after them (a service that loses its database or
broker while stopping only logs errors and hangs in retries), each in a session of its own.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from .celery import celery_config
from .metadata import PostgresReader, Reader, SqliteReader
from .postgres import PostgresServer
from .redis_server import RedisServer
from .topology import Topology


class Backends:
    """The backing servers of one deployment, made (not started) from its :class:`Topology`.

    :param topology: what to run.
    :param home: the deployment's home; SQLite's file and the Redis working folders go there.
    :param log_dir: where the servers' logs go (the deployment's service-log folder).
    """

    def __init__(self, topology: Topology, home: Path, log_dir: Path) -> None:
        self.sqlite_path = home / "airflow.db"
        self.postgres: PostgresServer | None = None
        self.broker: RedisServer | None = None
        self.budget: RedisServer | None = None
        if topology.database == "postgres":
            self.postgres = PostgresServer(log_dir, port=topology.postgres_port)
        if topology.celery_workers:
            self.broker = RedisServer(home / "redis-broker", "redis-broker", port=topology.broker_port)
        if topology.budget_redis_port is not None:
            self.budget = RedisServer(home / "redis-budget", "redis-budget", port=topology.budget_redis_port)
        self._concurrency = topology.worker_concurrency

    @property
    def sql_alchemy_conn(self) -> str:
        """``[database] sql_alchemy_conn`` of the deployment."""
        return self.postgres.url if self.postgres is not None else f"sqlite:///{self.sqlite_path}"

    def airflow_config(self) -> dict[str, str]:
        """Airflow settings that point at these servers (database, and Celery when there is a broker)."""
        config = {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.sql_alchemy_conn}
        if self.broker is not None:
            config.update(celery_config(self.broker.url, self._concurrency))
        return config

    def reader(self) -> Reader:
        """Read-only access to the metadata DB, for :class:`~airflow_harness.metadata.MetadataDB`."""
        if self.postgres is not None:
            return PostgresReader(self.postgres.dsn())
        return SqliteReader(self.sqlite_path)

    def log_paths(self) -> dict[str, Path]:
        """Each server's log, by name (shown with the services' logs when something fails)."""
        paths = {}
        if self.postgres is not None:
            paths["postgres"] = self.postgres.log_dir / "postgres.log"
        for redis in (self.broker, self.budget):
            if redis is not None:
                paths[redis.service.name] = redis.service.log_path
        return paths

    def pids(self) -> list[int]:
        """Pids of every server process still alive (Postgres's backends included)."""
        services = [redis.service for redis in (self.broker, self.budget) if redis is not None]
        procs = [proc for svc in services for proc in svc.processes()]
        if self.postgres is not None:
            procs += self.postgres.processes()
        return sorted(proc.pid for proc in procs)

    def start(self) -> None:
        """Start every server and wait until each answers."""
        if self.postgres is not None and not self.postgres.running():
            self.postgres.start()
        for redis in (self.broker, self.budget):
            if redis is not None and not redis.running():
                redis.start()

    def stop(self) -> None:
        """Stop every server; never raises (it runs from teardown and the safety net)."""
        for redis in (self.budget, self.broker):
            if redis is not None:
                with contextlib.suppress(Exception):
                    redis.stop(grace=2.0)
        if self.postgres is not None:
            with contextlib.suppress(Exception):
                self.postgres.stop()
