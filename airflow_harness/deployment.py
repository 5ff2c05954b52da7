"""``AirflowDeployment``: the services of a :class:`~.topology.Topology`, one temporary AIRFLOW_HOME.

The class owns the lifecycle – backing servers, migrate, start, health, restart, kill, teardown –
and composes the rest: :attr:`AirflowDeployment.backends` (PostgreSQL and Redis, when the
topology has them), :attr:`AirflowDeployment.rest` (REST API), :attr:`AirflowDeployment.db`
(metadata DB and workload accounting) and :attr:`AirflowDeployment.logs` (service and task logs). Their
methods are also reachable on the deployment itself (``af.trigger(...)``, ``af.task_instances(...)``),
the names tests and benchmarks were written against.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, overload

import psutil

from . import celery
from .auth import User, admin_of, login_config
from .backends import Backends
from .config import JOB_TYPES, airflow_command, api_url, build_env, distributed_config, service_argv
from .errors import DeploymentError
from .logs import Logs
from .machine import install_hostname_module, machine_env
from .memory import MemorySampler, read_peak_rss, total_rss
from .metadata import MetadataDB
from .postgres import PostgresServer
from .processes import Service, after_teardown, free_port, install_safety_net, terminate, track, untrack
from .redis_server import RedisServer
from .rest import RestClient
from .topology import ServiceSpec, Topology

_P = ParamSpec("_P")
_R = TypeVar("_R")


class _Forward(Generic[_P, _R]):
    """``af.<name>(...)`` calls ``af.<component>.<name>(...)``, with the component method's signature.

    One typed line per forwarded method instead of a wrapper that repeats its signature and
    defaults (which would drift apart).
    """

    def __init__(self, component: str, method: Callable[Concatenate[Any, _P], _R]) -> None:
        self.component = component
        self.name = method.__name__
        self.__doc__ = method.__doc__

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> _Forward[_P, _R]: ...

    @overload
    def __get__(self, obj: object, owner: type | None = None) -> Callable[_P, _R]: ...

    def __get__(self, obj: object | None, owner: type | None = None) -> Any:
        if obj is None:
            return self
        return getattr(getattr(obj, self.component), self.name)


class _MigratedTemplate:
    """A migrated metadata DB per Python process, copied into later homes.

    ``airflow db migrate`` costs several seconds, an identical fresh DB costs a file copy.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._path: Path | None = None

    def install(self, db_path: Path, migrate: Callable[[], object]) -> None:
        """Copy the template to ``db_path``; the first time, ``migrate()`` it there and keep a copy."""
        with self._lock:
            if self._path is not None and self._path.exists():
                shutil.copyfile(self._path, db_path)
                return
            migrate()
            template_dir = Path(tempfile.mkdtemp(prefix="airflow-deployment-template-"))
            after_teardown(functools.partial(shutil.rmtree, template_dir, ignore_errors=True))
            self._path = template_dir / "airflow.db"
            shutil.copyfile(db_path, self._path)


_TEMPLATE = _MigratedTemplate()


class AirflowDeployment:
    """A private Airflow deployment: the services of a topology, one temporary AIRFLOW_HOME.

    Use as a context manager (``with AirflowDeployment(dags) as af: af.run_dag("x")``); ``stop()``
    is also registered with atexit and SIGTERM/SIGHUP so nothing outlives the caller.

    ``topology`` defaults to :meth:`Topology.local` (four services on SQLite);
    ``Topology.distributed()`` adds PostgreSQL, Celery workers, a second triggerer and Redis.

    ``users`` (e.g. :func:`~airflow_harness.auth.default_users`) turns on real logins: the UI asks
    for a user name and password, anonymous requests get 401, and the REST client signs in as
    the first admin. Without it every visitor is an admin (what the other tests rely on).
    """

    def __init__(
        self,
        dags_folder: str | os.PathLike[str],
        env: Mapping[str, str] | None = None,
        home: str | os.PathLike[str] | None = None,
        *,
        parallelism: int = 2,
        api_port: int | None = None,
        keep_home: bool | None = None,
        startup_timeout: float = 120.0,
        topology: Topology | None = None,
        users: Sequence[User] | None = None,
    ) -> None:
        self.dags_folder = Path(dags_folder).resolve()
        if not self.dags_folder.is_dir():
            raise ValueError(f"DAGs folder {self.dags_folder} does not exist")
        self._own_home = home is None
        self.home = Path(home or tempfile.mkdtemp(prefix="airflow-deployment-")).resolve()
        self.home.mkdir(parents=True, exist_ok=True)
        if keep_home is None:
            keep_home = os.environ.get("AIRFLOW_DEPLOYMENT_KEEP_HOME", "") not in ("", "0", "false")
        self.keep_home = keep_home or not self._own_home
        self.parallelism = parallelism
        self.api_port = api_port or free_port()
        self.startup_timeout = startup_timeout
        self.extra_env = dict(env or {})
        self.topology = topology or Topology.local()
        self.specs: dict[str, ServiceSpec] = {spec.name: spec for spec in self.topology.services()}
        self.db_path = self.home / "airflow.db"
        self.service_log_dir = self.home / "service-logs"
        self.service_log_dir.mkdir(exist_ok=True)
        self.task_log_dir = self.home / "logs"
        self.backends = Backends(self.topology, self.home, self.service_log_dir)
        self.users: tuple[User, ...] = tuple(users or ())
        self.env = build_env(
            home=self.home,
            dags_folder=self.dags_folder,
            task_log_dir=self.task_log_dir,
            api_port=self.api_port,
            parallelism=self.parallelism,
            topology_config=self._topology_config(),
            extra=self.extra_env,
        )
        self.logs = Logs(
            self.service_log_dir, self.task_log_dir, self.service_names, self.backends.log_paths()
        )
        self._services: dict[str, Service] = {
            name: Service(name, self._argv(spec), self.logs.service_log(name))
            for name, spec in self.specs.items()
        }
        self.db = MetadataDB(self.backends.reader(), self._workload_logs())
        self.rest = RestClient(self.api_url, self.logs, self._check_running, self._rest_credentials())
        self.timings: dict[str, float] = {}

    def _topology_config(self) -> dict[str, str]:
        """Settings that depend on the topology: database, executor, and the machines' host names."""
        config = {"AIRFLOW__CORE__EXECUTOR": self.topology.executor, **self.backends.airflow_config()}
        if self.topology.separate_machines:
            site_dir = self.home / "harness-site"
            config.update(distributed_config(install_hostname_module(site_dir), site_dir))
        if self.users:
            config.update(login_config(self.users, self.home / "simple_auth_manager_passwords.json"))
        return config

    def _rest_credentials(self) -> tuple[str, str] | None:
        """The admin the REST client signs in as, when the deployment has real logins."""
        if not self.users:
            return None
        admin = admin_of(self.users)
        return admin.name, admin.password

    def _argv(self, spec: ServiceSpec) -> list[str]:
        if spec.kind == celery.WORKER_KIND:
            return celery.worker_argv(spec.name, self.topology.worker_concurrency)
        return service_argv(spec.kind, self.api_port)

    def _workload_logs(self) -> list[Path]:
        """Where the task supervisors log ``Workload finished``: the Celery workers, else the scheduler."""
        workers = self.topology.service_names(celery.WORKER_KIND)
        return [self.logs.service_log(name) for name in workers or ("scheduler",)]

    def _service_env(self, name: str) -> dict[str, str]:
        """The deployment's environment, plus a home, temporary folder and host name of its own."""
        if not self.specs[name].own_machine:
            return self.env
        return {**self.env, **machine_env(self.home / "machines", name)}

    @property
    def service_names(self) -> tuple[str, ...]:
        """The topology's services, in start order."""
        return tuple(self.specs)

    @property
    def postgres(self) -> PostgresServer | None:
        """The private PostgreSQL holding the metadata DB (distributed topology)."""
        return self.backends.postgres

    @property
    def broker_redis(self) -> RedisServer | None:
        """Celery's Redis: broker and result backend (distributed topology)."""
        return self.backends.broker

    @property
    def budget_redis(self) -> RedisServer | None:
        """The Redis that holds the provider's rate budget (distributed topology); stop/start it freely."""
        return self.backends.budget

    @property
    def api_url(self) -> str:
        """Base URL of the api-server (REST API under ``/api/v2``)."""
        return api_url(self.api_port)

    # --- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> AirflowDeployment:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is not None and exc_type is not KeyboardInterrupt:
                sys.stderr.write(self.logs.format_log_tails())
        finally:
            self.stop()

    def migrate(self) -> None:
        """Create the metadata DB once per home (SQLite: copy of a per-process template after the first).

        PostgreSQL is migrated afresh: its cluster is new with each start of the deployment.
        """
        marker = self.home / ".migrated"
        if self.postgres is None and marker.exists() and self.db_path.exists():
            return
        t0 = time.monotonic()
        if self.postgres is not None:
            self._run_cli(["db", "migrate"], timeout=300, log_name="db-migrate")
        else:
            _TEMPLATE.install(
                self.db_path, lambda: self._run_cli(["db", "migrate"], timeout=300, log_name="db-migrate")
            )
        marker.write_text("ok\n")
        self.timings["migrate"] = time.monotonic() - t0

    def start(self, timeout: float | None = None) -> None:
        """Start the backing servers, migrate, start every service and wait until all are healthy."""
        install_safety_net()
        track(self)
        t0 = time.monotonic()
        self.backends.start()
        self.timings["backends"] = time.monotonic() - t0
        self.migrate()
        for name in self.service_names:
            self.start_service(name, wait=False)
        self.wait_healthy(timeout=timeout or self.startup_timeout)
        self.timings["start"] = time.monotonic() - t0

    def start_service(self, name: str, *, wait: bool = True, timeout: float | None = None) -> None:
        """Start one service in its own session, appending its output to its log file."""
        svc = self._service(name)
        if svc.running():
            raise DeploymentError(f"{name} is already running (pid {svc.pid})")
        track(self)
        env = self._service_env(name)
        svc.start(Path(env["HOME"]) if self.specs[name].own_machine else self.home, env)
        if wait:
            self.wait_healthy(timeout=timeout or self.startup_timeout, services=[name])

    def kill_service(self, name: str) -> list[int]:
        """SIGKILL every process of a service at once, i.e. a crash; return their pids."""
        return self._service(name).kill()

    def stop_service(self, name: str, grace: float = 10.0) -> list[int]:
        """Stop a service gracefully (SIGTERM to its top process, SIGKILL after ``grace``)."""
        pids = self.service_pids(name)
        svc = self._service(name)
        terminate([svc], grace)
        svc.reap()
        return pids

    def restart_service(self, name: str, *, kill: bool = True, timeout: float | None = None) -> None:
        """Kill (or stop) a service, start it again and wait for it to be healthy."""
        if kill:
            self.kill_service(name)
        else:
            self.stop_service(name)
        self.start_service(name, wait=True, timeout=timeout)

    def stop(self, grace: float = 3.0) -> None:
        """Tear everything down; idempotent, safe from ``finally``, atexit or a signal handler.

        Two phases, because a task supervisor still reports its task's end through the execution
        API and hangs retrying if the api-server is already gone: first every other service, then
        the api-server, each SIGTERMed and SIGKILLed after ``grace`` seconds (graceful shutdown
        of the scheduler/triggerer sometimes stalls on a child; nothing here needs it to finish).
        A final rescan SIGKILLs anything forked meanwhile; the backing servers (database, Redis)
        go last, once nothing uses them.
        """
        services = self._services
        try:
            terminate([svc for name, svc in services.items() if name != "api-server"], grace)
            self.rest.close()
            terminate([services["api-server"]], grace)
            terminate(list(services.values()), 0)
            for svc in services.values():
                with contextlib.suppress(Exception):
                    svc.reap()
            self.backends.stop()
        finally:
            untrack(self)
            if not self.keep_home:
                shutil.rmtree(self.home, ignore_errors=True)

    # --- processes -------------------------------------------------------------------------------

    def _service(self, name: str) -> Service:
        try:
            return self._services[name]
        except KeyError:
            raise ValueError(f"unknown service {name!r}; one of {self.service_names}") from None

    def session_ids(self) -> dict[str, int]:
        """Session id (= process group id of the top process) of each started service."""
        return {name: svc.pid for name, svc in self._services.items() if svc.pid is not None}

    def service_processes(self, name: str) -> list[psutil.Process]:
        """Every live process of a service: its session plus any descendant that left it."""
        return self._service(name).processes()

    def service_pids(self, name: str) -> list[int]:
        """Pids of a service's process tree (e.g. the triggerer and its trigger runner)."""
        return sorted(p.pid for p in self.service_processes(name))

    def all_pids(self) -> list[int]:
        """Pids of every process of the deployment still alive, backing servers included."""
        pids = {pid for name in self.service_names for pid in self.service_pids(name)}
        return sorted(pids | set(self.backends.pids()))

    def rss(self, name: str) -> int:
        """Current total RSS of a service's process tree, in bytes."""
        return total_rss(self.service_processes(name))

    def peak_rss_per_process(self, name: str) -> dict[int, int]:
        """VmHWM (lifetime peak RSS) of each live process of a service, in bytes."""
        return {proc.pid: read_peak_rss(proc.pid) for proc in self.service_processes(name)}

    def memory_sampler(self, name: str, interval: float = 0.2) -> MemorySampler:
        """A :class:`MemorySampler` over a service's tree; use as ``with af.memory_sampler("triggerer")``."""
        return MemorySampler(lambda: self.service_processes(name), interval=interval)

    # --- airflow CLI -----------------------------------------------------------------------------

    def _run_cli(self, args: Sequence[str], timeout: float = 120, log_name: str | None = None) -> str:
        """Run a one-shot ``airflow`` CLI command with the deployment's environment."""
        proc = subprocess.run(
            [*airflow_command(), *args],
            cwd=self.home,
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            start_new_session=True,
            check=False,
        )
        output = proc.stdout.decode(errors="replace") + proc.stderr.decode(errors="replace")
        if log_name:
            self.logs.service_log(log_name).write_text(output)
        if proc.returncode != 0:
            raise DeploymentError(f"airflow {' '.join(args)} exited {proc.returncode}:\n{output[-4000:]}")
        return output

    def cli(self, *args: str, timeout: float = 120) -> str:
        """Run ``airflow <args>`` against this deployment and return its output."""
        return self._run_cli(args, timeout=timeout)

    # --- health ----------------------------------------------------------------------------------

    def _check_running(self, names: Sequence[str]) -> None:
        """Raise if one of the named services has exited: waiting on it would only time out."""
        for name in names:
            svc = self._service(name)
            if svc.popen is not None and svc.popen.poll() is not None:
                raise DeploymentError(
                    f"{name} exited with {svc.popen.returncode}\n{self.logs.log_tail(name, 60)}"
                )

    def service_healthy(self, name: str, heartbeat_within: float = 30.0) -> bool:
        """Whether a service answers (api-server), heartbeats from *this* process (jobs) or consumes.

        A job's heartbeat must come from a job row newer than our start of the service (see
        :meth:`MetadataDB.job_beating_since`) and, with a machine of its own, from its host name.
        A Celery worker writes no job row: it is ready once it says so in its log.
        """
        svc = self._service(name)
        if not svc.running():
            return False
        spec = self.specs[name]
        if spec.kind == "api-server":
            return self.rest.healthy()
        if spec.kind == celery.WORKER_KIND:
            return celery.worker_ready(svc.output_since_start())
        hostname = name if spec.own_machine else None
        return self.db.job_beating_since(JOB_TYPES[spec.kind], svc.started_at, heartbeat_within, hostname)

    def wait_healthy(self, timeout: float = 120.0, services: Sequence[str] | None = None) -> None:
        """Block until the given (default: all) services are healthy; fail fast if one dies."""
        names = list(services or self.service_names)
        deadline = time.monotonic() + timeout
        pending = list(names)
        t0 = time.monotonic()
        while pending:
            self._check_running(names)
            pending = [n for n in pending if not self.service_healthy(n)]
            if not pending:
                break
            if time.monotonic() > deadline:
                raise DeploymentError(
                    f"not healthy after {timeout:.0f}s: {pending}\n{self.logs.format_log_tails(30)}"
                )
            time.sleep(0.5)
        self.timings["wait_healthy"] = time.monotonic() - t0

    # --- the components' methods, under the names callers use ------------------------------------

    token = _Forward("rest", RestClient.token)
    api = _Forward("rest", RestClient.api)
    wait_for_dag = _Forward("rest", RestClient.wait_for_dag)
    unpause = _Forward("rest", RestClient.unpause)
    trigger = _Forward("rest", RestClient.trigger)
    run_state = _Forward("rest", RestClient.run_state)
    task_states = _Forward("rest", RestClient.task_states)
    wait_for_task_state = _Forward("rest", RestClient.wait_for_task_state)
    wait_for_run = _Forward("rest", RestClient.wait_for_run)
    run_dag = _Forward("rest", RestClient.run_dag)

    query = _Forward("db", MetadataDB.query)
    task_instances = _Forward("db", MetadataDB.task_instances)
    task_instance_history = _Forward("db", MetadataDB.task_instance_history)
    triggers = _Forward("db", MetadataDB.triggers)
    jobs = _Forward("db", MetadataDB.jobs)
    task_state_events = _Forward("db", MetadataDB.task_state_events)
    running_intervals = _Forward("db", MetadataDB.running_intervals)
    workloads = _Forward("db", MetadataDB.workloads)
    run_workloads = _Forward("db", MetadataDB.run_workloads)
    worker_slot_seconds = _Forward("db", MetadataDB.worker_slot_seconds)

    log_paths = _Forward("logs", Logs.log_paths)
    log_tail = _Forward("logs", Logs.log_tail)
    format_log_tails = _Forward("logs", Logs.format_log_tails)
    task_log_files = _Forward("logs", Logs.task_log_files)
    task_log_records = _Forward("logs", Logs.task_log_records)
    task_log_tail = _Forward("logs", Logs.task_log_tail)
