"""TaskProgressSensor: wait until a LotImage task has finished its picture."""

from __future__ import annotations

import time
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import (
    AirflowSensorTimeout,
    BaseSensorOperator,
    PokeReturnValue,
    conf,
)

from airflow_provider_lotimage.failures import fail_fast
from airflow_provider_lotimage.hooks.lotimage import LotImageHook
from airflow_provider_lotimage.links import IMAGE_URL_XCOM_KEY, LotImagePictureLink, record_result
from airflow_provider_lotimage.task_state import release, task_state
from airflow_provider_lotimage.triggers.task_progress import TaskProgressTrigger, result_from_event
from airflow_provider_lotimage.validation import validate_task_id
from airflow_provider_lotimage.waiting import (
    DEFAULT_STALL_TIMEOUT,
    ProgressWatch,
    earliest_first_poll,
    validate_first_poll_delay,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

#: Task-state key where reschedule mode keeps the watch between pokes (below Airflow 3.3, the
#: prefix of the Variable that holds it: see :mod:`airflow_provider_lotimage.task_state`).
WATCH_STATE_KEY = "lotimage_progress_watch"


class TaskProgressSensor(BaseSensorOperator):
    """Wait for a LotImage task; its return value is the result dict.

    The result has the keys ``lotimage_task_id``, ``prompt``, ``image_url``, ``image_urls``,
    ``progress``, ``buttons``, ``created_at`` and ``originating_task_id``. The sensor fails at once
    with the service's reason when the task fails, and when no progress is seen for
    ``stall_timeout`` seconds. Works in ``poke``, ``reschedule`` and deferrable modes.

    Deferrable, it reads the progress once in the worker first and returns at once when the task
    has already finished (a sensor placed after a long-finished task, a rerun): no trigger, no
    second worker run, and no deferral that Airflow could race (see below).

    :param lotimage_task_id: the taskId to follow (templated), e.g. ``imagine.output``.
    :param lotimage_conn_id: the LotImage connection.
    :param stall_timeout: seconds without progress after which the task counts as stalled.
    :param deferrable: wait in the triggerer (default: ``[operators] default_deferrable``).
    :param first_poll_delay: deferrable only: seconds after the deferral before the trigger's
        first progress read, so before the task can resume. ``None`` (default): the worker's
        ``[workers] min_heartbeat_interval`` + 5 s, read when it defers (10 s with Airflow's
        defaults). A trigger that fires sooner can make Airflow 3 fail the resumed task ("state
        mismatch"); see :func:`~airflow_provider_lotimage.waiting.default_first_poll_delay`.
    """

    template_fields = ("lotimage_task_id",)
    operator_extra_links = (LotImagePictureLink(),)
    ui_color = "#e8dcff"

    def __init__(
        self,
        *,
        lotimage_task_id: str,
        lotimage_conn_id: str = LotImageHook.default_conn_name,
        stall_timeout: float | None = DEFAULT_STALL_TIMEOUT,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poke_interval: float = 10.0,
        first_poll_delay: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, **kwargs)
        self.lotimage_task_id = lotimage_task_id
        self.lotimage_conn_id = lotimage_conn_id
        self.stall_timeout = stall_timeout
        self.deferrable = deferrable
        self.first_poll_delay = validate_first_poll_delay(first_poll_delay)
        self._watch: ProgressWatch | None = None

    @cached_property
    def hook(self) -> LotImageHook:
        """Return the hook of ``lotimage_conn_id``, built on first use."""
        return LotImageHook(self.lotimage_conn_id)

    def execute(self, context: Context) -> Any:
        """Check the taskId, then wait by poking or, when deferrable, poke once and defer if not done.

        The one poke before deferring is the same read as any poke (a failed task fails here,
        a read error only means "not known yet"), so a finished task costs one call and one
        worker run.
        """
        with fail_fast(resubmits=False):
            self.lotimage_task_id = validate_task_id(self.lotimage_task_id)
        # The extra link is computed whenever the task finishes or defers: give it a value early.
        context["ti"].xcom_push(key=IMAGE_URL_XCOM_KEY, value="")
        if not self.deferrable:
            try:
                return super().execute(context)
            except AirflowSensorTimeout:
                self._drop_watch(context)
                raise
        done = self.poke(context)
        if isinstance(done, PokeReturnValue) and done.is_done:
            return done.xcom_value
        self._drop_watch(context)  # the trigger keeps its own from here on
        self.defer(
            trigger=TaskProgressTrigger(
                lotimage_task_id=self.lotimage_task_id,
                lotimage_conn_id=self.lotimage_conn_id,
                poll_interval=self.poke_interval,
                end_time=time.time() + self.timeout,
                stall_timeout=self.stall_timeout,
                first_poll_at=earliest_first_poll(self.first_poll_delay),
            ),
            method_name="execute_complete",
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Resume after the trigger fired: validate its event and return the result dict."""
        with fail_fast(resubmits=False):
            return record_result(context, result_from_event(event))

    def poke(self, context: Context) -> bool | PokeReturnValue:
        """Read progress once; finish with the result dict, or raise if the task failed or stalled."""
        watch = self._load_watch(context)
        try:
            with fail_fast(resubmits=False):
                done = watch.step(self.hook.poll_once(self.lotimage_task_id))
        except Exception:
            self._drop_watch(context)
            raise
        self._save_watch(context, watch)
        if watch.moved:
            self.log.info("LotImage task %s: %d%%", self.lotimage_task_id, watch.last_progress)
        elif watch.last_error:
            self.log.warning("Could not read LotImage progress (will try again): %s", watch.last_error)
        if done is None:
            return False
        self._drop_watch(context)
        return PokeReturnValue(is_done=True, xcom_value=record_result(context, done.to_result()))

    def _load_watch(self, context: Context) -> ProgressWatch:
        """In poke mode the watch lives on the instance; reschedule mode keeps it in task state."""
        if self._watch is not None:
            return self._watch
        store = task_state(context) if self.reschedule else None
        saved = store.get(WATCH_STATE_KEY) if store is not None else None
        try_number = context["ti"].try_number
        if (
            isinstance(saved, dict)
            and saved.get("task_id") == self.lotimage_task_id
            and saved.get("try_number") == try_number
        ):
            self._watch = ProgressWatch.from_dict(saved)
        else:
            self._watch = ProgressWatch.start(self.lotimage_task_id, stall_timeout=self.stall_timeout)
        return self._watch

    def _save_watch(self, context: Context, watch: ProgressWatch) -> None:
        store = task_state(context) if self.reschedule else None
        if store is not None:
            store.set(WATCH_STATE_KEY, {**watch.to_dict(), "try_number": context["ti"].try_number})

    def _drop_watch(self, context: Context) -> None:
        """Release the watch once the wait is over, where it would outlive the run (below Airflow 3.3)."""
        if self.reschedule:
            release(context, WATCH_STATE_KEY)
