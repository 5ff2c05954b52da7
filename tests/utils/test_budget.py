"""The paid-task budget's decision (``airflow_provider_lotimage.utils.budget``), against an in-memory run.

The run's XComs, task states and each task instance's own record are a :class:`FakeRun` shared by
several :class:`FakeLedger` s, one per task instance, so the tests can interleave decisions step by
step, or run many at once in threads, and count what was admitted.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import pytest

from airflow_provider_lotimage.exceptions import (
    LotImageInputError,
    PaidTaskBudgetBusyError,
    PaidTaskBudgetError,
)
from airflow_provider_lotimage.utils.budget import (
    Claim,
    PaidTaskBudget,
    describe,
    parse_budget,
    running_keys,
)

TaskKey = tuple[str, int]


class FakeRun:
    """One DAG run: published claims (XComs), running task instances, and their own records."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.xcoms: dict[TaskKey, dict[str, Any]] = {}
        self.records: dict[TaskKey, int] = {}
        self.running: set[TaskKey] = set()
        self.calls: list[tuple[TaskKey, str]] = []

    def start_try(self, key: TaskKey) -> None:
        """A new try: Airflow marks the task instance running and deletes its XComs."""
        with self.lock:
            self.running.add(key)
            self.xcoms.pop(key, None)

    def end_try(self, key: TaskKey) -> None:
        with self.lock:
            self.running.discard(key)

    def admitted(self) -> int:
        return sum(self.records.values())


class FakeLedger:
    """The ledger of one task instance; ``before`` runs before each step (to interleave)."""

    def __init__(self, run: FakeRun, key: TaskKey, before: Any = None) -> None:
        self.run = run
        self.me = key
        self.before = before

    def _step(self, name: str) -> None:
        self.run.calls.append((self.me, name))
        if self.before is not None:
            self.before(self.me, name)

    def held(self) -> int:
        self._step("held")
        with self.run.lock:
            return self.run.records.get(self.me, 0)

    def hold(self, paid: int) -> None:
        self._step("hold")
        with self.run.lock:
            self.run.records[self.me] = paid

    def publish(self, claim: Claim) -> None:
        self._step("publish")
        assert claim.key == self.me
        with self.run.lock:
            self.run.xcoms[self.me] = claim.to_json()

    def claims(self) -> list[Claim]:
        self._step("claims")
        with self.run.lock:
            values = list(self.run.xcoms.values())
        return [claim for value in values if (claim := Claim.from_json(value)) is not None]

    def running(self) -> set[TaskKey]:
        self._step("running")
        with self.run.lock:
            return set(self.run.running)


def budget(run: FakeRun, key: TaskKey, limit: int, **kwargs: Any) -> PaidTaskBudget:
    kwargs.setdefault("sleep", lambda seconds: None)
    before = kwargs.pop("before", None)
    return PaidTaskBudget(limit, FakeLedger(run, key, before), **kwargs)


def try_paying(run: FakeRun, key: TaskKey, limit: int, **kwargs: Any) -> bool:
    """One try of a task instance that pays once: start, publish again, decide, end."""
    run.start_try(key)
    try:
        guard = budget(run, key, limit, **kwargs)
        guard.republish()
        guard.admit()
        return True
    except PaidTaskBudgetError:
        return False
    finally:
        run.end_try(key)


# -- the value ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"), [(None, None), ("", None), (0, 0), (5, 5), ("12", 12), (" 3 ", 3)]
)
def test_budget_values(value: Any, expected: int | None) -> None:
    assert parse_budget(value) == expected


@pytest.mark.parametrize("value", [-1, 2.5, True, "five", "-3", [4], {"n": 4}])
def test_bad_budget_values_are_refused_before_any_call(value: Any) -> None:
    with pytest.raises(LotImageInputError, match="max_paid_tasks_per_run must be a whole number"):
        parse_budget(value)


def test_claims_read_back_and_garbage_is_ignored() -> None:
    claim = Claim("upscale", 7, 2, pending=True)
    assert Claim.from_json(claim.to_json()) == claim
    assert claim.settled == 1 and Claim("imagine", -1, 3).settled == 3
    for garbage in (None, "x", {"task_id": 1, "map_index": 0, "paid": 1}, {"task_id": "t", "paid": -1}):
        assert Claim.from_json(garbage) is None
    assert describe(("imagine", -1)) == "imagine" and describe(("imagine", 3)) == "imagine[3]"


def test_running_keys_from_the_task_sdk_states() -> None:
    states = {"imagine_0": "running", "imagine_1": "success", "upscale_12": "restarting", "solo": "running"}
    assert running_keys(states, ["imagine", "upscale", "solo"]) == {
        ("imagine", 0),
        ("upscale", 12),
        ("solo", -1),
    }
    # "imagine_2" may be an unmapped task of its own or imagine[2]: both count (one wait too many).
    assert running_keys({"imagine_2": "running"}, ["imagine", "imagine_2"]) == {
        ("imagine", 2),
        ("imagine_2", -1),
    }


# -- one at a time ------------------------------------------------------------------------------


def test_admits_up_to_the_limit_then_refuses_with_who_paid() -> None:
    run = FakeRun()
    paid = [try_paying(run, ("imagine", i), limit=3) for i in range(5)]
    assert paid == [True, True, True, False, False]
    assert run.admitted() == 3
    guard = budget(run, ("upscale", 0), 3)
    with pytest.raises(PaidTaskBudgetError) as refused:
        guard.admit()
    assert not isinstance(refused.value, PaidTaskBudgetBusyError) and refused.value.final
    message = str(refused.value)
    assert "max_paid_tasks_per_run=3" in message and "already started 3 paid LotImage task(s)" in message
    assert "imagine[0], imagine[1], imagine[2]" in message and "upscale[0] was not submitted" in message
    assert run.records[("upscale", 0)] == 0, "a refused task instance holds nothing"


def test_zero_admits_nothing() -> None:
    assert not try_paying(FakeRun(), ("imagine", -1), limit=0)


def test_a_retry_that_reconnects_counts_once_after_its_xcom_was_deleted() -> None:
    run = FakeRun()
    assert try_paying(run, ("imagine", 0), limit=2)
    run.start_try(("imagine", 0))  # the retry: Airflow deleted the claim
    assert ("imagine", 0) not in run.xcoms
    budget(run, ("imagine", 0), 2).republish()  # it reconnects: no admission
    assert Claim.from_json(run.xcoms[("imagine", 0)]) == Claim("imagine", 0, 1)
    run.end_try(("imagine", 0))
    assert try_paying(run, ("imagine", 1), limit=2)
    assert not try_paying(run, ("imagine", 2), limit=2)
    assert run.admitted() == 2


def test_a_retry_that_submits_afresh_counts_again() -> None:
    run = FakeRun()
    assert try_paying(run, ("imagine", 0), limit=2)
    assert try_paying(run, ("imagine", 0), limit=2)  # its task failed at LotImage: it pays again
    assert run.records[("imagine", 0)] == 2
    assert not try_paying(run, ("imagine", 1), limit=2)
    assert "imagine[0] x2" in _refusal(run, ("imagine", 2), 2)


def test_a_refused_paid_call_gives_its_place_back() -> None:
    run = FakeRun()
    guard = budget(run, ("imagine", 0), 1)
    guard.admit()
    guard.release()  # LotImage refused the call: no task was created
    assert run.records[("imagine", 0)] == 0
    assert try_paying(run, ("imagine", 1), limit=1)


def test_a_pending_claim_of_a_try_that_died_counts_as_paid() -> None:
    run = FakeRun()
    with run.lock:  # imagine[0] published its pending claim, then its worker died
        run.xcoms[("imagine", 0)] = Claim("imagine", 0, 1, pending=True).to_json()
    assert not try_paying(run, ("imagine", 1), limit=1)
    assert "imagine[0]" in _refusal(run, ("imagine", 2), 1)


def _refusal(run: FakeRun, key: TaskKey, limit: int) -> str:
    with pytest.raises(PaidTaskBudgetError) as refused:
        budget(run, key, limit).admit()
    return str(refused.value)


# -- interleaved --------------------------------------------------------------------------------


def test_two_deciding_at_once_for_the_last_place_do_not_both_get_it() -> None:
    """Both publish a pending claim before either reads: one sees the other deciding and waits."""
    run = FakeRun()
    a, b = ("imagine", 0), ("imagine", 1)
    both_pending = threading.Barrier(2)
    first_round: set[TaskKey] = set()

    def before(key: TaskKey, step: str) -> None:
        if step == "claims" and key not in first_round:
            first_round.add(key)
            both_pending.wait(timeout=5)

    results: dict[TaskKey, bool] = {}
    rng = {a: random.Random(1), b: random.Random(2)}

    def pay(key: TaskKey) -> None:
        results[key] = try_paying(run, key, limit=1, before=before, sleep=time.sleep, rng=rng[key])

    threads = [threading.Thread(target=pay, args=(key,)) for key in (a, b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(results.values()) == [False, True]
    assert run.admitted() == 1
    holds = [key for key, step in run.calls if step == "hold"]
    assert max(holds.count(a), holds.count(b)) >= 2, "the one that saw the other deciding withdrew"


def test_a_task_instance_starting_a_try_is_waited_for() -> None:
    """imagine[0] holds the only place; its retry's claim is deleted when another decides."""
    run = FakeRun()
    assert try_paying(run, ("imagine", 0), limit=1)
    run.start_try(("imagine", 0))  # running, claim deleted, not yet published again
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 2:  # the retry publishes its claim again meanwhile
            budget(run, ("imagine", 0), 1).republish()

    message = _refusal_with(run, ("imagine", 1), 1, sleep=sleep)
    assert len(waits) == 2, "it waited while imagine[0] had no claim, then saw it"
    assert "imagine[0]" in message
    assert run.admitted() == 1


def _refusal_with(run: FakeRun, key: TaskKey, limit: int, **kwargs: Any) -> str:
    run.start_try(key)
    with pytest.raises(PaidTaskBudgetError) as refused:
        budget(run, key, limit, **kwargs).admit()
    return str(refused.value)


def test_gives_up_while_others_keep_deciding_and_says_so() -> None:
    run = FakeRun()
    with run.lock:  # a running task instance stuck deciding on the last place
        run.xcoms[("imagine", 0)] = Claim("imagine", 0, 1, pending=True).to_json()
        run.running.add(("imagine", 0))
    run.start_try(("imagine", 1))
    with pytest.raises(PaidTaskBudgetBusyError) as busy:
        budget(run, ("imagine", 1), 1, attempts=3).admit()
    assert not busy.value.final, "a retry may find the place free"
    assert "imagine[0]" in str(busy.value) and "through 3 attempts" in str(busy.value)
    assert run.records[("imagine", 1)] == 0


@pytest.mark.parametrize("seed", range(5))
def test_many_at_once_never_pass_the_limit_and_fill_it(seed: int) -> None:
    """24 task instances on 8 threads, random pauses between every step: exactly the limit pays."""
    run = FakeRun()
    chaos = random.Random(seed)
    chaos_lock = threading.Lock()

    def before(key: TaskKey, step: str) -> None:
        with chaos_lock:
            pause = chaos.random() * 0.002
        time.sleep(pause)

    keys = [("imagine", i) for i in range(8)] + [("upscale", i) for i in range(16)]
    results: dict[TaskKey, bool] = {}
    pending = list(keys)
    pending_lock = threading.Lock()

    def worker(n: int) -> None:
        rng = random.Random(seed * 100 + n)
        while True:
            with pending_lock:
                if not pending:
                    return
                key = pending.pop()
            results[key] = try_paying(
                run, key, limit=6, before=before, sleep=lambda s: time.sleep(s / 50), rng=rng
            )

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == len(keys)
    assert sum(results.values()) == 6 == run.admitted()
