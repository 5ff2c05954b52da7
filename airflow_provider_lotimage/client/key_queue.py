"""When a task is likely to start: the key's queue, replayed from the tasks this process waits for.

A key runs about :data:`KEY_RUNNING` tasks at once and the rest wait at 0 % (the contract's "Task
lifecycle"). A task submitted behind others starts only when one of them ends, so a first read at
"submission + expected duration" finds it at 0 % and tells nothing; in a batch, where most tasks
are submitted while the key is busy, those reads were most of the reads over one per task.

A :class:`KeyQueue` holds the key's tasks whose waits run in this process (the submitting
operators' waits: they begin at the submission, so their order is the service's) and replays the
service's queue: first in, first out, :data:`KEY_RUNNING` at once, each task taking its expected
duration (:mod:`.durations`), or ending when its progress says once it moved. The replay gives a
task's likely start (:meth:`KeyQueue.start_of`), from which the schedule expects its end.

The replay is only as good as what it holds: a task ahead that is seen moving faster, or that
ends, moves the starts of the tasks behind it earlier; one seen moving slower, or one submitted
sooner whose wait joins later (the triggerer loads new triggers in batches, in no set order),
moves them later. A wait that planned its read on a start that then moves :data:`REPLAN_BY`
seconds either way is told so (the ``replan`` callback given to :meth:`KeyQueue.start_of`) and
plans again, instead of sleeping to a read that comes late or finds its task at 0 %.

Tasks of other processes and other DAGs are unseen, so the start is a lower bound: a read that
still finds the task at 0 % falls back on the schedule's rule for queued tasks. A wait that ends
without leaving (a killed process) is forgotten after :data:`FORGET_SECONDS`.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

#: Tasks a key runs at once (the contract: "a key runs about 3 tasks at once, the rest wait in a
#: queue"; the emulator's ``max_running``). A key that runs more starts tasks sooner than
#: predicted; the schedule's bounds keep such a task's read within its expected duration.
KEY_RUNNING = 3
#: Seconds after its submission a task that never left is dropped from the replay.
FORGET_SECONDS = 3600.0
#: A task predicted to start this many seconds after its submission counts as queued.
QUEUED_AFTER = 1.0
#: A planned start that moves this many seconds, earlier or later, makes its wait plan again.
REPLAN_BY = 1.0


@dataclass
class InFlight:
    """One task of the key: when it was submitted, how long it should take, when it should end."""

    submitted_at: float
    seconds: float
    #: Once the task moved: the end its progress predicts (``None``: not seen moving); once it
    #: finished: when it most likely ended.
    ends_at: float | None = None
    #: Whether the task finished: it is kept while its end still tells when a slot freed.
    finished: bool = False


def replay(tasks: Iterable[tuple[str, InFlight]], running: int = KEY_RUNNING) -> dict[str, float]:
    """Return the predicted start of each task not yet seen moving (epoch seconds).

    Tasks seen moving hold a slot until their predicted end; the others start in submission
    order as soon as one of the ``running`` slots is free (and not before their submission).
    """
    ordered = sorted(tasks, key=lambda item: (item[1].submitted_at, item[0]))
    frees = [task.ends_at for _, task in ordered if task.ends_at is not None]
    heapq.heapify(frees)
    starts: dict[str, float] = {}
    for task_id, task in ordered:
        if task.ends_at is not None:
            continue
        start = task.submitted_at
        while len(frees) >= running:
            start = max(start, heapq.heappop(frees))
        starts[task_id] = start
        heapq.heappush(frees, start + task.seconds)
    return starts


class KeyQueue:
    """The key's tasks in flight in this process, and their predicted starts; thread-safe."""

    def __init__(self, running: int = KEY_RUNNING) -> None:
        self.running = running
        self._lock = threading.Lock()
        self._tasks: dict[str, InFlight] = {}
        #: The start each waiting task planned with, and how to tell it that start moved.
        self._planned: dict[str, tuple[float, Callable[[], None]]] = {}

    def enter(self, task_id: str, submitted_at: float, seconds: float) -> None:
        """Add a task whose wait began at its submission, expected to take ``seconds``."""
        with self._lock:
            self._tasks.setdefault(task_id, InFlight(submitted_at, seconds))
            replans = self._replans()
        _tell(replans)

    def moved(self, task_id: str, ends_at: float) -> None:
        """Note that a task was seen moving and should end at ``ends_at``."""
        with self._lock:
            if (task := self._tasks.get(task_id)) is not None:
                task.ends_at = ends_at
                self._planned.pop(task_id, None)
            replans = self._replans()
        _tell(replans)

    def finish(self, task_id: str, now: float, not_before: float) -> None:
        """Note that a task was seen finished at ``now``, and was not finished at ``not_before``.

        The slot it held freed then, and the tasks behind it started then, not when its end
        happened to be read: at the end its progress predicted, within those two times, or else
        as soon as it could have. Early rather than late: a task behind read too soon costs a
        read, one read too late costs time, and a duration expected too long (learned durations
        count from the submission, the service's queue included) is only unlearned by reads that
        come before the end.
        """
        with self._lock:
            if (task := self._tasks.get(task_id)) is None:
                return
            ends_at = not_before if task.ends_at is None else min(now, max(task.ends_at, not_before))
            task.ends_at, task.finished = ends_at, True
            self._planned.pop(task_id, None)
            self._prune()
            replans = self._replans()
        _tell(replans)

    def leave(self, task_id: str) -> None:
        """Drop a task whose wait ended without :meth:`finish` (failed, stalled, cancelled).

        A failed task leaves its slot now, as far as this process can tell.
        """
        with self._lock:
            if (task := self._tasks.get(task_id)) is None or task.finished:
                return
            del self._tasks[task_id]
            self._planned.pop(task_id, None)
            replans = self._replans()
        _tell(replans)

    def start_of(self, task_id: str, now: float, replan: Callable[[], None] | None = None) -> float | None:
        """Return the predicted start of a task not seen moving; None when it is not held here.

        ``replan`` (thread-safe, quick) is called once if a later change moves that start
        :data:`REPLAN_BY` seconds earlier or later; the wait then asks again.
        """
        with self._lock:
            self._forget(now)
            if task_id not in self._tasks:
                return None
            start = replay(self._tasks.items(), self.running).get(task_id)
            if start is not None and replan is not None:
                self._planned[task_id] = (start, replan)
            return start

    def _replans(self) -> list[Callable[[], None]]:
        """Forget and return the callbacks of the waits whose planned start moved."""
        if not self._planned:
            return []
        starts = replay(self._tasks.items(), self.running)
        told = [
            task_id
            for task_id, (planned, _) in self._planned.items()
            if abs(starts.get(task_id, planned) - planned) >= REPLAN_BY
        ]
        return [self._planned.pop(task_id)[1] for task_id in told]

    def _prune(self) -> None:
        """Drop finished tasks that ended before every waiting task's submission: they tell nothing."""
        waiting = [task.submitted_at for task in self._tasks.values() if not task.finished]
        first = min(waiting, default=float("inf"))
        for task_id in [
            t for t, task in self._tasks.items() if task.finished and (task.ends_at or 0.0) <= first
        ]:
            del self._tasks[task_id]

    def _forget(self, now: float) -> None:
        for task_id in [t for t, task in self._tasks.items() if now - task.submitted_at > FORGET_SECONDS]:
            del self._tasks[task_id]
            self._planned.pop(task_id, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._tasks)


def _tell(callbacks: list[Callable[[], None]]) -> None:
    """Call the waits' callbacks, outside the queue's lock (they may take their own)."""
    for callback in callbacks:
        callback()
