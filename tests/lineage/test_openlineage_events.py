"""OpenLineage events of a DAG run, through the OpenLineage provider's listener and its file transport.

A fresh Airflow process (``tests.lineage.lineage_dag``) runs imagine → upscale → save with
``dag.test()`` against the emulator, its ``[openlineage]`` transport writing every event as a line
of a file; the test reads that file. It holds what utils/lineage.py promises: the save's outputs
are every picture and sidecar on disk, its inputs every LotImage task they came from; the
submitting tasks name the task they created and its parent; no event holds the API key, and none
the prompt unless ``[lotimage] lineage_include_prompt`` is set.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO_ROOT
from tests.lineage.lineage_dag import DAG_ID, PROMPT

pytest.importorskip("airflow.providers.openlineage")


@pytest.fixture(autouse=True)
def _db(airflow_db: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__CORE__MIN_SERIALIZED_DAG_UPDATE_INTERVAL", "0")


def private_metadata_db(tmp_path: Path) -> dict[str, str]:
    """Return the settings that give the DAG's process a copy of this test process's SQLite DB.

    With the default ``[openlineage] execute_in_thread`` off, the listener forks the task runner
    to emit each event, and under ``dag.test()`` the fork inherits the runner's open SQLite
    connections, which SQLite forbids using across ``fork()`` (a child that does can corrupt the
    file). A DB shared with this test process would then fail its later tests ("database disk
    image is malformed", seen once on one pytest-xdist worker). The copy is made with SQLite's
    backup API, consistent whatever this process holds open. A DB chosen outside the suite (not
    SQLite) is kept.
    """
    url = os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "")
    if not url.startswith("sqlite:///"):
        return {}
    copy = tmp_path / "airflow.db"
    source, target = sqlite3.connect(url.removeprefix("sqlite:///")), sqlite3.connect(copy)
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()
    return {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{copy}"}


def run_with_lineage(tmp_path: Path, *, include_prompt: bool) -> tuple[list[dict[str, Any]], str, Path]:
    """Run the DAG in a new process with a file transport; return its events, their text, the folder."""
    events_file = tmp_path / "openlineage.jsonl"
    output = tmp_path / "pictures"
    env = {
        **os.environ,
        "LOTIMAGE_OUTPUT_DIR": str(output),
        "AIRFLOW__OPENLINEAGE__DISABLED": "False",
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "lotimage-tests",
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(events_file), "append": True}
        ),
        "AIRFLOW__LOTIMAGE__LINEAGE_INCLUDE_PROMPT": str(include_prompt),
        **private_metadata_db(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "-m", "tests.lineage.lineage_dag"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert "DAG run state: success" in done.stdout, done.stdout[-4000:] + done.stderr[-4000:]
    # The listener emits each task's events before the task's process goes on (a forked child it
    # waits for), so all of them are in the file once the process has ended.
    text = events_file.read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()], text, output


def complete_event(events: list[dict[str, Any]], task_id: str) -> dict[str, Any]:
    found = [
        event
        for event in events
        if event["eventType"] == "COMPLETE" and event["job"]["name"] == f"{DAG_ID}.{task_id}"
    ]
    assert len(found) == 1, [(e["eventType"], e["job"]["name"]) for e in events]
    return found[0]


def names(datasets: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(dataset["namespace"], dataset["name"]) for dataset in datasets}


def test_the_events_name_every_stored_file_and_its_lotimage_tasks(
    tmp_path: Path, lotimage_connection: str, lotimage_emulator: Any, lotimage_api_key: str
) -> None:
    events, text, output = run_with_lineage(tmp_path, include_prompt=False)
    api = f"lotimage://{lotimage_emulator.url.split('://')[1].rstrip('/')}"

    imagine = complete_event(events, "imagine")
    (created,) = imagine["outputs"]
    assert created["namespace"] == api and created["name"].startswith("task/")
    grid_task = created["name"].removeprefix("task/")
    assert imagine["inputs"] == []
    assert imagine["run"]["facets"]["lotimage"]["lotimage_task_id"] == grid_task

    upscale = complete_event(events, "upscale")
    assert names(upscale["inputs"]) == {(api, f"task/{grid_task}")}
    (upscaled,) = upscale["outputs"]
    upscale_task = upscaled["name"].removeprefix("task/")
    assert upscale["run"]["facets"]["lotimage"]["originating_task_id"] == grid_task

    save = complete_event(events, "save")
    stored = {("file", str(path)) for path in output.iterdir()}
    # The grid, its four quadrants and the upscale, each with its sidecar.
    assert len(stored) == 12 and sum(name.endswith(".json") for _, name in stored) == 6
    assert {(d["namespace"], d["name"]) for d in save["outputs"] if d["namespace"] == "file"} == stored
    # The whole chain, whichever way imagine and upscale ended (docs/lineage.md).
    assert names(save["inputs"]) >= {(api, f"task/{grid_task}"), (api, f"task/{upscale_task}")}
    assert lotimage_emulator.stats()["submissions"]["imagine"] == 1

    assert lotimage_api_key not in text
    assert "lineage-marker-7f3a" not in text  # the prompt, nowhere: not opted in


def test_the_prompt_only_when_opted_in(
    tmp_path: Path, lotimage_connection: str, lotimage_emulator: Any, lotimage_api_key: str
) -> None:
    events, text, _ = run_with_lineage(tmp_path, include_prompt=True)
    assert complete_event(events, "imagine")["run"]["facets"]["lotimage"]["prompt"] == PROMPT
    assert lotimage_api_key not in text
