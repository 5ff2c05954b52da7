"""Where a deployment's logs are, and their last lines: what to show when a run or a test fails."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path


class Logs:
    """The services' combined stdout/stderr files and the task logs Airflow writes itself.

    Service logs are appended across restarts (each start writes a banner line), so a tail shows
    the crash and the restart together. ``extra_logs`` names other logs to show with them (the
    backing servers': PostgreSQL, Redis).
    """

    def __init__(
        self,
        service_log_dir: Path,
        task_log_dir: Path,
        services: Sequence[str],
        extra_logs: Mapping[str, Path] | None = None,
    ) -> None:
        self.service_log_dir = service_log_dir
        self.task_log_dir = task_log_dir
        self.services = tuple(services)
        self.extra_logs = dict(extra_logs or {})

    def service_log(self, name: str) -> Path:
        """The file service ``name`` writes its output to."""
        return self.service_log_dir / f"{name}.log"

    def log_paths(self) -> dict[str, Path]:
        """Each service's combined stdout/stderr file (appended across restarts)."""
        paths = {name: self.service_log(name) for name in self.services}
        migrate_log = self.service_log("db-migrate")
        if migrate_log.exists():
            paths["db-migrate"] = migrate_log
        paths.update({name: path for name, path in self.extra_logs.items() if path.exists()})
        return paths

    def log_tail(self, name: str, lines: int = 40) -> str:
        """Last ``lines`` lines of a service log."""
        path = self.log_paths().get(name)
        if path is None or not path.exists():
            return ""
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 200 * lines))
            text = fh.read().decode(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def format_log_tails(self, lines: int = 40) -> str:
        """All service log tails, headed by name: what to print when a test fails."""
        parts = []
        for name in self.log_paths():
            parts.append(f"\n----- {name} ({self.log_paths()[name]}), last {lines} lines -----\n")
            parts.append(self.log_tail(name, lines) + "\n")
        return "".join(parts)

    def task_log_files(
        self, dag_id: str, run_id: str | None = None, task_id: str | None = None
    ) -> list[Path]:
        """Task log files (``logs/dag_id=…/run_id=…/task_id=…/attempt=N.log``, JSON lines)."""
        pattern = f"dag_id={dag_id}/run_id={run_id or '*'}/task_id={task_id or '*'}/**/*.log"
        return sorted(self.task_log_dir.glob(pattern))

    def task_log_records(self, dag_id: str, run_id: str) -> list[dict[str, object]]:
        """Every JSON record of a run's task logs, the triggers' included (``_file``: which log).

        A trigger's log is ``attempt=N.log.trigger.<triggerer job id>.log``, so ``_file`` also
        says which triggerer ran it.
        """
        run_dir = self.task_log_dir / f"dag_id={dag_id}" / f"run_id={run_id}"
        records: list[dict[str, object]] = []
        for path in self.task_log_files(dag_id, run_id):
            for line in path.read_text(errors="replace").splitlines():
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict):
                    records.append({**record, "_file": str(path.relative_to(run_dir))})
        return records

    def task_log_tail(self, dag_id: str, run_id: str, task_id: str, lines: int = 40) -> str:
        """Last ``lines`` messages of a task's logs (worker and trigger), as ``time level event``."""
        out = []
        for path in self.task_log_files(dag_id, run_id, task_id):
            out.append(f"----- {path.relative_to(self.task_log_dir)} -----")
            for line in path.read_text(errors="replace").splitlines()[-lines:]:
                try:
                    rec = json.loads(line)
                    out.append(f"{rec.get('timestamp')} {rec.get('level')} {rec.get('event')}")
                except ValueError:
                    out.append(line)
        return "\n".join(out)
