"""First come, first served admission to the synchronous part of a request (core/admission.py,
issue 19): a burst of chat sends is answered in arrival order instead of all at the end."""

from __future__ import annotations

import asyncio

import pytest

from studyplatform.core.admission import Admission


class Recorder:
    """Async work items that record when they start and wait until released."""

    def __init__(self) -> None:
        self.started: list[int] = []
        self.gates: dict[int, asyncio.Event] = {}

    async def work(self, number: int) -> int:
        self.started.append(number)
        gate = self.gates.setdefault(number, asyncio.Event())
        await gate.wait()
        return number

    def release(self, number: int) -> None:
        self.gates.setdefault(number, asyncio.Event()).set()


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_at_most_limit_run_at_once_and_the_rest_start_in_arrival_order():
    async def scenario():
        admission = Admission(limit=2, budget_s=60)
        rec = Recorder()
        tasks = [asyncio.create_task(admission.run(rec.work, n)) for n in range(5)]
        await settle()
        assert rec.started == [0, 1]
        rec.release(1)
        await settle()
        assert rec.started == [0, 1, 2]
        rec.release(0)
        rec.release(2)
        await settle()
        assert rec.started == [0, 1, 2, 3, 4]
        rec.release(3)
        rec.release(4)
        return await asyncio.gather(*tasks)

    assert asyncio.run(scenario()) == [0, 1, 2, 3, 4]


def test_a_request_over_its_budget_gives_its_place_to_the_next():
    async def scenario():
        admission = Admission(limit=1, budget_s=0.05)
        rec = Recorder()
        slow = asyncio.create_task(admission.run(rec.work, 0))
        waiting = asyncio.create_task(admission.run(rec.work, 1))
        await settle()
        assert rec.started == [0]
        # the first holds on past the budget: the second starts without waiting for it
        await asyncio.sleep(0.15)
        assert rec.started == [0, 1]
        rec.release(1)
        assert await waiting == 1
        # the slow one finishing later does not free a second place: still one at a time
        rec.release(0)
        await slow
        third = asyncio.create_task(admission.run(rec.work, 2))
        fourth = asyncio.create_task(admission.run(rec.work, 3))
        await settle()
        assert rec.started == [0, 1, 2]
        rec.release(2)
        rec.release(3)
        await asyncio.gather(third, fourth)
        assert rec.started == [0, 1, 2, 3]

    asyncio.run(scenario())


def test_a_failing_request_hands_its_place_on():
    async def fails(_n):
        raise ValueError("the view failed")

    async def scenario():
        admission = Admission(limit=1, budget_s=60)
        rec = Recorder()
        first = asyncio.create_task(admission.run(fails, 0))
        second = asyncio.create_task(admission.run(rec.work, 1))
        with pytest.raises(ValueError):
            await first
        await settle()
        assert rec.started == [1]
        rec.release(1)
        assert await second == 1

    asyncio.run(scenario())


def test_a_request_cancelled_while_waiting_leaves_the_queue():
    async def scenario():
        admission = Admission(limit=1, budget_s=60)
        rec = Recorder()
        first = asyncio.create_task(admission.run(rec.work, 0))
        gone = asyncio.create_task(admission.run(rec.work, 1))
        last = asyncio.create_task(admission.run(rec.work, 2))
        await settle()
        gone.cancel()  # the client went away before its turn
        await settle()
        rec.release(0)
        await first
        await settle()
        # the place passed over the cancelled request to the next one
        assert rec.started == [0, 2]
        rec.release(2)
        await last
        # and every place is free again: two new requests run one after the other
        assert gone.cancelled()
        again = asyncio.create_task(admission.run(rec.work, 3))
        await settle()
        assert rec.started == [0, 2, 3]
        rec.release(3)
        await again

    asyncio.run(scenario())


def test_a_request_cancelled_while_running_frees_its_place():
    async def scenario():
        admission = Admission(limit=1, budget_s=60)
        rec = Recorder()
        running = asyncio.create_task(admission.run(rec.work, 0))
        await settle()
        running.cancel()
        await settle()
        after = asyncio.create_task(admission.run(rec.work, 1))
        await settle()
        assert rec.started == [0, 1]
        rec.release(1)
        await after

    asyncio.run(scenario())


def test_each_event_loop_has_its_own_places():
    admission = Admission(limit=1, budget_s=60)

    async def one(n):
        rec = Recorder()
        task = asyncio.create_task(admission.run(rec.work, n))
        await settle()
        assert rec.started == [n]
        rec.release(n)
        return await task

    # a loop that ended with nothing left running does not hold places for the next
    assert asyncio.run(one(1)) == 1
    assert asyncio.run(one(2)) == 2


def test_a_limit_below_one_is_refused_at_start():
    with pytest.raises(ValueError, match="REQUEST_ADMISSION_LIMIT"):
        Admission(limit=0, budget_s=0.05)
