"""Run one DAG in a throw-away local Airflow deployment and exit non-zero unless the run succeeds.

``scripts/airflow-deployment run-dag`` (``python -m airflow_harness``): for trying a DAG on the
real services by hand or from CI, with the same harness the deployment tests use. Prints the
run's task states (and every state seen on the way), plus the service and task log tails when
it fails.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from .deployment import AirflowDeployment
from .errors import DeploymentError
from .rest import RunResult
from .topology import Topology


def _parse_env(pairs: Sequence[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"--env expects KEY=VALUE, got {pair!r}")
        env[key] = value
    return env


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="airflow-deployment", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run-dag", help="run one DAG in a fresh deployment")
    run.add_argument("--dags-folder", required=True, type=Path)
    run.add_argument("--dag-id", required=True)
    run.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    run.add_argument("--conf", default="{}", help="JSON object passed as the run's conf")
    run.add_argument("--timeout", type=float, default=300.0, help="seconds for the run to finish")
    run.add_argument("--parse-timeout", type=float, default=90.0, help="seconds for the DAG to be parsed")
    run.add_argument("--parallelism", type=int, default=2)
    run.add_argument(
        "--topology",
        choices=("local", "distributed"),
        default="local",
        help="local: SQLite and LocalExecutor; distributed: PostgreSQL, Celery workers and Redis",
    )
    run.add_argument("--keep-home", action="store_true", help="keep AIRFLOW_HOME (logs, DB) afterwards")
    run.add_argument(
        "--report-slots", action="store_true", help="print worker-slot-seconds per task (waits for workers)"
    )
    run.add_argument("--log-lines", type=int, default=40, help="service log lines printed on failure")
    return parser


def _print_failure(deployment: AirflowDeployment, result: RunResult, log_lines: int) -> None:
    """Service log tails, then the logs of each failed task: usually enough to see why without the home."""
    print(deployment.format_log_tails(log_lines), file=sys.stderr)
    for key, state in result.task_states.items():
        if state in ("failed", "up_for_retry"):
            task_id = key.split("[", 1)[0]
            print(deployment.task_log_tail(result.dag_id, result.run_id, task_id), file=sys.stderr)


def _print_result(result: RunResult, slots: Mapping[str, float]) -> None:
    print(f"dag_id={result.dag_id} run_id={result.run_id} state={result.state} elapsed={result.elapsed:.1f}s")
    for key, state in sorted(result.task_states.items()):
        seen = " -> ".join(str(s) for s in result.observed_states.get(key, []))
        slot = f", worker-slot-seconds {slots[key]:.2f}" if key in slots else ""
        print(f"  {key}: {state} (seen: {seen}{slot})")


def main(argv: Sequence[str] | None = None) -> int:
    """``airflow-deployment run-dag``: start a deployment, run one DAG, print its result, tear down."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        conf = json.loads(args.conf)
        env = _parse_env(args.env)
    except (ValueError, argparse.ArgumentTypeError) as exc:
        parser.error(str(exc))
    topology = Topology.distributed() if args.topology == "distributed" else Topology.local()
    deployment = AirflowDeployment(
        args.dags_folder, env=env, parallelism=args.parallelism, keep_home=args.keep_home, topology=topology
    )
    print(f"AIRFLOW_HOME={deployment.home} api={deployment.api_url}", flush=True)
    try:
        with deployment:
            print(f"started in {deployment.timings.get('start', 0):.1f}s", flush=True)
            result = deployment.run_dag(
                args.dag_id, conf=conf, timeout=args.timeout, parse_timeout=args.parse_timeout
            )
            if not result.ok:
                _print_failure(deployment, result, args.log_lines)
            slots = deployment.worker_slot_seconds(args.dag_id, result.run_id) if args.report_slots else {}
    except (DeploymentError, TimeoutError) as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    _print_result(result, slots)
    return 0 if result.ok else 1
