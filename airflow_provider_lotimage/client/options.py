"""WaitOptions: everything a wait for one LotImage task needs, in one frozen object.

Built once by whoever starts the wait (an operator or the sensor as it defers, the scheduler's
fixed kwargs of a sensor started in the triggerer) and handed to the wait as it is: the trigger
keeps it, serializes its fields as its own keyword arguments (the names Airflow stores, so a
trigger serialized by an earlier release still deserializes), and builds its
:class:`~.progress.ProgressWatch` from it. Times are absolute epoch seconds, so a wait recreated
after a triggerer restart neither restarts its timeout nor its first-poll hold.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from airflow_provider_lotimage.client.progress import DEFAULT_STALL_TIMEOUT, ProgressWatch


@dataclass(frozen=True)
class WaitOptions:
    """What a wait needs; the field names are the trigger's serialized keyword arguments.

    :param poll_interval: seconds between progress reads (adaptive: the schedule's base).
    :param end_time: epoch seconds when the wait times out (``None``: never).
    :param stall_timeout: seconds without progress after which the task counts as stalled.
    :param started_at: epoch seconds when the wait began (``None``: when the waiting trigger is
        built; then left out of :meth:`to_kwargs`, so kwargs fixed at parse time hold no time).
    :param first_poll_at: epoch seconds before which progress is not read (``None``: the
        trigger's default, see :func:`~airflow_provider_lotimage.utils.deferral.earliest_first_poll`).
    :param kind: the task's kind (:mod:`.schedule`), the adaptive schedule's prior (``None``: unknown).
    :param adaptive_polling: read when the task has likely moved (``False``: every ``poll_interval``).
    :param webhook_key: webhook completion: the SHA-256 of the task's webhook token, under which
        the api-server records its deliveries (``None``: no webhook, polling only).
    :param from_submission: the wait began at the task's submission, so its end is a duration of
        the kind to learn (:mod:`.durations`); set by the submitting operators, left out of
        :meth:`to_kwargs` when ``False``.
    """

    poll_interval: float = 10.0
    end_time: float | None = None
    stall_timeout: float | None = DEFAULT_STALL_TIMEOUT
    started_at: float | None = None
    first_poll_at: float | None = None
    kind: str | None = None
    adaptive_polling: bool = True
    webhook_key: str | None = None
    from_submission: bool = False

    @classmethod
    def starting_at(
        cls, now: float, *, timeout: float | None, first_poll_delay: float | None = None, **options: Any
    ) -> WaitOptions:
        """Return the options of a wait that begins at ``now`` and may take ``timeout`` seconds.

        :param first_poll_delay: seconds from ``now`` before the first read (``None``: no hold).
        :param options: the other fields (``poll_interval``, ``stall_timeout``, ``kind``...).
        """
        return cls(
            end_time=None if timeout is None else now + timeout,
            started_at=now,
            first_poll_at=None if first_poll_delay is None else now + first_poll_delay,
            **options,
        )

    def to_kwargs(self) -> dict[str, Any]:
        """Return the fields as JSON-ready keyword arguments.

        ``started_at``, ``webhook_key`` and ``from_submission`` only when set: a trigger serialized
        by an earlier release keeps its kwargs.
        """
        kwargs = asdict(self)
        for optional in ("started_at", "webhook_key"):
            if kwargs[optional] is None:
                del kwargs[optional]
        if not self.from_submission:
            del kwargs["from_submission"]
        return kwargs

    def watch(self, task_id: str, *, hold: bool = True) -> ProgressWatch:
        """Return the watch of this wait for ``task_id``, resumed where the options say it began.

        :param hold: keep the first-poll hold (``False``: read at once, e.g. where no scheduler can
            race the trigger's event).
        """
        if self.started_at is None:
            raise ValueError("a wait's watch needs its start time (started_at)")
        return ProgressWatch.resume(
            task_id,
            started_at=self.started_at,
            end_time=self.end_time,
            stall_timeout=self.stall_timeout,
            first_poll_at=self.first_poll_at if hold else None,
            kind=self.kind,
            adaptive=self.adaptive_polling,
            hinted=self.webhook_key is not None,
            from_submission=self.from_submission,
        )
