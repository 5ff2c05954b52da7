"""Every name this provider writes into Airflow, spelled once.

XCom keys, task-state keys, Variable names, the DAG param and the keys of the save's Asset events.

Airflow keeps what is stored under these names across runs, upgrades and retries, and other code
reads it back (the gallery, a resumed task, a retry, a consumer of the Asset): renaming one breaks
what is already stored. So each is spelled here once, and ``tests/test_stable_names.py`` pins the
values. A new stored name belongs here too.
"""

from __future__ import annotations

import hashlib
from typing import Final

# -- XComs of a task instance ---------------------------------------------------------------------

#: The submitted LotImage taskId, pushed by the submitting operators as soon as it is known.
TASK_ID_XCOM_KEY: Final = "lotimage_task_id"
#: The finished picture's URL, pushed by every waiting task: what the extra link leads to.
IMAGE_URL_XCOM_KEY: Final = "lotimage_image_url"
#: A task's return value (Airflow's ``XCOM_RETURN_KEY``): the result dict, or the taskId.
RETURN_VALUE_XCOM_KEY: Final = "return_value"
#: A task instance's claim on the run's paid-task budget (an XCom), and its own record of it
#: (a task-state key): see :mod:`airflow_provider_lotimage.utils.budget`.
PAID_TASKS_KEY: Final = "lotimage_paid_tasks"
#: Why a LotImage task instance failed, pushed as it fails (``{"error", "reason", "final"}``): a
#: batch reports the failures of its prompts from these (:mod:`airflow_provider_lotimage.batch`).
FAILURE_XCOM_KEY: Final = "lotimage_failure"
#: One prompt's line of a batch report, pushed by the prompt's save whether it succeeds or fails.
PROMPT_REPORT_XCOM_KEY: Final = "lotimage_prompt_report"
#: A whole batch report, pushed by the batch's report task: what the gallery shows beside a run.
BATCH_REPORT_XCOM_KEY: Final = "lotimage_batch_report"

# -- task-state records (below Airflow 3.3: Variables named by variable_name) --------------------

#: The submitted task's record: ``{"lotimage_task_id", "request"}`` (the SDK's ``external_id_key``).
SUBMITTED_TASK_KEY: Final = "lotimage_task"
#: A rescheduling sensor's ProgressWatch between pokes.
WATCH_STATE_KEY: Final = "lotimage_progress_watch"


def variable_name(key: str, task_instance: str) -> str:
    """Return the Variable that holds ``key`` of a task instance below Airflow 3.3: ``<key>__<digest>``.

    :param key: a task-state key (:data:`SUBMITTED_TASK_KEY`, :data:`WATCH_STATE_KEY`,
        :data:`PAID_TASKS_KEY`).
    :param task_instance: ``dag_id/run_id/task_id/map_index``; its SHA-256 names the Variable.
    """
    return f"{key}__{hashlib.sha256(task_instance.encode()).hexdigest()[:32]}"


# -- the DAG param ----------------------------------------------------------------------------------

#: The DAG param (the run's conf may override it) capping a run's paid tasks; ``None``: no cap.
BUDGET_PARAM: Final = "max_paid_tasks_per_run"

# -- the extra of SaveImagesOperator's Asset events -----------------------------------------------

#: The LotImage taskIds whose pictures the save stored: also the marker the gallery finds saves by.
EVENT_TASK_IDS: Final = "lotimage_task_ids"
#: The rendered destination folder the pictures went to (the gallery serves only paths in it).
EVENT_DESTINATION: Final = "destination"
#: Pictures stored by this run of the task, those already there, and the new ones' paths.
EVENT_NEW_COUNT: Final = "new_count"
EVENT_UNCHANGED_COUNT: Final = "unchanged_count"
EVENT_NEW_PATHS: Final = "new_paths"
