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
