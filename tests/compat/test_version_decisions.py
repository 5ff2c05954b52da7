"""What version_compat decides, and the pieces it chooses between, on the Airflow under test."""

from __future__ import annotations

import hashlib

import pytest

from airflow_provider_lotimage import version_compat
from airflow_provider_lotimage.utils.task_state import VariableResumableJobMixin, VariableTaskState


def test_flags_follow_the_airflow_version() -> None:
    from airflow import __version__
    from packaging.version import Version

    version = Version(__version__)
    assert (version.major, version.minor) >= (3, 1)
    assert version_compat.AIRFLOW_V_3_2_PLUS is (version.release[:2] >= (3, 2))
    assert version_compat.AIRFLOW_V_3_3_PLUS is (version.release[:2] >= (3, 3))
    assert version_compat.HAS_TASK_STATE_STORE is version_compat.AIRFLOW_V_3_3_PLUS
    assert version_compat.HAS_DECLARATIVE_CONNECTION_FORM is version_compat.AIRFLOW_V_3_2_PLUS


def test_submit_operators_resume_with_the_sdk_mixin_only_where_it_resumes() -> None:
    """On 3.3 the SDK's ResumableJobMixin; below, ours (common-compat's stand-in never resumes)."""
    from airflow_provider_lotimage.operators.imagine import ImagineOperator

    mixins = [cls for cls in ImagineOperator.__mro__ if cls.__name__.endswith("ResumableJobMixin")]
    assert len(mixins) == 1
    if version_compat.HAS_TASK_STATE_STORE:
        from airflow.sdk import ResumableJobMixin

        assert mixins == [ResumableJobMixin]
    else:
        assert mixins == [VariableResumableJobMixin]


def test_variable_name_has_the_key_as_prefix_and_hashes_the_task_instance() -> None:
    records = VariableTaskState(dag_id="d", run_id="manual__2026", task_id="t", map_index=3)
    digest = hashlib.sha256(b"d/manual__2026/t/3").hexdigest()[:32]
    assert records.variable_key("lotimage_task") == f"lotimage_task__{digest}"
    assert records.variable_key("lotimage_progress_watch") == f"lotimage_progress_watch__{digest}"


@pytest.mark.parametrize(
    "other",
    [
        {"dag_id": "d2", "run_id": "r", "task_id": "t", "map_index": -1},
        {"dag_id": "d", "run_id": "r2", "task_id": "t", "map_index": -1},
        {"dag_id": "d", "run_id": "r", "task_id": "t2", "map_index": -1},
        {"dag_id": "d", "run_id": "r", "task_id": "t", "map_index": 0},
    ],
)
def test_each_task_instance_has_its_own_variable(other: dict) -> None:
    mine = VariableTaskState(dag_id="d", run_id="r", task_id="t", map_index=-1)
    theirs = VariableTaskState(**other)
    assert mine.variable_key("lotimage_task") != theirs.variable_key("lotimage_task")


def test_variable_name_fits_airflow_limits_for_the_longest_ids() -> None:
    records = VariableTaskState(dag_id="d" * 250, run_id="r" * 250, task_id="t" * 250, map_index=99999)
    assert len(records.variable_key("lotimage_progress_watch")) <= 64


def test_none_is_refused_as_the_task_state_store_does() -> None:
    with pytest.raises(ValueError, match="None"):
        VariableTaskState(dag_id="d", run_id="r", task_id="t").set("lotimage_task", None)
