"""TaskProgressTrigger: waits for a LotImage task in the triggerer, holding no worker slot.

Times are absolute (epoch seconds), so a triggerer restart neither resets the timeout nor mistakes
the restart for a stall. The taskId is checked here (``validate_task_id``), since a sensor started
from the triggerer gets it rendered here, never in a worker: a bad one is an ``error`` event.

**Ending the task here** (``end_from_trigger``): on success the trigger stores the XComs the
task's ``execute_complete`` would push (``return_value``: the result dict, unless the task has
``do_xcom_push=False``; ``lotimage_image_url``; ``lotimage_task_id`` for the submitting
operators), releases the task's records, logs the same "finished" line, and yields Airflow's
``TaskSuccessEvent``: the triggerer marks the task successful and it never goes back to a
worker. Errors and timeouts always resume the task on a worker, which fails it with the usual
message, retries and failure callbacks. This works alike on Airflow 3.1 to 3.3, whose
triggerers handle the event the same way (``handle_event_submit`` for ``BaseTaskEndEvent``).

The XComs are written through the Task SDK (``XCom.set``, in a triggerer over its API comms),
as a worker writes them, not as the event's ``xcoms``: the triggerer stores those with
``XComModel.set``, which JSON-encodes the value into the JSON column once more, so on 3.1 to
3.3 a task pulling them through the Task SDK gets the JSON *text* (a dict arrives as a string,
a taskId in quotes). The records (``release_keys``, a submitting operator's taskId and
paid-task budget claim) are released with
:func:`~airflow_provider_lotimage.utils.task_state.release`, as the task does on success, for the
task instance the triggerer gave the trigger. On 3.3 that does nothing (Airflow's task state
store belongs to the run); below 3.3 it deletes Variables, which the triggerer's comms carry on
3.1 and 3.2 as well. Both happen *before* the event: a triggerer that dies in between leaves
the task deferred and the next triggerer runs the trigger again (one more progress read,
nothing paid); no retry can start while the task is deferred, so none can pay twice.

Two cases still send a success to a worker, whose ``execute_complete`` does all that itself:
a run that no triggerer makes (no ``trigger_id``: ``dag.test()`` runs the trigger inline and
then resumes the task with the event's payload, on every supported version), and XComs or
records the trigger could not write or release.

**The deferral race.** An event that resumes the task on a worker comes no sooner than
``first_poll_at``: a trigger that fires within seconds of its deferral can make Airflow fail the
resumed task ("state mismatch"; why, and the default of ``[workers] min_heartbeat_interval`` +
5 s, in :func:`~airflow_provider_lotimage.utils.deferral.default_first_poll_delay`). A wait that
ends its task here on success reads from the start: the triggerer ends the task, which no late
report can fail, and only an event that resumes a worker waits for ``first_poll_at``
(:attr:`TaskProgressTrigger.holds_reads`); any other wait reads no sooner. Operators compute it in
the worker when they defer. It is absolute, so a trigger recreated after a triggerer restart
waits only for what is left of it. The wait applies when a triggerer runs the trigger (which
gives it a ``trigger_id``); ``dag.test()`` runs it inline, in the task's own process right
after the deferral, where no scheduler can race it, and reads at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any, cast

from airflow.triggers.base import BaseTrigger, TaskSuccessEvent, TriggerEvent
from asgiref.sync import sync_to_async

from airflow_provider_lotimage.client import queue_place
from airflow_provider_lotimage.client.contract import TaskProgress
from airflow_provider_lotimage.client.options import WaitOptions
from airflow_provider_lotimage.client.progress import DEFAULT_STALL_TIMEOUT, ProgressWatch
from airflow_provider_lotimage.client.validation import validate_task_id
from airflow_provider_lotimage.exceptions import LotImageError, TaskTimeoutError
from airflow_provider_lotimage.hooks.lotimage import LotImageHook
from airflow_provider_lotimage.keys import IMAGE_URL_XCOM_KEY, RETURN_VALUE_XCOM_KEY, TASK_ID_XCOM_KEY
from airflow_provider_lotimage.links import LotImagePictureLink, link_for, log_finished
from airflow_provider_lotimage.ratelimit.registry import durations_of
from airflow_provider_lotimage.utils.deferral import TaskEnding, earliest_first_poll
from airflow_provider_lotimage.utils.task_state import release
from airflow_provider_lotimage.webhooks.hints import Hints

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_lotimage.client.durations import DurationBook
    from airflow_provider_lotimage.client.results import LotImageResult

#: Polls are spread by up to this fraction of the interval, so a thousand triggers deferred in the
#: same second do not poll in lockstep.
POLL_JITTER = 0.2


class _Option:
    """A trigger attribute read from its :class:`WaitOptions` or :class:`TaskEnding` (``holder``).

    The options are the trigger's state; the names stay readable on the trigger, as Airflow's and
    the tests' views of a trigger read them.
    """

    def __init__(self, holder: str) -> None:
        self.holder = holder

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, trigger: Any, owner: type | None = None) -> Any:
        return getattr(getattr(trigger, self.holder), self.name)


class TaskProgressTrigger(BaseTrigger):
    """Polls ``task/progress`` until the task is finished, failed, stalled or out of time.

    Yields exactly one event: ``{"status": "success", "lotimage_task_id", "result"}`` with the
    result dict, ``{"status": "error", "lotimage_task_id", "message", "error_type"}``, or
    ``{"status": "timeout", "lotimage_task_id", "message"}``; or, ending the task here,
    Airflow's ``TaskSuccessEvent``. How it ends a task, and when it may fire: the module doc.

    :param lotimage_task_id: the taskId to follow.
    :param lotimage_conn_id: the LotImage connection.
    :param poll_interval: seconds between progress reads (spread by :data:`POLL_JITTER`).
    :param end_time: epoch seconds when the wait times out (``None``: never).
    :param stall_timeout: seconds without progress after which the task counts as stalled.
    :param started_at: epoch seconds when the wait began (default: now).
    :param first_poll_at: epoch seconds before which progress is not read (default: now plus
        :func:`~airflow_provider_lotimage.utils.deferral.default_first_poll_delay`, read where the
        trigger is built; pass a time in the past to read at once).
    :param end_from_trigger: end a successful task here (see above). Default ``False``: triggers
        serialized before this option resume their task as they were built to.
    :param release_keys: keys of the task's records to release before ending the task here.
    :param push_return_value: end with the ``return_value`` XCom (the task's ``do_xcom_push``).
    :param push_task_id: end with the ``lotimage_task_id`` XCom too (the submitting operators).
    :param kind: the task's kind, for the adaptive schedule's first read (``None``: unknown).
    :param adaptive_polling: read when the task likely moved (False: every ``poll_interval``).
    :param webhook_key: webhook completion (:mod:`airflow_provider_lotimage.webhooks`): the SHA-256
        of the task's webhook token. A delivery the api-server recorded under it wakes the trigger,
        which then reads the task once: the delivery is a hint (it carries no signature), the read
        is the truth. Polling goes on underneath, backed off (``WEBHOOK_FALLBACK_FACTOR``), for a
        delivery that is late or lost. ``None``: polling only.
    :param from_submission: the wait began at the submission: its end teaches the key's durations
        book (:mod:`~airflow_provider_lotimage.client.durations`), whose expectation the watch takes
        when the trigger starts (again after a triggerer restart, from that triggerer's book).
    """

    def __init__(
        self,
        lotimage_task_id: str,
        lotimage_conn_id: str = LotImageHook.default_conn_name,
        *,
        poll_interval: float = 10.0,
        end_time: float | None = None,
        stall_timeout: float | None = DEFAULT_STALL_TIMEOUT,
        started_at: float | None = None,
        first_poll_at: float | None = None,
        end_from_trigger: bool = False,
        release_keys: Sequence[str] | None = None,
        push_return_value: bool = True,
        push_task_id: bool = False,
        kind: str | None = None,
        adaptive_polling: bool = True,
        webhook_key: str | None = None,
        from_submission: bool = False,
    ) -> None:
        super().__init__()
        self.lotimage_task_id = lotimage_task_id
        self.lotimage_conn_id = lotimage_conn_id
        self.options = WaitOptions(
            poll_interval=float(poll_interval),
            end_time=end_time,
            stall_timeout=stall_timeout,
            started_at=time.time() if started_at is None else started_at,
            first_poll_at=earliest_first_poll(None) if first_poll_at is None else float(first_poll_at),
            kind=kind,
            adaptive_polling=bool(adaptive_polling),
            webhook_key=webhook_key,
            from_submission=bool(from_submission),
        )
        self.ending = TaskEnding(
            end_from_trigger=bool(end_from_trigger),
            release_keys=tuple(release_keys or ()),
            push_return_value=bool(push_return_value),
            push_task_id=bool(push_task_id),
        )

    # The options, read by their names on the trigger.
    poll_interval = _Option("options")
    end_time = _Option("options")
    stall_timeout = _Option("options")
    started_at = _Option("options")
    first_poll_at = _Option("options")
    kind = _Option("options")
    adaptive_polling = _Option("options")
    webhook_key = _Option("options")
    from_submission = _Option("options")
    end_from_trigger = _Option("ending")
    push_return_value = _Option("ending")
    push_task_id = _Option("ending")

    @property
    def release_keys(self) -> list[str]:
        """The task's records to release before ending the task here."""
        return list(self.ending.release_keys)

    @classmethod
    def waiting_for(
        cls, lotimage_task_id: str, lotimage_conn_id: str, options: WaitOptions, ending: TaskEnding
    ) -> TaskProgressTrigger:
        """Return the trigger of a wait built by an operator or the sensor (see :func:`kwargs_for`)."""
        return cls(**kwargs_for(lotimage_task_id, lotimage_conn_id, options, ending))

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Return the classpath and keyword arguments that recreate this trigger in the triggerer."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            kwargs_for(self.lotimage_task_id, self.lotimage_conn_id, self.options, self.ending),
        )

    @property
    def run_by_triggerer(self) -> bool:
        """Whether a triggerer runs this trigger: it sets ``trigger_id``, the trigger's row id.

        Only then does a scheduler resume the task, the race that ``first_poll_at`` guards against,
        and only then is a ``TaskSuccessEvent`` applied as one (see the class docstring).
        """
        return getattr(self, "trigger_id", None) is not None

    @property
    def holds_reads(self) -> bool:
        """Whether reads wait for ``first_poll_at``; else only an event that resumes a worker does.

        A task that ends here on success is ended by the triggerer (``TaskSuccessEvent``), which
        no stale report of the deferring try can fail: Airflow's scheduler fails a try on such a
        report only while it is scheduled, queued or running again, which only a worker resume
        makes it. So such a task reads from the start, and a delivery or an early finish ends it
        at once; only an error, a timeout, an exception or a success that must resume a worker
        waits for ``first_poll_at`` before it leaves ``run``.
        """
        return self.run_by_triggerer and not self.end_from_trigger

    def _watch(self) -> ProgressWatch:
        return self.options.watch(self.lotimage_task_id, hold=self.holds_reads)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll until the task is done, then yield the one event (see the class docstring).

        The wait for ``first_poll_at`` comes before anything that resumes the task on a worker: an
        event other than ``TaskSuccessEvent``, and an exception from ``run``, which resumes the
        task too and would race the scheduler just as an early event would (:attr:`holds_reads`).
        """
        watch = self._watch()
        if self.holds_reads:
            await self._hold()
        try:
            event = await self._outcome(watch)
        except Exception:
            await self._hold()
            raise
        if not isinstance(event, TaskSuccessEvent):
            await self._hold()
        yield event

    async def _outcome(self, watch: ProgressWatch) -> TriggerEvent:
        """Wait for the task and return the one event; the webhook token is forgotten as the wait ends.

        Not when the trigger is cancelled: the wait goes on elsewhere with the same token (it
        expires with the wait). Airflow cancels a trigger it moves to another triggerer (a
        triggerer stopping, or one it took for dead) and one whose task was cleared, whose next try
        reconnects to the same LotImage task; forgotten, the token would turn the delivery away.
        """
        base = {"lotimage_task_id": self.lotimage_task_id}
        try:
            done = await self._wait(watch)
        except TaskTimeoutError as err:
            return TriggerEvent({**base, "status": "timeout", "message": str(err)})
        except LotImageError as err:
            return TriggerEvent(
                {**base, "status": "error", "message": str(err), "error_type": type(err).__name__}
            )
        finally:
            if not _being_cancelled():
                await self.hints.close()
        return await self._success(done.to_result())

    async def _hold(self) -> None:
        """Sleep until ``first_poll_at`` when a triggerer runs the trigger (see the class docstring)."""
        hold = max(0.0, self.first_poll_at - time.time()) if self.run_by_triggerer else 0.0
        if hold > 0:
            self.log.info(
                "LotImage task %s: holding for %.1f s: a trigger that fires sooner after its deferral "
                "can make Airflow fail the resumed task",
                self.lotimage_task_id,
                hold,
            )
            await asyncio.sleep(hold)

    async def _wait(self, watch: ProgressWatch) -> TaskProgress:
        """Check the taskId, then read progress until the watch says the task is done."""
        self.lotimage_task_id = watch.task_id = validate_task_id(self.lotimage_task_id)
        hook = LotImageHook(self.lotimage_conn_id)
        book = await sync_to_async(durations_of)((await hook.atransport()).settings)
        replan = listen(watch)
        await sync_to_async(watch.expect)(book)  # may read Redis (scope "redis")
        try:
            if watch.adaptive and watch.kind is not None:
                # A task of known kind is first read near its expected end, not at once: a grid read
                # at the end of the hold shows 0 % and costs a read that tells nothing.
                await sleep_until_read(self.hints, watch, book, replan, self.poll_interval)
            metrics = hook.metrics
            while (
                done := watch.step(
                    await hook.apoll_once(self.lotimage_task_id), metrics=metrics, durations=book
                )
            ) is None:
                if watch.moved:
                    self.log.info("LotImage task %s: %d%%", self.lotimage_task_id, watch.last_progress)
                await sleep_until_read(self.hints, watch, book, replan, self.poll_interval)
            return done
        finally:
            queue_place.leave(watch, book)

    @cached_property
    def hints(self) -> Hints:
        """The webhook deliveries of this wait (without ``webhook_key``: plain sleeps)."""
        return Hints(self.webhook_key, self.lotimage_task_id, self.log)

    async def _success(self, result: LotImageResult) -> TriggerEvent:
        """End the task here when asked and possible, else resume it with the ordinary event."""
        if self.end_from_trigger and self.run_by_triggerer and await self._finished(result):
            log_finished(self.log, result)
            return TaskSuccessEvent()
        return TriggerEvent(
            {"lotimage_task_id": self.lotimage_task_id, "status": "success", "result": result}
        )

    def end_xcoms(self, result: LotImageResult) -> dict[str, Any]:
        """Return the XComs the task's ``execute_complete`` would leave."""
        xcoms: dict[str, Any] = {IMAGE_URL_XCOM_KEY: result.get("image_url")}
        if self.push_task_id:
            xcoms[TASK_ID_XCOM_KEY] = result.get("lotimage_task_id")
        if self.push_return_value:
            xcoms[RETURN_VALUE_XCOM_KEY] = result
        return xcoms

    async def _finished(self, result: LotImageResult) -> bool:
        """Store the XComs and release the records; False (a worker does it then) if that failed."""
        try:
            await sync_to_async(_finish)(self.task_instance, self.end_xcoms(result), self.release_keys)
        except Exception:
            self.log.warning(
                "Could not store the XComs or release the records %s from the triggerer; the task "
                "resumes on a worker to finish",
                self.release_keys,
                exc_info=True,
            )
            return False
        return True


async def sleep_until_read(
    hints: Hints, watch: ProgressWatch, book: DurationBook, replan: asyncio.Event, poll_interval: float
) -> None:
    """Sleep until the next read, or until a webhook delivery comes.

    A sleep planned on a likely start that the key's queue then moves is planned again
    (:mod:`..client.queue_place`): a task queued behind faster tasks is not read late, nor one
    behind a task whose wait joined the queue after its own read early.
    """
    while True:
        replan.clear()
        if await _first_of(hints.pause(watch.next_poll_in(poll_interval, jitter=POLL_JITTER)), replan):
            return
        queue_place.place(watch, book, time.time())


def listen(watch: ProgressWatch) -> asyncio.Event:
    """Return the event the key's queue sets, from any thread, when the task's likely start moved."""
    replan, loop = asyncio.Event(), asyncio.get_running_loop()
    watch.replan = lambda: _call_soon(loop, replan.set)
    return replan


def _being_cancelled() -> bool:
    """Whether the running asyncio task is being cancelled (true inside its ``finally`` then)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
    """Run ``callback`` in ``loop``, from whichever thread (the key's queue tells from any)."""
    if not loop.is_closed():  # a wait that ended has left the queue; this only guards a race
        loop.call_soon_threadsafe(callback)


async def _first_of(pause: Awaitable[None], event: asyncio.Event) -> bool:
    """Await ``pause`` unless ``event`` is set first; True when ``pause`` ran to its end."""
    paused, woken = asyncio.ensure_future(pause), asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({paused, woken}, return_when=asyncio.FIRST_COMPLETED)
        if paused.done():
            paused.result()  # its error, if any, is the wait's
            return True
        return False
    finally:
        paused.cancel()
        woken.cancel()


def _finish(task_instance: Any, xcoms: dict[str, Any], release_keys: Sequence[str]) -> None:
    """Do what a successful task does with its XComs, extra link and records, through the Task SDK.

    In a triggerer the SDK talks to Airflow over the triggerer's API comms, never the database.
    """
    from airflow.providers.common.compat.sdk import XCom

    if task_instance is None:
        raise LotImageError("The triggerer gave the trigger no task instance to finish")
    ti = task_instance
    where = {"dag_id": ti.dag_id, "task_id": ti.task_id, "run_id": ti.run_id, "map_index": ti.map_index}
    for key, value in xcoms.items():
        XCom.set(key, value, **where)
    # A worker stores the "LotImage picture" link when the task ends (its finalize): store it now,
    # or the task keeps the empty link stored when it deferred.
    link = LotImagePictureLink()
    XCom.set(link.xcom_key, link_for(xcoms.get(IMAGE_URL_XCOM_KEY), ti), **where)
    context = cast("Context", {"ti": ti})
    for key in release_keys:
        release(context, key)


def kwargs_for(
    lotimage_task_id: str, lotimage_conn_id: str, options: WaitOptions, ending: TaskEnding
) -> dict[str, Any]:
    """Return the trigger's keyword arguments: what Airflow stores for it, so the names never change.

    A trigger serialized by an earlier release is rebuilt from them, and so is a sensor's trigger
    that the scheduler starts from kwargs fixed at parse time (``start_from_trigger``).
    """
    return {
        "lotimage_task_id": lotimage_task_id,
        "lotimage_conn_id": lotimage_conn_id,
        **options.to_kwargs(),
        **ending.to_kwargs(),
    }
