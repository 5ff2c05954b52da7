"""What a deployment recorded: metadata DB rows and the workers' own accounting of their slots.

Read with plain ``sqlite3`` (read-only) or ``psycopg2`` rather than through Airflow: the calling
process has its own AIRFLOW_HOME and configuration, and must not share the deployment's. The SQL
is written once, with ``?`` placeholders and columns both databases have; :class:`PostgresReader`
translates the placeholders.

Three sources, because none tells the whole story: ``task_instance.duration`` includes deferred
time (the start date survives the resume); the audit ``log`` table has every state change, so
time in ``running`` (:meth:`MetadataDB.running_intervals`); and the scheduler log has the
supervisors' ``Workload finished`` lines, the wall time each worker slot was really busy
(:meth:`MetadataDB.workloads`); under CeleryExecutor the supervisors run in the Celery workers,
so their logs hold those lines instead.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

_KV_RE = re.compile(r"(\w+)=(\S+)")


def parse_db_datetime(value: Any) -> datetime | None:
    """Parse a UtcDateTime column (SQLite: naive UTC text; Postgres: a datetime) into an aware datetime."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        parsed = value
    else:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def task_key(task_id: str, map_index: int) -> str:
    """``task_id`` or ``task_id[map_index]`` for mapped tasks: one name per task instance."""
    return task_id if map_index < 0 else f"{task_id}[{map_index}]"


class _KeyedByTask:
    """Gives task-instance records the ``key`` the REST client's task states use, so they can be joined."""

    task_id: str
    map_index: int

    @property
    def key(self) -> str:
        """``task_id`` or ``task_id[map_index]`` for mapped tasks."""
        return task_key(self.task_id, self.map_index)


@dataclass(frozen=True)
class TaskInstanceRecord(_KeyedByTask):
    """One task_instance (or task_instance_history) row: what a slot-time benchmark needs."""

    task_id: str
    map_index: int
    run_id: str
    state: str | None
    try_number: int
    start_date: datetime | None
    end_date: datetime | None
    duration: float | None
    queued_dttm: datetime | None
    scheduled_dttm: datetime | None
    operator: str | None
    next_method: str | None
    trigger_id: int | None
    pid: int | None
    #: Where the try ran (``[core] hostname_callable``: the machine name in the distributed topology).
    hostname: str | None = None


@dataclass(frozen=True)
class TaskStateEvent(_KeyedByTask):
    """One state transition of a task instance, from the audit ``log`` table."""

    at: datetime
    task_id: str
    map_index: int
    run_id: str | None
    try_number: int
    event: str


@dataclass(frozen=True)
class Workload:
    """One execution of a task by a LocalExecutor worker (``Workload finished`` log line)."""

    ti_id: str
    duration: float
    final_state: str
    exit_code: int
    finished_at: datetime | None


def _parse_workload(line: str) -> Workload | None:
    """The ``Workload finished`` record of a scheduler log line (JSON or ``key=value``), if any."""
    if "Workload finished" not in line:
        return None
    fields: dict[str, Any]
    if line.lstrip().startswith("{"):
        try:
            fields = json.loads(line)
        except ValueError:
            return None
    else:
        fields = dict(_KV_RE.findall(line))
        fields["timestamp"] = line.split(" ", 1)[0]
    try:
        return Workload(
            ti_id=str(fields["workload_id"]).replace("-", ""),
            duration=float(fields["duration"]),
            final_state=str(fields.get("final_state")),
            exit_code=int(fields.get("exit_code", -1)),
            finished_at=parse_db_datetime(fields.get("timestamp")),
        )
    except (KeyError, ValueError):
        return None


def _run_filter(dag_id: str, run_id: str | None, where: str = "dag_id = ?") -> tuple[str, list[str]]:
    """``WHERE`` clause and parameters for the rows of one DAG, or of one run when ``run_id`` is given."""
    params = [dag_id]
    if run_id is not None:
        where += " AND run_id = ?"
        params.append(run_id)
    return where, params


class Reader(Protocol):
    """Runs one read-only query; rows as dicts. One connection per query: nothing stays open to
    block a teardown (Postgres's shutdown, SQLite's writers)."""

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]: ...


class SqliteReader:
    """The SQLite file of the local topology, opened read-only."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Run ``sql`` (``?`` placeholders); no rows while the file does not exist yet."""
        if not self.db_path.exists():
            return []
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=10)
        try:
            conn.row_factory = sqlite3.Row
            return [dict(row) for row in conn.execute(sql, tuple(params)).fetchall()]
        finally:
            conn.close()


class PostgresReader:
    """The PostgreSQL database of the distributed topology (``dsn``: ``psycopg2.connect`` arguments)."""

    def __init__(self, dsn: dict[str, Any]) -> None:
        self.dsn = dsn

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Run ``sql``, its ``?`` placeholders made psycopg2's ``%s``, in a read-only transaction."""
        import psycopg2
        import psycopg2.extras

        conn = psycopg2.connect(**self.dsn)
        try:
            conn.set_session(readonly=True, autocommit=True)
            with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
                cur.execute(sql.replace("?", "%s"), tuple(params))
                return [dict(row) for row in cur.fetchall()]
        finally:
            conn.close()


class MetadataDB:
    """Read-only queries on a deployment's metadata DB, plus the workers' ``Workload finished`` lines.

    :param database: a :class:`Reader`, or the path of a SQLite file.
    :param workload_logs: the logs holding the task supervisors' lines (the scheduler's under
        LocalExecutor, the Celery workers' under CeleryExecutor); a path, a list, or a callable
        returning the list.
    """

    def __init__(
        self, database: Reader | Path, workload_logs: Path | Sequence[Path] | Callable[[], Sequence[Path]]
    ) -> None:
        self.reader: Reader = SqliteReader(database) if isinstance(database, Path) else database
        if isinstance(workload_logs, Path):
            workload_logs = [workload_logs]
        self._workload_logs = workload_logs

    @property
    def workload_logs(self) -> list[Path]:
        """The log files :meth:`workloads` reads."""
        logs = self._workload_logs
        return list(logs() if callable(logs) else logs)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Read-only SQL against the metadata DB (``?`` placeholders; no Airflow import)."""
        return self.reader.query(sql, params)

    def _ti_records(self, table: str, dag_id: str, run_id: str | None) -> list[TaskInstanceRecord]:
        where, params = _run_filter(dag_id, run_id)
        if table == "task_instance":
            extra = "next_method, trigger_id"
        else:  # task_instance_history keeps no deferral columns
            extra = "NULL AS next_method, NULL AS trigger_id"
        rows = self.query(
            f"SELECT task_id, map_index, run_id, state, try_number, start_date, end_date, duration, "
            f"queued_dttm, scheduled_dttm, operator, pid, hostname, {extra} FROM {table} WHERE {where} "
            f"ORDER BY run_id, task_id, map_index, try_number",
            params,
        )
        return [
            TaskInstanceRecord(
                task_id=r["task_id"],
                map_index=int(r["map_index"]),
                run_id=r["run_id"],
                state=r["state"],
                try_number=int(r["try_number"] or 0),
                start_date=parse_db_datetime(r["start_date"]),
                end_date=parse_db_datetime(r["end_date"]),
                duration=r["duration"],
                queued_dttm=parse_db_datetime(r["queued_dttm"]),
                scheduled_dttm=parse_db_datetime(r["scheduled_dttm"]),
                operator=r["operator"],
                next_method=r["next_method"],
                trigger_id=r["trigger_id"],
                pid=r["pid"],
                hostname=r["hostname"],
            )
            for r in rows
        ]

    def task_instances(self, dag_id: str, run_id: str | None = None) -> list[TaskInstanceRecord]:
        """Current task_instance rows (latest try of each task)."""
        return self._ti_records("task_instance", dag_id, run_id)

    def task_instance_history(self, dag_id: str, run_id: str | None = None) -> list[TaskInstanceRecord]:
        """Earlier tries (written on retry/clear); deferral does not add rows here."""
        return self._ti_records("task_instance_history", dag_id, run_id)

    def triggers(self) -> list[dict[str, Any]]:
        """Rows of the trigger table (a trigger lives from deferral until its task resumes)."""
        return self.query("SELECT id, classpath, created_date, triggerer_id FROM trigger ORDER BY id")

    def jobs(self, job_type: str | None = None) -> list[dict[str, Any]]:
        """Rows of the job table: one per scheduler/triggerer/dag-processor process ever started."""
        if job_type is None:
            return self.query("SELECT * FROM job ORDER BY id")
        return self.query("SELECT * FROM job WHERE job_type = ? ORDER BY id", (job_type,))

    def job_beating_since(
        self, job_type: str, since: datetime | None, heartbeat_within: float, hostname: str | None = None
    ) -> bool:
        """Whether a ``running`` job of ``job_type`` started at or after ``since`` and heartbeats.

        The api-server's own health endpoint reports the most recent job per type, which stays
        "healthy" for a while after a SIGKILL; a job row newer than our start of the service is
        the only proof the new process is alive. With two services of one type (two triggerers),
        ``hostname`` tells whose row it is: each runs on a machine of its own name.
        """
        where, params = "job_type = ?", [job_type]
        if hostname is not None:
            where, params = where + " AND hostname = ?", [*params, hostname]
        rows = self.query(
            f"SELECT state, start_date, latest_heartbeat FROM job WHERE {where} ORDER BY id DESC LIMIT 5",
            params,
        )
        now = datetime.now(UTC)
        for row in rows:
            started = parse_db_datetime(row["start_date"])
            beat = parse_db_datetime(row["latest_heartbeat"])
            if (
                row["state"] == "running"
                and started is not None
                and since is not None
                and started >= since
                and beat is not None
                and (now - beat).total_seconds() < heartbeat_within
            ):
                return True
        return False

    def task_state_events(self, dag_id: str, run_id: str | None = None) -> list[TaskStateEvent]:
        """Every task state change, from the audit ``log`` table, oldest first.

        Airflow 3 writes one row per transition reported through the execution API (``running``,
        ``deferred``, ``running`` again on resume, ``success`` …), so this is DB proof that a task
        was deferred and the basis of running time that excludes the deferral.
        """
        where, params = _run_filter(dag_id, run_id, "dag_id = ? AND task_id IS NOT NULL")
        rows = self.query(
            f"SELECT dttm, task_id, map_index, run_id, try_number, event FROM log WHERE {where} ORDER BY id",
            params,
        )
        return [
            TaskStateEvent(
                at=parse_db_datetime(r["dttm"]) or datetime.min.replace(tzinfo=UTC),
                task_id=r["task_id"],
                map_index=-1 if r["map_index"] is None else int(r["map_index"]),
                run_id=r["run_id"],
                try_number=int(r["try_number"] or 0),
                event=r["event"],
            )
            for r in rows
        ]

    def running_intervals(
        self, dag_id: str, run_id: str | None = None
    ) -> dict[str, list[tuple[datetime, datetime]]]:
        """Per task key, the intervals it spent in ``running`` (deferral excluded), from the audit log.

        An interval runs from a ``running`` event to the next event of the same task instance and
        try (``deferred``, ``success``, ``failed``, ``up_for_retry`` …). It misses the supervisor's
        fork before and its clean-up after; :meth:`workloads` has those.
        """
        intervals: dict[str, list[tuple[datetime, datetime]]] = {}
        open_since: dict[tuple[str, str, int, int], datetime] = {}
        for ev in self.task_state_events(dag_id, run_id):
            ident = (ev.run_id or "", ev.task_id, ev.map_index, ev.try_number)
            began = open_since.pop(ident, None)
            if began is not None:
                intervals.setdefault(ev.key, []).append((began, ev.at))
            if ev.event == "running":
                open_since[ident] = ev.at
        return intervals

    def workloads(self) -> list[Workload]:
        """Every task execution a worker finished, parsed from :attr:`workload_logs`.

        The task supervisor logs ``Workload finished`` with the wall time the worker slot was
        busy (fork, task, and the supervisor's wind-down – up to ``[workers]
        min_heartbeat_interval`` seconds after the task itself ended) and the final state
        (``deferred`` for the part before a deferral, then ``success`` …). Summing ``duration``
        gives worker-slot-seconds.
        """
        found: list[Workload] = []
        for log in self.workload_logs:
            if log.exists():
                parsed = (_parse_workload(line) for line in log.read_text(errors="replace").splitlines())
                found.extend(workload for workload in parsed if workload is not None)
        return found

    def _ti_keys(self, dag_id: str, run_id: str | None) -> dict[str, str]:
        """Task instance id (every try) -> task key."""
        where, params = _run_filter(dag_id, run_id)
        keys: dict[str, str] = {}
        for table, id_col in (("task_instance", "id"), ("task_instance_history", "task_instance_id")):
            for r in self.query(
                f"SELECT {id_col} AS ti_id, task_id, map_index FROM {table} WHERE {where}", params
            ):
                keys[str(r["ti_id"]).replace("-", "")] = task_key(r["task_id"], int(r["map_index"]))
        return keys

    def run_workloads(self, dag_id: str, run_id: str, timeout: float = 20.0) -> dict[str, list[Workload]]:
        """Workloads per task key of one run, waiting until every execution has reported.

        A supervisor logs its workload only when it exits, which can be seconds after the run is
        already final; one ``running`` audit event per execution says how many to expect.
        """
        expected: dict[str, int] = {}
        for ev in self.task_state_events(dag_id, run_id):
            if ev.event == "running":
                expected[ev.key] = expected.get(ev.key, 0) + 1
        deadline = time.monotonic() + timeout
        while True:
            keys = self._ti_keys(dag_id, run_id)
            found: dict[str, list[Workload]] = {}
            for wl in self.workloads():
                key = keys.get(wl.ti_id)
                if key is not None:
                    found.setdefault(key, []).append(wl)
            if all(len(found.get(k, [])) >= n for k, n in expected.items()) or time.monotonic() > deadline:
                return found
            time.sleep(0.5)

    def worker_slot_seconds(self, dag_id: str, run_id: str, timeout: float = 20.0) -> dict[str, float]:
        """Worker-slot-seconds per task key of a run (all tries and resumes, deferral excluded)."""
        return {
            key: sum(wl.duration for wl in loads)
            for key, loads in self.run_workloads(dag_id, run_id, timeout).items()
        }
