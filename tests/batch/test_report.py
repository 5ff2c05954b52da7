"""The batch report's arithmetic and the batch's parse-time checks (no DAG run needed)."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_lotimage.batch.report import (
    Tolerance,
    batch_report,
    missing_report,
    prompt_report,
    summary,
)
from airflow_provider_lotimage.exceptions import LotImageInputError

FAILURE = {"step": "imagine", "error": "TaskFailedError", "reason": "Request cancelled due to output filters"}


def line(index: int, *, failed: bool = False, stored: int = 5, new: int = 5) -> dict[str, Any]:
    paths = [f"file:///out/t{index}_{n}.png" for n in range(stored)]
    return dict(
        prompt_report(
            index=index,
            prompt=f"prompt {index}",
            failures=[FAILURE] if failed else [],  # type: ignore[list-item]
            task_ids={"imagine": f"t{index}"},
            stored=paths,
            new_paths=paths[:new],
            destination="file:///out",
        )
    )


@pytest.mark.parametrize(
    ("tolerance", "failed", "total", "allowed"),
    [
        (Tolerance(), 0, 6, True),
        (Tolerance(), 1, 6, False),
        (Tolerance(max_failed_prompts=2), 2, 6, True),
        (Tolerance(max_failed_prompts=2), 3, 6, False),
        (Tolerance(max_failed_prompts=None), 6, 6, True),
        (Tolerance(max_failed_prompts=None, max_failed_share=0.1), 1, 10, True),
        (Tolerance(max_failed_prompts=None, max_failed_share=0.1), 2, 10, False),
        (Tolerance(max_failed_prompts=None, max_failed_share=0.1), 1, 9, False),  # 0.9 rounds down
        (Tolerance(max_failed_prompts=5, max_failed_share=0.5), 4, 6, False),  # both limits apply
    ],
)
def test_tolerance_allows_failed_prompts_within_both_limits(
    tolerance: Tolerance, failed: int, total: int, allowed: bool
) -> None:
    assert tolerance.allows(failed, total) is allowed


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_failed_prompts": -1},
        {"max_failed_prompts": 1.5},
        {"max_failed_prompts": True},
        {"max_failed_share": 1.5},
        {"max_failed_share": -0.1},
        {"max_failed_share": "0.1"},
    ],
)
def test_a_bad_tolerance_is_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(LotImageInputError, match="max_failed_"):
        Tolerance(**kwargs)


def test_the_report_adds_up_lines_and_counts_a_missing_line_as_failed() -> None:
    lines = [line(0), line(2, failed=True, stored=1, new=0), "not a line", {"no": "index"}]
    report = batch_report(
        dag_id="d",
        run_id="r",
        prompts=["prompt 0", "prompt 1", "prompt 2"],
        lines=lines,
        tolerance=Tolerance(max_failed_prompts=1),
    )
    assert (report["prompts"], report["succeeded"], report["failed"], report["within_tolerance"]) == (
        3,
        1,
        2,
        False,
    )
    assert [entry["state"] for entry in report["entries"]] == ["succeeded", "failed", "failed"]
    assert report["entries"][1] == missing_report(1, "prompt 1")
    assert report["entries"][1]["failures"][0]["step"] == "save"
    assert (report["paid_tasks"], report["pictures_stored"], report["new_pictures"]) == (2, 6, 5)
    assert report["entries"][2]["already_stored"] == 1
    text = summary(report)
    assert text[0].startswith("Batch: 1 of 3 prompt(s) succeeded, 2 failed; 2 paid task(s); 6 picture(s)")
    assert (
        "prompt 2 failed (imagine: Request cancelled due to output filters); 1 picture(s) of it stored"
        in text[2]
    )
    assert all("prompt 0" not in entry for entry in text[1:])  # the log names prompts by index only


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"buttons": ["U1", "U1"]}, "buttons must differ"),
        ({"buttons": ["U9"]}, "button"),
        ({"wait_for_completion": False}, "every step waits"),
        ({"max_failed_share": 2}, "max_failed_share"),
    ],
)
def test_lotimage_batch_refuses_bad_input_when_the_dag_is_parsed(
    kwargs: dict[str, Any], message: str
) -> None:
    from airflow.sdk import DAG

    from airflow_provider_lotimage.batch import lotimage_batch

    with DAG("batch_input"), pytest.raises(LotImageInputError, match=message):
        lotimage_batch(prompts=["An owl"], destination="file:///tmp/out", **kwargs)


def test_lotimage_batch_builds_a_group_per_prompt_and_a_report() -> None:
    from airflow.sdk import DAG

    from airflow_provider_lotimage.batch import lotimage_batch

    with DAG("batch_shape") as dag:
        report = lotimage_batch(
            prompts=["An owl", "A fox"], destination="file:///tmp/out", buttons=["U1", "V2", "🔄"], pool="p"
        )
    assert report.task_id == "batch_report" and report.trigger_rule == "all_done"
    assert sorted(dag.task_ids) == sorted(
        ["batch.imagine", "batch.U1", "batch.V2", "batch.button_3", "batch.save", "batch_report"]
    )
    assert dag.get_task("batch.save").trigger_rule == "all_done"
    assert {dag.get_task(t).pool for t in ("batch.imagine", "batch.U1", "batch.button_3")} == {"p"}
    assert dag.get_task("batch.save").upstream_task_ids == {
        "batch.imagine",
        "batch.U1",
        "batch.V2",
        "batch.button_3",
    }
    assert dag.get_task("batch.U1").wait_for_completion is True
