"""A real, local Airflow 3.3 deployment for end-to-end tests and benchmarks.

Unit tests can't show that a deferrable operator really survives the triggerer, the execution API
and the scheduler working together, so this package starts the real services – ``api-server``,
``scheduler`` (LocalExecutor), ``dag-processor`` and ``triggerer`` – on SQLite and loopback only,
each in its own session (``setsid``) so that it, and every task process it forks, can be killed
as a unit.

A second topology (``AirflowDeployment(..., topology=Topology.distributed())``, see
:mod:`~airflow_harness.topology`) is a small cluster on one box: PostgreSQL as the metadata DB,
CeleryExecutor with two workers on Redis, two triggerers, and a second Redis for the provider's
cluster-wide rate budget; every service a machine of its own (home, temporary folder, host name).

It deliberately does not import Airflow: the calling process (pytest) has its own AIRFLOW_HOME and
configuration, and the deployment must not share them. It talks to the services over the REST API
v2 and reads the metadata database with ``sqlite3`` (or ``psycopg2``).

A top-level package, not part of ``tests``, because tests and benchmarks both use it (no pytest
imports); also a small CLI, ``python -m airflow_harness`` (see :mod:`airflow_harness.cli`)::

    with AirflowDeployment(dags_dir, env={"AIRFLOW_CONN_X": "..."}) as af:
        result = af.run_dag("my_dag", conf={...}, timeout=120)   # parse, unpause, trigger, wait
        af.kill_service("triggerer"); af.start_service("triggerer")
        af.worker_slot_seconds("my_dag", result.run_id)          # from the LocalExecutor workers

Modules: :mod:`~airflow_harness.deployment` (the class and its lifecycle),
:mod:`~airflow_harness.processes` (sessions, signals, the safety net), :mod:`~airflow_harness.rest`,
:mod:`~airflow_harness.metadata`, :mod:`~airflow_harness.logs`, :mod:`~airflow_harness.memory`,
:mod:`~airflow_harness.config` (services and their environment), :mod:`~airflow_harness.auth`
(real logins, optional), :mod:`~airflow_harness.topology`
(which services, on what), :mod:`~airflow_harness.backends` with :mod:`~airflow_harness.postgres`
and :mod:`~airflow_harness.redis_server` (the servers besides Airflow), :mod:`~airflow_harness.celery`
and :mod:`~airflow_harness.machine` (one machine per service).

Things learnt the hard way (Airflow 3.3.2, two cores):

* REST auth: SimpleAuthManager with ``simple_auth_manager_all_admins`` hands out a token on
  ``GET /auth/token``; no password file needed. With ``users=`` (:mod:`~airflow_harness.auth`)
  the deployment has real logins instead: the harness writes the passwords file, and its REST
  client gets its token from ``POST /auth/token`` as the first admin.
* ``task_instance.duration`` includes deferred time (the start date survives the resume). Slot
  time comes from the supervisor's ``Workload finished`` lines (:meth:`MetadataDB.workloads`);
  time in ``running`` from the audit ``log`` table (:meth:`MetadataDB.running_intervals`).
* A task supervisor often notices its task process has exited only at its next select timeout,
  ``[workers] min_heartbeat_interval`` (5 s), so a slot stays busy that long after a task ends
  or defers. If the trigger fires sooner, the resumed try can be running when the stale executor
  "success" event of the deferral arrives, and the scheduler marks it failed ("state mismatch").
  Deferrals shorter than ~6 s are flaky under LocalExecutor for that reason.
* On SIGTERM a task process only calls ``on_kill``; the scheduler then waits for it. Teardown
  therefore SIGKILLs task process groups and stops the api-server last (supervisors report
  through it).

And for the distributed topology:

* ``initdb`` and ``postgres`` refuse to run as root. As root they run as ``nobody`` through
  ``subprocess``'s ``user=``/``group=`` (nothing installed or changed on the system), with the
  data folder a temporary folder of its own chowned to ``nobody``: the deployment's home is
  private to root. The server runs in the foreground, not through ``pg_ctl start`` (which would
  detach it from its session); it stops with SIGINT, Postgres's fast shutdown.
* Under CeleryExecutor the task supervisors run inside the Celery workers, so the same "state
  mismatch" race holds and the same remedy applies: ``[workers] min_heartbeat_interval`` 1 s and
  deferrals of several seconds (:func:`~airflow_harness.config.distributed_config`). Their
  ``Workload finished`` lines are in the workers' logs.
* A Celery worker writes no job row; it is ready once it logs ``<name>@<host> ready.``.
* A SIGKILLed worker's running task is noticed only through its missing heartbeats
  (``[scheduler] task_instance_heartbeat_timeout``, 20 s here): its retry started 21–22 s later.
* Triggers of a SIGKILLed triggerer went to the other one 5 to 17 s after the kill
  (``[triggerer] triggerer_health_check_threshold`` 10 s, heartbeats every 2 s).
* Two services of one kind are told apart by host name: ``[core] hostname_callable`` points at a
  copy of :mod:`~airflow_harness.machine` on the services' ``PYTHONPATH`` (this package is not
  installed), so job rows and task instances name the machine (``worker-2``, ``triggerer-1``).
"""

from __future__ import annotations

from .auth import User, default_users
from .cli import main
from .config import SERVICES
from .deployment import AirflowDeployment
from .errors import DeploymentError
from .memory import MemorySampler
from .metadata import MetadataDB, TaskInstanceRecord, TaskStateEvent, Workload
from .postgres import PostgresServer
from .processes import free_port, pdeathsig_preexec, pid_alive, session_processes
from .redis_server import RedisServer
from .rest import RestClient, RunResult
from .topology import ServiceSpec, Topology

__all__ = [
    "SERVICES",
    "AirflowDeployment",
    "DeploymentError",
    "MemorySampler",
    "MetadataDB",
    "PostgresServer",
    "RedisServer",
    "RestClient",
    "RunResult",
    "ServiceSpec",
    "TaskInstanceRecord",
    "TaskStateEvent",
    "Topology",
    "User",
    "Workload",
    "default_users",
    "free_port",
    "main",
    "pdeathsig_preexec",
    "pid_alive",
    "session_processes",
]
