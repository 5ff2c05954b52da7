"""What a deployment runs: its services, their command lines and the configuration they share.

All configuration goes through environment variables, built from scratch: the caller's own
Airflow settings (pytest sets several) must not leak into the deployment.
"""

from __future__ import annotations

import base64
import os
import secrets
import sys
from collections.abc import Mapping
from pathlib import Path

from .processes import free_port

#: Services in start order. The dag-processor is its own command in Airflow 3 (the scheduler no
#: longer parses DAG files); the api-server must be up before tasks run (execution API).
SERVICES: tuple[str, ...] = ("api-server", "dag-processor", "scheduler", "triggerer")

#: ``job.job_type`` written by the services that heartbeat into the metadata DB.
JOB_TYPES: dict[str, str] = {
    "scheduler": "SchedulerJob",
    "triggerer": "TriggererJob",
    "dag-processor": "DagProcessorJob",
}

_SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"


def api_url(api_port: int) -> str:
    """Base URL of an api-server on loopback (REST API under ``/api/v2``)."""
    return f"http://127.0.0.1:{api_port}"


def airflow_command() -> list[str]:
    """``airflow`` of the running interpreter's environment, so services use the same install."""
    script = Path(sys.executable).parent / "airflow"
    return [str(script)] if script.exists() else [sys.executable, "-m", "airflow"]


def service_argv(name: str, api_port: int) -> list[str]:
    """Command line of one service; none serves logs (the files are read directly)."""
    cmd = airflow_command()
    if name == "api-server":
        return [*cmd, "api-server", "--host", "127.0.0.1", "--port", str(api_port), "--workers", "1"]
    if name in ("scheduler", "triggerer"):
        return [*cmd, name, "--skip-serve-logs"]
    return [*cmd, name]


def build_env(
    *,
    home: Path,
    dags_folder: Path,
    task_log_dir: Path,
    api_port: int,
    parallelism: int,
    topology_config: Mapping[str, str],
    extra: Mapping[str, str],
) -> dict[str, str]:
    """Services' environment: the caller's minus any inherited Airflow config, plus ours, plus extra.

    ``topology_config`` holds what differs between topologies (database, executor, …) and wins
    over the common settings; the caller's ``extra`` wins over both.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "_AIRFLOW"))}
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    env.update(_airflow_config(home, dags_folder, task_log_dir, api_port, parallelism))
    env.update(topology_config)
    env.update(extra)
    return env


def distributed_config(hostname_callable: str, site_dir: Path) -> dict[str, str]:
    """Settings of the distributed topology on top of the common ones, and why each.

    * ``[core] hostname_callable``: each service reports its machine's name (:mod:`.machine`),
      found on ``PYTHONPATH``.
    * ``[workers] min_heartbeat_interval`` 1 s (default 5): a task supervisor, here inside a
      Celery worker, notices its task process deferred or ended at its next select timeout, and
      only then does the Celery task end and the scheduler get the executor event. A trigger that
      fires sooner resumes the task first, and the stale event then fails it ("state mismatch",
      see the package docstring). The race is the same as under LocalExecutor, so the same
      remedy as the benchmarks: a 1 s window, and deferrals of several seconds.
    * ``[scheduler] task_instance_heartbeat_timeout`` 20 s (default 300), checked every 2 s: a
      SIGKILLed worker's running task is noticed only through its missing heartbeats (the
      supervisor beats every ``min_heartbeat_interval``), then retried on the other worker.
    """
    return {
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": hostname_callable,
        "PYTHONPATH": str(site_dir),
        "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
    }


def _airflow_config(
    home: Path, dags_folder: Path, task_log_dir: Path, api_port: int, parallelism: int
) -> dict[str, str]:
    """Our settings: loopback only, short heartbeats, fresh secrets; database and executor come apart."""
    url = api_url(api_port)
    return {
        "PYTHONUNBUFFERED": "1",
        "NO_COLOR": "1",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__CORE__PARALLELISM": str(parallelism),
        "AIRFLOW__CORE__FERNET_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{url}/execution/",
        "AIRFLOW__CORE__AUTH_MANAGER": _SIMPLE_AUTH_MANAGER,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__DATABASE__LOAD_DEFAULT_CONNECTIONS": "False",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__BASE_URL": f"{url}/",
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
        # One secret shared by every process: the api-server signs the task JWTs it checks.
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "AIRFLOW__LOGGING__COLORED_CONSOLE_LOG": "False",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(task_log_dir),
        # Services run with --skip-serve-logs, but never collide with a default port anyway.
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "2",
        "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        # Runs only when the caller triggers them: no surprise scheduled runs in benchmarks.
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10",
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
        "AIRFLOW__DAG_PROCESSOR__PRINT_STATS_INTERVAL": "300",
        "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
        # A killed triggerer's triggers go to a new one once it has missed this many seconds.
        "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "10",
    }
