"""``max_paid_tasks_per_run``: a DAG param that caps the paid LotImage tasks one DAG run may start.

A batch whose prompts or buttons multiply (five paid tasks per prompt, a list that grew) should stop
at what its author meant to spend, not at the end of the list. Every :class:`ImagineOperator` and
:class:`ButtonOperator` of a DAG whose run has the param set asks for a place before each paid call
and fails, final and before any call, once the run has none left.

**Why a ledger of claims.** The count must hold across mapped task instances running at once on
several workers, and across their retries, through what the Task SDK offers a task: it has no
atomic counter (XComs, Variables and the task state store are read and written, never
compared-and-set) and an Airflow pool bounds how many tasks run *at once*, not how many a run
starts. So each task instance keeps a *claim*, the number of paid tasks it has started, in an XCom
of its own (key ``lotimage_paid_tasks``; XComs belong to the run and are readable by every task of
it), and the decision is "write, then read": a task instance publishes its claim as *pending*
first, then reads every claim of the run, and goes ahead only if all of them together, its own
included, fit the budget.

Of two task instances deciding at once, the one that wrote last reads after both writes and sees
the other's pending claim, so they cannot both slip past: one that does not fit withdraws, waits a
random moment and tries again; once the claims already settled fill the budget, the task fails at
once with :class:`~..exceptions.PaidTaskBudgetError`.

**Retries count once.** The claim is also kept in the task instance's own record (the task state
store; a Variable below Airflow 3.3, see :mod:`.task_state`), because Airflow deletes a task
instance's XComs when a new try starts; the try publishes it again first thing. A retry that
reconnects to its paid task pays nothing and claims nothing more; a retry that submits afresh (its
task failed at LotImage) claims one more, since it pays again. A paid call that certainly created no
task (refused: 400, 401, 403, 429...) gives its place back; an ambiguous one keeps it.

**The guarantee.** A run starts at most ``max_paid_tasks_per_run`` paid tasks, with these bounds:

* a task instance starting a new try has no published claim until it publishes it again (a few
  milliseconds after its start). Deciding task instances therefore also read which task instances
  are running and wait while one has no claim yet; the run may still exceed the budget by the claim
  of a task instance that ends a try *and* starts its next one between the first and the last read
  of another's decision (a few milliseconds), which Airflow's scheduling makes practically
  impossible but nothing rules out;
* a task instance whose record was deleted (below Airflow 3.3 when the task succeeds; on 3.3 with
  ``[state_store] clear_on_success``) and which is then cleared counts only what it pays after the
  clear;
* errors only ever over-count: a try killed after its claim and before LotImage answered keeps its
  place although it may have paid nothing.

Only the DAG's LotImage operators take part (their claims are read per task, one call each); set
the param on the DAG so that every one of them counts.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeGuard

from airflow_provider_lotimage.exceptions import (
    LotImageInputError,
    PaidTaskBudgetBusyError,
    PaidTaskBudgetError,
)
from airflow_provider_lotimage.keys import BUDGET_PARAM, PAID_TASKS_KEY

if TYPE_CHECKING:
    from airflow.sdk import Context

#: Task instance states in which a try is under way (its claim may be between deletion and
#: publication).
RUNNING_STATES = frozenset({"running", "restarting"})

TaskKey = tuple[str, int]


def parse_budget(value: Any) -> int | None:
    """Return the budget ``value`` stands for: a whole number of at least 0, or ``None`` (no budget).

    :param value: the param's value (an int, or the digits of one when it came through a conf).
    :raises LotImageInputError: anything else, before any call.
    """
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise LotImageInputError(
        f"{BUDGET_PARAM} must be a whole number of at least 0 (or null: no budget), got {value!r}"
    )


def describe(key: TaskKey) -> str:
    """``imagine[3]`` for a mapped task instance, ``imagine`` for one that is not mapped."""
    task_id, map_index = key
    return task_id if map_index < 0 else f"{task_id}[{map_index}]"


@dataclass(frozen=True)
class Claim:
    """The paid tasks one task instance has started in the run (``pending``: deciding on one more)."""

    task_id: str
    map_index: int
    paid: int
    pending: bool = False

    @property
    def key(self) -> TaskKey:
        """The task instance the claim belongs to."""
        return self.task_id, self.map_index

    @property
    def settled(self) -> int:
        """Paid tasks certainly counted: a pending claim's last one may still be withdrawn."""
        return self.paid - 1 if self.pending else self.paid

    def to_json(self) -> dict[str, Any]:
        """Return the claim as it is stored in XCom."""
        return {
            "task_id": self.task_id,
            "map_index": self.map_index,
            "paid": self.paid,
            "pending": self.pending,
        }

    @classmethod
    def from_json(cls, value: Any) -> Claim | None:
        """Read a stored claim; ``None`` for anything that is not one."""
        if not isinstance(value, dict):
            return None
        task_id, map_index, paid = value.get("task_id"), value.get("map_index"), value.get("paid")
        if not isinstance(task_id, str) or not _whole(map_index, minimum=-1) or not _whole(paid):
            return None
        return cls(task_id, map_index, paid, value.get("pending") is True)


def _whole(value: Any, *, minimum: int = 0) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


class Ledger(Protocol):
    """Where one task instance reads and writes the run's claims."""

    #: The task instance deciding.
    me: TaskKey

    def held(self) -> int:
        """Return the paid tasks this task instance's own record says it started."""

    def hold(self, paid: int) -> None:
        """Write this task instance's own record (kept across its tries)."""

    def publish(self, claim: Claim) -> None:
        """Publish this task instance's claim to the run (readable by every task instance)."""

    def claims(self) -> list[Claim]:
        """Return every published claim of the run's LotImage task instances."""

    def running(self) -> set[TaskKey]:
        """Return the run's LotImage task instances that are running now."""


@dataclass(frozen=True)
class _View:
    """What one decision saw of the other task instances."""

    settled: int
    deciding: dict[TaskKey, Claim]
    starting: set[TaskKey]
    holders: dict[TaskKey, int]


class PaidTaskBudget:
    """The budget of one DAG run, as seen by one task instance through its :class:`Ledger`.

    :param limit: the most paid tasks the run may start.
    :param ledger: the run's claims.
    :param attempts: how many times to decide before giving up while others keep deciding.
    :param sleep: how to wait between attempts (tests replace it).
    :param rng: the randomness of those waits.
    """

    def __init__(
        self,
        limit: int,
        ledger: Ledger,
        *,
        attempts: int = 10,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.limit = limit
        self.ledger = ledger
        self.attempts = attempts
        self._sleep = sleep
        self._rng = rng or random.Random()

    @property
    def me(self) -> TaskKey:
        """The task instance deciding."""
        return self.ledger.me

    def _claim(self, paid: int, *, pending: bool = False) -> Claim:
        return Claim(self.me[0], self.me[1], paid, pending)

    def republish(self) -> None:
        """Publish this task instance's claim again; first thing in every try.

        Airflow deletes a task instance's XComs when a try starts, and the paid tasks of its earlier
        tries must stay counted.
        """
        self.ledger.publish(self._claim(self.ledger.held()))

    def admit(self) -> None:
        """Take a place for one more paid task, or raise.

        :raises PaidTaskBudgetError: the run's settled claims leave no place (final).
        :raises PaidTaskBudgetBusyError: other task instances kept deciding on the last places.
        """
        held = self.ledger.held()
        want = held + 1
        view = None
        for attempt in range(self.attempts):
            self.ledger.hold(want)
            self.ledger.publish(self._claim(want, pending=True))
            view = self._look()
            if not view.starting and view.settled + len(view.deciding) + want <= self.limit:
                self.ledger.publish(self._claim(want))
                return
            self.ledger.publish(self._claim(held))
            self.ledger.hold(held)
            if view.settled + want > self.limit:
                raise PaidTaskBudgetError(self._spent(view, held))
            self._sleep(min(3.0, 0.25 * 2**attempt) * self._rng.uniform(0.5, 1.5))
        assert view is not None
        raise PaidTaskBudgetBusyError(self._busy(view))

    def release(self) -> None:
        """Give back the place of a paid call that certainly created no task (it was refused)."""
        held = max(0, self.ledger.held() - 1)
        self.ledger.publish(self._claim(held))
        self.ledger.hold(held)

    def _look(self) -> _View:
        """Read the claims, the running task instances, then the claims again.

        A task instance missing from both reads of claims and not running in between has neither
        a claim being re-published nor a try under way, unless it ended one try and started the
        next between the two reads (the bound in the module docstring).
        """
        first = {claim.key: claim for claim in self.ledger.claims()}
        running = self.ledger.running()
        second = {claim.key: claim for claim in self.ledger.claims()}
        settled = 0
        deciding: dict[TaskKey, Claim] = {}
        holders: dict[TaskKey, int] = {}
        for key in (first.keys() | second.keys()) - {self.me}:
            # The later read is the truth (a claim shrinks when withdrawn); the earlier one stands
            # in for a claim deleted in between by the start of a new try.
            claim = second.get(key) or first[key]
            if claim.pending and key in running:
                deciding[key] = claim
                count = claim.settled
            else:  # settled, or a try that ended while deciding: its place may have been used
                count = claim.paid
            settled += count
            if count:
                holders[key] = count
        starting = running - first.keys() - second.keys() - {self.me}
        return _View(settled, deciding, starting, holders)

    def _spent(self, view: _View, held: int) -> str:
        holders = dict(view.holders)
        if held:
            holders[self.me] = held
        return (
            f"{BUDGET_PARAM}={self.limit}: this DAG run has already started {view.settled + held} paid "
            f"LotImage task(s) ({_list(holders)}), so {describe(self.me)} was not submitted and nothing "
            f"was paid for it. To pay for more, raise the run's {BUDGET_PARAM} (the DAG's param, or "
            "the conf of a new run)."
        )

    def _busy(self, view: _View) -> str:
        others = [describe(key) for key in sorted(view.deciding)] + [
            f"{describe(key)} (starting)" for key in sorted(view.starting)
        ]
        return (
            f"{BUDGET_PARAM}={self.limit}: {view.settled} paid LotImage task(s) started and other task "
            f"instances kept deciding on the last places ({', '.join(others) or 'none left'}) "
            f"through {self.attempts} attempts, so {describe(self.me)} was not submitted and nothing "
            "was paid for it; a retry decides again."
        )


def _list(holders: dict[TaskKey, int], most: int = 10) -> str:
    names = [describe(key) + (f" x{count}" if count > 1 else "") for key, count in sorted(holders.items())]
    if len(names) > most:
        names = [*names[:most], f"and {len(names) - most} more"]
    return ", ".join(names) or "none"


class RunLedger:
    """The claims of one DAG run, through the Task SDK.

    Claims are XComs of the task instances themselves (key :data:`PAID_TASKS_KEY`): they go with the
    run, any task of the run can read them, and a write is committed before the call returns, which
    the write-then-read decision relies on. Each task instance's own record is kept where
    :func:`~.task_state.task_state` keeps it (the task state store, or a Variable below 3.3).

    :param context: the deciding task instance's context.
    :param task_ids: the DAG's LotImage tasks, whose claims count.
    """

    def __init__(self, context: Context, task_ids: Sequence[str]) -> None:
        from airflow_provider_lotimage.utils.task_state import task_state

        ti = context["ti"]
        self._ti = ti
        self._store = task_state(context)
        self._task_ids = tuple(task_ids)
        map_index = ti.map_index
        self.me: TaskKey = (ti.task_id, -1 if map_index is None else int(map_index))

    def held(self) -> int:
        """Return the paid tasks this task instance's record holds (0 without a record)."""
        record = self._store.get(PAID_TASKS_KEY) if self._store is not None else None
        paid = record.get("paid") if isinstance(record, dict) else None
        return paid if _whole(paid) else 0

    def hold(self, paid: int) -> None:
        """Write this task instance's record."""
        if self._store is not None:
            self._store.set(PAID_TASKS_KEY, {"paid": paid})

    def publish(self, claim: Claim) -> None:
        """Push the claim as this task instance's XCom."""
        self._ti.xcom_push(key=PAID_TASKS_KEY, value=claim.to_json())

    def claims(self) -> list[Claim]:
        """Read the claims of every map index of every LotImage task of the run (one call per task)."""
        from airflow.providers.common.compat.sdk import XCom

        found: list[Claim] = []
        for task_id in self._task_ids:
            values = XCom.get_all(
                key=PAID_TASKS_KEY, dag_id=self._ti.dag_id, task_id=task_id, run_id=self._ti.run_id
            )
            found.extend(claim for value in values or () if (claim := Claim.from_json(value)) is not None)
        return found

    def running(self) -> set[TaskKey]:
        """Return the LotImage task instances of the run whose try is under way."""
        states = self._ti.get_task_states(
            dag_id=self._ti.dag_id, task_ids=list(self._task_ids), run_ids=[self._ti.run_id]
        )
        return running_keys((states or {}).get(self._ti.run_id, {}), self._task_ids)


def running_keys(states: dict[str, Any], task_ids: Iterable[str]) -> set[TaskKey]:
    """Turn the Task SDK's ``{"task" | "task_<map index>": state}`` into running task instances.

    A name that could be both an unmapped task and a map index of another counts as both: a
    running task instance too many only makes a decision wait.
    """
    task_ids = tuple(task_ids)
    running: set[TaskKey] = set()
    for name, state in states.items():
        if str(state) not in RUNNING_STATES:
            continue
        for task_id in task_ids:
            if name == task_id:
                running.add((task_id, -1))
            elif name.startswith(task_id + "_") and name[len(task_id) + 1 :].isdigit():
                running.add((task_id, int(name[len(task_id) + 1 :])))
    return running


def paid_task_ids(dag: Any, operator_class: type) -> list[str]:
    """Return the tasks of ``dag`` that are ``operator_class`` (mapped or not): the ones that pay."""
    found = []
    for task_id, task in dag.task_dict.items():
        cls = getattr(task, "operator_class", None) or type(task)
        if isinstance(cls, type) and issubclass(cls, operator_class):
            found.append(task_id)
    return sorted(found)
