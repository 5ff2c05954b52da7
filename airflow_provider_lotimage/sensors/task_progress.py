"""TaskProgressSensor: wait until a LotImage task has finished its picture."""

from __future__ import annotations

import dataclasses
import time
import warnings
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, cast

from airflow.providers.common.compat.sdk import (
    AirflowSensorTimeout,
    BaseSensorOperator,
    PokeReturnValue,
)
from airflow.triggers.base import StartTriggerArgs

from airflow_provider_lotimage import config
from airflow_provider_lotimage.client.options import WaitOptions
from airflow_provider_lotimage.client.progress import DEFAULT_STALL_TIMEOUT, ProgressWatch, read_due
from airflow_provider_lotimage.client.validation import validate_first_poll_delay, validate_task_id
from airflow_provider_lotimage.exceptions import LotImageInputError
from airflow_provider_lotimage.hooks.lotimage import LotImageHook
from airflow_provider_lotimage.keys import IMAGE_URL_XCOM_KEY, WATCH_STATE_KEY
from airflow_provider_lotimage.links import LotImagePictureLink, record_result
from airflow_provider_lotimage.triggers.task_progress import TaskProgressTrigger, kwargs_for
from airflow_provider_lotimage.utils.deferral import (
    TaskEnding,
    ends_in_triggerer,
    hold_seconds,
    result_from_event,
)
from airflow_provider_lotimage.utils.failures import fail_fast
from airflow_provider_lotimage.utils.task_state import release, task_state
from airflow_provider_lotimage.version_compat import HAS_START_FROM_TRIGGER

if TYPE_CHECKING:
    from airflow.sdk import Context, XComArg

    from airflow_provider_lotimage.client.results import LotImageResult


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
        mismatch"); see :func:`~airflow_provider_lotimage.utils.deferral.default_first_poll_delay`.
    :param end_from_trigger: deferrable only: when the picture is ready, end the task in the
        triggerer (XComs ``return_value`` and ``lotimage_image_url`` as usual) instead of resuming
        it on a worker. ``False``: resume in ``execute_complete`` as before, for what only a worker
        runs on success: ``on_success_callback`` (a task that has one, or ``outlets``, ends on a
        worker anyway), ``post_execute``, task listeners. Failures always resume on a worker.
        ``None`` (default): ``True`` unless Airflow has task listeners (OpenLineage's), then
        ``False``: Airflow refuses ``end_from_trigger=True`` once listeners are registered.
    :param start_from_trigger: deferrable only, Airflow 3.3: the scheduler defers the task
        straight to the triggerer, so waiting never takes a worker (with ``end_from_trigger``, the
        task never runs on one). ``lotimage_task_id`` may be a Jinja template, rendered in the
        triggerer: pull with ``map_indexes=-1``, e.g. ``"{{ ti.xcom_pull(task_ids='imagine',
        map_indexes=-1) }}"`` (a pull without it asks for every map index, a request the 3.3
        triggerer's comms do not carry, and the trigger never starts); set the upstream task
        explicitly (``imagine >> sensor``). It must be a string (an ``XComArg`` warns and defers
        from a worker). The triggerer's first read is
        immediate (``first_poll_delay`` guards a worker's deferral, and there is none), the
        ``timeout`` is Airflow's trigger timeout (``AirflowSensorTimeout``), and the taskId is
        checked by the trigger. Airflow 3.1 and 3.2 cannot start tasks in the triggerer: there it
        warns and waits as a deferrable sensor.
    :param adaptive_polling: read progress when the task has likely moved or finished instead of
        at every poke; a poke with nothing due returns without a call (the first always reads).
    """

    template_fields = ("lotimage_task_id",)
    operator_extra_links = (LotImagePictureLink(),)
    ui_color = "#e8dcff"
    start_trigger_args = StartTriggerArgs(
        trigger_cls=f"{TaskProgressTrigger.__module__}.{TaskProgressTrigger.__qualname__}",
        trigger_kwargs={},
        next_method="execute_complete",
        next_kwargs=None,
        timeout=None,
    )
    start_from_trigger = False

    def __init__(
        self,
        *,
        lotimage_task_id: str | XComArg,
        lotimage_conn_id: str = LotImageHook.default_conn_name,
        stall_timeout: float | None = DEFAULT_STALL_TIMEOUT,
        deferrable: bool = config.default_deferrable(),
        poke_interval: float = 10.0,
        first_poll_delay: float | None = None,
        end_from_trigger: bool | None = None,
        start_from_trigger: bool = False,
        adaptive_polling: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, **kwargs)
        # Rendered (an XComArg resolved, a template filled) before execute reads it.
        self.lotimage_task_id: str = cast("str", lotimage_task_id)
        self.lotimage_conn_id = lotimage_conn_id
        self.stall_timeout = stall_timeout
        self.deferrable = deferrable
        self.first_poll_delay = validate_first_poll_delay(first_poll_delay)
        self.end_from_trigger = end_from_trigger
        self.adaptive_polling = adaptive_polling
        self._watch: ProgressWatch | None = None
        self.start_from_trigger = start_from_trigger and self._can_start_from_trigger()
        if self.start_from_trigger:
            self.start_trigger_args = dataclasses.replace(
                self.start_trigger_args,
                trigger_kwargs=self._start_trigger_kwargs(),
                timeout=timedelta(seconds=self.timeout),
            )

    def _can_start_from_trigger(self) -> bool:
        """Check ``start_from_trigger`` at parse time: an error if not deferrable, else warn when moot."""
        if not self.deferrable:
            raise LotImageInputError(f"{self.task_id}: start_from_trigger=True needs deferrable=True")
        reason = None
        if not HAS_START_FROM_TRIGGER:
            reason = "Airflow 3.3 or later (this one sends every task to a worker first)"
        elif not isinstance(self.lotimage_task_id, str):
            reason = "lotimage_task_id as a string: a taskId or a Jinja template, not an XComArg"
        if reason is None:
            return True
        warnings.warn(
            f"{self.task_id}: start_from_trigger=True needs {reason}; the task defers from a worker instead",
            UserWarning,
            stacklevel=3,
        )
        return False

    def _start_trigger_kwargs(self) -> dict[str, Any]:
        """Return the trigger's kwargs, fixed at parse time (the scheduler builds the trigger).

        Nothing time-dependent: the wait starts when the triggerer builds the trigger, the timeout
        is the trigger timeout, and ``first_poll_at`` is in the past (read at once: no worker
        deferred the task, so no late worker report can race the trigger's event).
        """
        options = WaitOptions(
            poll_interval=float(self.poke_interval),
            stall_timeout=self.stall_timeout,
            first_poll_at=0.0,
            adaptive_polling=self.adaptive_polling,
        )
        return kwargs_for(self.lotimage_task_id, self.lotimage_conn_id, options, self._ending())

    def _ending(self) -> TaskEnding:
        """Return how the trigger ends the task, alike from the scheduler or a worker."""
        return TaskEnding(end_from_trigger=ends_in_triggerer(self), push_return_value=self.do_xcom_push)

    @cached_property
    def hook(self) -> LotImageHook:
        """Return the hook of ``lotimage_conn_id``, built on first use."""
        return LotImageHook(self.lotimage_conn_id)

    def execute(self, context: Context) -> LotImageResult | None:
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
        options = WaitOptions.starting_at(
            time.time(),
            timeout=self.timeout,
            first_poll_delay=hold_seconds(self.first_poll_delay),
            poll_interval=self.poke_interval,
            stall_timeout=self.stall_timeout,
            adaptive_polling=self.adaptive_polling,
        )
        trigger = TaskProgressTrigger.waiting_for(
            self.lotimage_task_id, self.lotimage_conn_id, options, self._ending()
        )
        self.defer(trigger=trigger, method_name="execute_complete")

    def execute_complete(self, context: Context, event: dict[str, Any]) -> LotImageResult:
        """Resume after the trigger fired: validate its event and return the result dict."""
        with fail_fast(resubmits=False):
            return record_result(context, result_from_event(event))

    def poke(self, context: Context) -> bool | PokeReturnValue:
        """Read progress once; finish with the result dict, or raise if the task failed or stalled.

        A poke with no read due (adaptive polling: the task cannot have moved enough yet) returns
        ``False`` without a call; the first poke always reads.
        """
        watch = self._load_watch(context)
        if not read_due(watch, self.poke_interval):
            return False
        try:
            with fail_fast(resubmits=False):
                done = watch.step(self.hook.poll_once(self.lotimage_task_id), metrics=self.hook.metrics)
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
            self._watch = ProgressWatch.start(
                self.lotimage_task_id, stall_timeout=self.stall_timeout, adaptive=self.adaptive_polling
            )
        return self._watch

    def _save_watch(self, context: Context, watch: ProgressWatch) -> None:
        store = task_state(context) if self.reschedule else None
        if store is not None:
            store.set(WATCH_STATE_KEY, {**watch.to_dict(), "try_number": context["ti"].try_number})

    def _drop_watch(self, context: Context) -> None:
        """Release the watch once the wait is over, where it would outlive the run (below Airflow 3.3)."""
        if self.reschedule:
            release(context, WATCH_STATE_KEY)
