"""The slots a platform's messages wait for: order, hand-over, cancellation, shutdown.

Proven with events and the order of entries, never with timing: a task is
"waiting" once :attr:`Slots.waiting` counts it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from adapters.slots import NotAdmitted, Slots


async def until(condition: Callable[[], bool]) -> None:
    """Let the other tasks run until ``condition`` holds (no clock involved)."""
    for _ in range(100):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


class Holder:
    """A task that takes a slot, notes it, and keeps it until released."""

    def __init__(self, slots: Slots, name: str, entered: list[str]) -> None:
        self.leave = asyncio.Event()
        self.task = asyncio.create_task(self._run(slots, name, entered))

    async def _run(self, slots: Slots, name: str, entered: list[str]) -> None:
        async with slots.held():
            entered.append(name)
            await self.leave.wait()


async def test_slots_are_handed_over_in_arrival_order() -> None:
    slots, entered = Slots(1), list[str]()
    a, b, c = (Holder(slots, name, entered) for name in "abc")
    await until(lambda: entered == ["a"] and slots.waiting == 2)
    a.leave.set()
    await until(lambda: entered == ["a", "b"])
    b.leave.set()
    await until(lambda: entered == ["a", "b", "c"])
    c.leave.set()
    await asyncio.gather(a.task, b.task, c.task)


async def test_a_cancelled_waiter_does_not_cost_a_slot() -> None:
    slots, entered = Slots(1), list[str]()
    a, b, c = (Holder(slots, name, entered) for name in "abc")
    await until(lambda: slots.waiting == 2)
    b.task.cancel()
    await asyncio.wait({b.task})
    a.leave.set()
    await until(lambda: entered == ["a", "c"])  # b's place went to c
    c.leave.set()
    await asyncio.gather(a.task, c.task)


async def test_a_slot_handed_to_a_waiter_cancelled_at_that_moment_passes_on() -> None:
    slots, entered = Slots(1), list[str]()
    a, b, c = (Holder(slots, name, entered) for name in "abc")
    await until(lambda: slots.waiting == 2)
    a.leave.set()
    await until(lambda: a.task.done())  # the slot is handed to b, which has not woken yet
    b.task.cancel()  # b is cancelled before it runs: the slot must reach c
    await asyncio.wait({b.task})
    await until(lambda: entered == ["a", "c"])
    c.leave.set()
    await c.task


async def test_close_turns_away_every_waiter_and_later_arrival_but_not_the_holders() -> None:
    slots, entered = Slots(1), list[str]()
    a, b = Holder(slots, "a", entered), Holder(slots, "b", entered)
    await until(lambda: slots.waiting == 1)
    slots.close()
    with pytest.raises(NotAdmitted):
        await b.task
    with pytest.raises(NotAdmitted):
        async with slots.held():
            pass
    assert not a.task.done()  # the message in flight finishes as usual
    a.leave.set()
    await a.task
    assert entered == ["a"]
