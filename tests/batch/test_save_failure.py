"""A batch whose destination cannot be written: the prompt's pictures are paid for and rendered,
the save fails with the storage error, and the report still says so (in its XCom and the log)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.dag_helpers import run_dag, ti_state, xcom


def test_a_save_that_cannot_write_is_reported_as_the_prompts_failure(
    lotimage_connection: str, lotimage_emulator: Any, tmp_path: Path, airflow_db: None
) -> None:
    from airflow.sdk import DAG

    from airflow_provider_lotimage.batch import lotimage_batch

    blocker = tmp_path / "archive"
    blocker.write_text("a file where a folder should be")
    with DAG("batch_unwritable_destination", schedule=None) as dag:
        lotimage_batch(
            prompts=["An owl on a fence post"],
            destination=f"file://{blocker}/pictures",
            buttons=["U1"],
            deferrable=True,
            poll_interval=0.3,
        )
    run = run_dag(dag)

    assert str(run.state) in ("failed", "DagRunState.FAILED")
    assert ti_state(run, "batch_report") == "failed"  # the report file could not be written either
    assert lotimage_emulator.stats()["submissions"] == {"imagine": 1, "button": 1}
    report = xcom(run, "batch_report", key="lotimage_batch_report")
    (entry,) = report["entries"]
    assert entry["state"] == "failed" and entry["stored"] == []
    assert sorted(entry["lotimage_task_ids"]) == ["U1", "imagine"]
    (failure,) = entry["failures"]
    assert failure["step"] == "save" and failure["error"] == "StorageError"
    assert "a part of the path is a file, not a folder" in failure["reason"]
    assert report["report_file"].endswith(".json") and not blocker.with_name("pictures").exists()
