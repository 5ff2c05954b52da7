"""Helpers for running DAGs defined inside test files."""

from __future__ import annotations

from typing import Any


def register_dag(dag: Any) -> None:
    """Store the DAG as the DAG processor would: ``dag.test()`` only runs serialized DAGs."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    DagBundlesManager().sync_bundles_to_db()
    bag = DagBag(collect_dags=False)
    bag.bag_dag(dag)
    sync_bag_to_db(bag, bundle_name="dags-folder", bundle_version=None)


def run_dag(dag: Any) -> Any:
    """Register the DAG, then run it with ``dag.test()``."""
    register_dag(dag)
    return dag.test()


#: The keys of a LotImage result dict (what the sensor and the waiting operators return).
EXPECTED_KEYS = {
    "lotimage_task_id",
    "prompt",
    "image_url",
    "image_urls",
    "progress",
    "buttons",
    "created_at",
    "originating_task_id",
}


def xcom(run: Any, task_id: str, key: str = "return_value") -> Any:
    ti = run.get_task_instance(task_id)
    return ti.xcom_pull(task_ids=task_id, key=key)


def ti_state(run: Any, task_id: str) -> str:
    return run.get_task_instance(task_id).state
