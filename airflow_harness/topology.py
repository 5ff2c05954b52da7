"""What a deployment is made of: which services, on which database and executor.

Two topologies, chosen with ``AirflowDeployment(..., topology=...)``:

* :meth:`Topology.local` (the default): api-server, dag-processor, scheduler with LocalExecutor
  and one triggerer, on SQLite. Fast to start; what tests/deployment and the benchmarks use.
* :meth:`Topology.distributed`: PostgreSQL as the metadata DB, CeleryExecutor with Redis as broker
  and result backend, two Celery workers and two triggerers, plus a second Redis for the
  provider's cluster-wide rate budget. Every service runs as a machine of its own (home,
  temporary folder, host name: :mod:`.machine`), so two workers share no file and the
  ``host``-scope limiter really is per host.

A :class:`Topology` is plain, frozen data. Its ports are chosen when it is made, so a caller
knows :attr:`Topology.budget_redis_url` before the deployment exists (to put it into an
``AIRFLOW_CONN_REDIS_DEFAULT`` of the deployment's environment).
"""

from __future__ import annotations

from dataclasses import dataclass

from .celery import WORKER_KIND
from .processes import free_port


@dataclass(frozen=True)
class ServiceSpec:
    """One service of a topology.

    ``kind`` decides the command line and the health check (``api-server``, ``dag-processor``,
    ``scheduler``, ``triggerer``, ``celery-worker``); ``name`` is how callers address it
    (``triggerer-2``). ``own_machine``: private home, temporary folder and host name (= ``name``).
    """

    name: str
    kind: str
    own_machine: bool = False


@dataclass(frozen=True)
class Topology:
    """Which services run, on which metadata DB and executor; ports of the backing servers.

    :param name: ``local`` or ``distributed``, for messages.
    :param database: ``sqlite`` or ``postgres``.
    :param triggerers: how many triggerers (named ``triggerer`` when one, else ``triggerer-N``).
    :param celery_workers: Celery workers (``worker-N``); 0 means LocalExecutor in the scheduler.
    :param worker_concurrency: task slots of each Celery worker.
    :param postgres_port: port of the private PostgreSQL (``database="postgres"``).
    :param broker_port: port of Celery's Redis (broker and result backend).
    :param budget_redis_port: port of the Redis holding the provider's rate budget, if any.
    """

    name: str = "local"
    database: str = "sqlite"
    triggerers: int = 1
    celery_workers: int = 0
    worker_concurrency: int = 4
    postgres_port: int | None = None
    broker_port: int | None = None
    budget_redis_port: int | None = None

    @classmethod
    def local(cls) -> Topology:
        """SQLite, LocalExecutor, one triggerer: the four-service deployment."""
        return cls()

    @classmethod
    def distributed(
        cls, *, celery_workers: int = 2, triggerers: int = 2, worker_concurrency: int = 4
    ) -> Topology:
        """PostgreSQL, CeleryExecutor on Redis, several workers and triggerers, a budget Redis."""
        return cls(
            name="distributed",
            database="postgres",
            triggerers=triggerers,
            celery_workers=celery_workers,
            worker_concurrency=worker_concurrency,
            postgres_port=free_port(),
            broker_port=free_port(),
            budget_redis_port=free_port(),
        )

    @property
    def executor(self) -> str:
        """``[core] executor``."""
        return "CeleryExecutor" if self.celery_workers else "LocalExecutor"

    @property
    def separate_machines(self) -> bool:
        """Whether each service runs as a machine of its own (the distributed topology)."""
        return self.celery_workers > 0

    @property
    def budget_redis_url(self) -> str | None:
        """``redis://127.0.0.1:<port>/0`` of the rate budget's Redis, when the topology has one."""
        return None if self.budget_redis_port is None else f"redis://127.0.0.1:{self.budget_redis_port}/0"

    def services(self) -> tuple[ServiceSpec, ...]:
        """Every service in start order: the api-server first (tasks report through it)."""
        own = self.separate_machines
        specs = [ServiceSpec(kind, kind, own) for kind in ("api-server", "dag-processor", "scheduler")]
        specs += [ServiceSpec(name, "triggerer", own) for name in _numbered("triggerer", self.triggerers)]
        specs += [ServiceSpec(f"worker-{n}", WORKER_KIND, own) for n in range(1, self.celery_workers + 1)]
        return tuple(specs)

    def service_names(self, kind: str | None = None) -> tuple[str, ...]:
        """Names of the services (of one ``kind``), in start order."""
        return tuple(spec.name for spec in self.services() if kind is None or spec.kind == kind)


def _numbered(kind: str, count: int) -> list[str]:
    """``[kind]`` for one service (the name callers of the local topology know), else ``kind-N``."""
    return [kind] if count == 1 else [f"{kind}-{n}" for n in range(1, count + 1)]
