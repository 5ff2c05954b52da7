"""Make the test suite's own use of Airflow work on Airflow 3.1 and 3.2 as it does on 3.3.

Only the tests' side changes here, never the provider's: names the tests import from where
Airflow 3.2+ keeps them, and three things that make an older ``dag.test()`` behave as 3.3's does
(each what a real worker, API server or DAG processor of that version does anyway): its
in-process API server is built once instead of per task run, callbacks see the task's error, and
the run is of the DAG ``test()`` was called on. Installed once, from tests/conftest.py, before any
test imports Airflow's internals.
"""

from __future__ import annotations

import functools
import sys
from typing import Any

from airflow_provider_lotimage.version_compat import AIRFLOW_V_3_2_PLUS, AIRFLOW_V_3_3_PLUS


def install() -> None:
    """Install what the running Airflow needs (nothing on 3.3)."""
    if not AIRFLOW_V_3_2_PLUS:
        _alias_moved_names()
    if not AIRFLOW_V_3_3_PLUS:
        _reuse_the_in_process_api_server()
        _give_callbacks_the_exception()
        _sync_the_dag_dag_test_runs()


def _alias_moved_names() -> None:
    """Airflow 3.1: ``DagBag`` and the task exceptions under the names 3.2 gave them.

    3.2 moved ``airflow.models.dagbag`` (``DagBag``, ``sync_bag_to_db``) to
    ``airflow.dag_processing.dagbag``, and exposed the task exceptions in ``airflow.sdk.exceptions``
    (3.1 has them in ``airflow.exceptions`` only). The objects are the same; only the tests' import
    paths are served.
    """
    import airflow.exceptions
    import airflow.models.dagbag
    import airflow.sdk.exceptions

    sys.modules.setdefault("airflow.dag_processing.dagbag", airflow.models.dagbag)
    for name in ("AirflowFailException", "AirflowNotFoundException"):
        if not hasattr(airflow.sdk.exceptions, name):
            setattr(airflow.sdk.exceptions, name, getattr(airflow.exceptions, name))


def _reuse_the_in_process_api_server() -> None:
    """Airflow < 3.3: build ``dag.test()``'s in-process Execution API server once, not per task run.

    Older ``dag.test()`` builds the server anew for every task it runs: about 2 s each on 3.1 and
    3 s on 3.2 (0.7 s on 3.3), and each leaves its event-loop thread behind. The tests whose
    emulator finishes a picture in 3 s (to watch it progress) would then find it finished before
    the first poke. One server per test session, as a deployment's API server is one process.
    """
    from airflow.sdk.execution_time import supervisor

    supervisor.in_process_api_server = functools.cache(supervisor.in_process_api_server)


def _give_callbacks_the_exception() -> None:
    """Airflow < 3.3: ``dag.test()`` runs a task without putting its error in ``context["exception"]``.

    A real worker of these versions does (``task_runner.main`` sets it before ``finalize`` runs the
    failure and retry callbacks); the in-process runner of ``dag.test()`` skips that line, which
    3.3 added. The tests' failure callbacks read the error from there.
    """
    from airflow.sdk.execution_time import task_runner

    original = task_runner.finalize

    @functools.wraps(original)
    def finalize(ti: Any, state: Any, context: Any, log: Any, error: BaseException | None = None) -> Any:
        if "exception" not in context:
            context["exception"] = error
        return original(ti, state, context, log, error)

    task_runner.finalize = finalize


def _sync_the_dag_dag_test_runs() -> None:
    """Airflow < 3.3: make ``dag.test()`` run the DAG it is called on, as 3.3's does.

    Older ``dag.test()`` writes a DAG to the database only the first time it runs it, and the
    database then refuses a new version for 30 s (``[core] min_serialized_dag_update_interval``):
    a test that parses an example DAG again (another output folder, so another asset URI) would run
    the earlier version. 3.3 re-syncs on every call (apache/airflow#64884). Here the DAG is written
    first, right before the run, the way the DAG processor would.
    """
    import os

    import airflow.settings
    from airflow.sdk.definitions.dag import DAG

    os.environ["AIRFLOW__CORE__MIN_SERIALIZED_DAG_UPDATE_INTERVAL"] = "0"  # read per write from 3.2
    if not AIRFLOW_V_3_2_PLUS:
        airflow.settings.MIN_SERIALIZED_DAG_UPDATE_INTERVAL = 0  # read once, at import, on 3.1
    original = DAG.test

    @functools.wraps(original)
    def test(self: Any, *args: Any, **kwargs: Any) -> Any:
        from tests.dag_helpers import register_dag

        register_dag(self)
        return original(self, *args, **kwargs)

    DAG.test = test  # type: ignore[method-assign]
