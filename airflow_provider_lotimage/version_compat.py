"""The one place where this provider decides what differs between the Airflow versions it runs on.

As in the apache/airflow providers, the rest of the package imports these constants and never
asks for Airflow's version (or tries an import to find out) itself. Supported: Airflow 3.1, 3.2
and 3.3.

* :data:`HAS_TASK_STATE_STORE` (3.3): ``context["task_state_store"]`` and the Task SDK's
  ``ResumableJobMixin`` keep the submitted taskId and the sensor's reschedule watch. Below 3.3
  :mod:`airflow_provider_lotimage.utils.task_state` keeps them in Airflow Variables instead.
* :data:`HAS_DECLARATIVE_CONNECTION_FORM` (3.2): Airflow builds the connection form from
  ``conn-fields`` and ``ui-field-behaviour`` in ``get_provider_info``, and warns about hooks that
  still define the form methods. Airflow 3.1 only asks the hook, so there the hook defines them
  (:mod:`airflow_provider_lotimage.utils.connection_form`).
* :data:`HAS_START_FROM_TRIGGER` (3.3): the scheduler defers a ``start_from_trigger`` task
  straight to the triggerer (``TaskInstance.defer_task`` in ``DagRun.schedule_tis``), and the
  triggerer renders the task's templated fields that are also trigger kwargs. In 3.1 and 3.2 that
  scheduler branch is commented out ("TODO TaskSDK ... disabled") and the triggerer renders
  nothing: every task goes to a worker first, so ``TaskProgressSensor(start_from_trigger=True)``
  warns and defers from the worker as without it, literal taskId or not.
* :func:`has_task_listeners` (3.2): whether Airflow's plugins registered task listeners (the
  OpenLineage provider's, ...). From 3.2 a task runs them through the Task SDK's listener manager
  (``airflow.sdk.listener``); 3.1's task runner through the core's (``airflow.listeners.listener``).
* :func:`amask_secret` (3.3): registering a secret from an event loop. 3.3's triggerer sends
  requests to its supervisor from the loop's own thread only through ``asend`` (the Task SDK's
  ``amask_secret``); 3.1 and 3.2 have no ``amask_secret``, and their own async connection read
  calls the sync ``mask_secret`` from the loop, which is what this provider does there too.

* :func:`airflow_stats` (3.2): Airflow's ``Stats``, set up in this process. 3.1's
  ``airflow.stats.Stats`` sets itself up from ``[metrics]`` on first use, in any process. From 3.2
  on, the Task SDK's ``Stats`` (``airflow.sdk.observability.stats``) sends nothing until a process
  initializes it with a backend factory: the task runner does (and 3.3 when it loads its
  serializers), but the triggerer's trigger runner initializes only the core's copy, and a
  ``dag.test()`` may have loaded it before the configuration turned metrics on. So the first use
  in a process initializes it as the task runner does, when it has no backend yet or the no-op
  one while ``[metrics]`` asks for another; never a second time, so a backend Airflow set up is
  kept.

Not a version difference: a trigger ending its task (``TaskSuccessEvent`` with ``xcoms``,
``end_from_trigger``). 3.1, 3.2 and 3.3 define the event alike and their triggerers handle it
alike (``airflow.models.trigger.handle_event_submit``: state set, XComs stored, a success callback
request that the DAG processor does not run); the trigger's Variable deletes, needed below 3.3,
go through the triggerer's API comms (``DeleteVariable``), which all three carry. So
:class:`~airflow_provider_lotimage.triggers.task_progress.TaskProgressTrigger` ends tasks in the
triggerer on every supported version.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import JsonValue


def get_base_airflow_version_tuple() -> tuple[int, int, int]:
    """Return Airflow's ``(major, minor, micro)``, without pre-release or local parts."""
    from airflow import __version__
    from packaging.version import Version

    airflow_version = Version(__version__)
    return airflow_version.major, airflow_version.minor, airflow_version.micro


AIRFLOW_V_3_2_PLUS: bool = get_base_airflow_version_tuple() >= (3, 2, 0)
AIRFLOW_V_3_3_PLUS: bool = get_base_airflow_version_tuple() >= (3, 3, 0)

#: Airflow 3.3 (AIP-103): a per-task-instance key/value store that survives retries, and the
#: SDK's ``ResumableJobMixin`` that writes the submitted job's id to it before waiting.
HAS_TASK_STATE_STORE: bool = AIRFLOW_V_3_3_PLUS

#: Airflow 3.2: the connection form comes from the provider info; the hook's
#: ``get_ui_field_behaviour``/``get_connection_form_widgets`` are deprecated there.
HAS_DECLARATIVE_CONNECTION_FORM: bool = AIRFLOW_V_3_2_PLUS

#: Airflow 3.3: ``start_from_trigger`` tasks are deferred by the scheduler, and their templated
#: trigger kwargs rendered by the triggerer (``BaseTrigger.render_template_fields``).
HAS_START_FROM_TRIGGER: bool = AIRFLOW_V_3_3_PLUS


def has_task_listeners() -> bool:
    """Whether listeners from plugins run for this process's tasks (loads the plugins once)."""
    if AIRFLOW_V_3_2_PLUS:
        from airflow.sdk import listener
    else:
        from airflow.listeners import listener  # type: ignore[no-redef]
    return bool(listener.get_listener_manager().has_listeners)


if AIRFLOW_V_3_3_PLUS:
    from airflow.sdk.log import amask_secret
else:

    async def amask_secret(secret: JsonValue, name: str | None = None) -> None:
        """Register ``secret`` with Airflow's masker, as Airflow 3.1/3.2's async connection read does."""
        from airflow.providers.common.compat.sdk import mask_secret

        mask_secret(secret, name)


_stats_ready_in: int | None = None


def airflow_stats() -> Any:
    """Return Airflow's ``Stats``, initialized in this process if Airflow did not (see the module doc)."""
    global _stats_ready_in
    if not AIRFLOW_V_3_2_PLUS:
        from airflow.stats import Stats

        return Stats
    from airflow.providers.common.compat.sdk import Stats

    if _stats_ready_in != os.getpid():
        _initialize_sdk_stats(Stats)
        _stats_ready_in = os.getpid()
    return Stats


def _initialize_sdk_stats(stats_cls: Any) -> None:
    """Give the Task SDK's ``Stats`` the backend ``[metrics]`` asks for, unless it has a real one."""
    from airflow.sdk._shared.observability.metrics import stats as sdk_stats
    from airflow.sdk._shared.observability.metrics.base_stats_logger import NoStatsLogger
    from airflow.sdk.observability.metrics import stats_utils

    if AIRFLOW_V_3_3_PLUS:
        current = getattr(sdk_stats, "_factory", None)
        factory = stats_utils.get_stats_factory()  # type: ignore[call-arg]
    else:
        current = type.__getattribute__(stats_cls, "factory")
        factory = stats_utils.get_stats_factory(stats_cls)  # type: ignore[call-arg]
    if current not in (None, NoStatsLogger) or factory is NoStatsLogger:
        return
    if AIRFLOW_V_3_3_PLUS:
        from airflow.providers.common.compat.sdk import conf

        legacy = conf.getboolean("metrics", "legacy_names_on", fallback=False)
        sdk_stats.initialize(factory=factory, export_legacy_names=legacy)  # type: ignore[call-arg]
    else:
        stats_cls.initialize(factory=factory)


__all__ = [
    "AIRFLOW_V_3_2_PLUS",
    "AIRFLOW_V_3_3_PLUS",
    "HAS_DECLARATIVE_CONNECTION_FORM",
    "HAS_START_FROM_TRIGGER",
    "HAS_TASK_STATE_STORE",
    "airflow_stats",
    "amask_secret",
    "has_task_listeners",
]
