"""A real, local Airflow 3.3 deployment for end-to-end tests and benchmarks.

Unit tests can't show that a deferrable operator really survives the triggerer, the execution API
and the scheduler working together, so this package starts the real services – ``api-server``,
``scheduler`` (LocalExecutor), ``dag-processor`` and ``triggerer`` – on SQLite and loopback only,
each in its own session (``setsid``) so that it, and every task process it forks, can be killed
as a unit.

It deliberately does not import Airflow: the calling process (pytest) has its own AIRFLOW_HOME and
configuration, and the deployment must not share them. It talks to the services over the REST API
v2 and reads the metadata database with ``sqlite3``.

A top-level package, not part of ``tests``, because tests and benchmarks both use it (no pytest
imports); also a small CLI, ``python -m airflow_harness`` (see :mod:`airflow_harness.cli`)::

    with AirflowDeployment(dags_dir, env={"AIRFLOW_CONN_X": "..."}) as af:
        result = af.run_dag("my_dag", conf={...}, timeout=120)   # parse, unpause, trigger, wait
        af.kill_service("triggerer"); af.start_service("triggerer")
        af.worker_slot_seconds("my_dag", result.run_id)          # from the LocalExecutor workers

Modules: :mod:`~airflow_harness.deployment` (the class and its lifecycle),
:mod:`~airflow_harness.processes` (sessions, signals, the safety net), :mod:`~airflow_harness.rest`,
:mod:`~airflow_harness.metadata`, :mod:`~airflow_harness.logs`, :mod:`~airflow_harness.memory`,
:mod:`~airflow_harness.config` (services and their environment).

Things learnt the hard way (Airflow 3.3.2, two cores):

* REST auth: SimpleAuthManager with ``simple_auth_manager_all_admins`` hands out a token on
  ``GET /auth/token``; no password file needed.
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
"""

from __future__ import annotations

from .cli import main
from .config import SERVICES
from .deployment import AirflowDeployment
from .errors import DeploymentError
from .memory import MemorySampler
from .metadata import MetadataDB, TaskInstanceRecord, TaskStateEvent, Workload
from .processes import free_port, pdeathsig_preexec, pid_alive, session_processes
from .rest import RestClient, RunResult

__all__ = [
    "SERVICES",
    "AirflowDeployment",
    "DeploymentError",
    "MemorySampler",
    "MetadataDB",
    "RestClient",
    "RunResult",
    "TaskInstanceRecord",
    "TaskStateEvent",
    "Workload",
    "free_port",
    "main",
    "pdeathsig_preexec",
    "pid_alive",
    "session_processes",
]
