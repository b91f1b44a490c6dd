"""How many messages a platform runs through the pipeline at once, and what shutdown
does to those still waiting for their turn.

Slack and Discord cap the pipelines running at once (``max_in_flight``); a
message beyond the cap waits, in arrival order, for a slot. ``stop()`` lets the
messages in flight finish, but a message still waiting must not start a
pipeline then, and must not vanish either: every message received leaves a
decision. :meth:`Slots.close` therefore wakes every waiter with
:class:`NotAdmitted`, and the adapter records that message as not answered
(:data:`NOT_ANSWERED`, through ``MessageHandler.record_cut_off``) before
``stop()`` returns and the log is closed.

An :class:`asyncio.Semaphore` cannot be closed, so this is a small one of its
own: a count of free slots and a queue of futures, handed over one at a time.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

NOT_ANSWERED = "not answered: shutting down (it was waiting for a free slot)"


class NotAdmitted(Exception):  # noqa: N818 - an outcome, like asyncio.CancelledError
    """The service began stopping before a slot was free: the message was not answered."""


class Slots:
    """At most ``limit`` holders at once; the rest wait in order until :meth:`close`."""

    def __init__(self, limit: int) -> None:
        self._free = limit
        self._waiters: deque[asyncio.Future[bool]] = deque()  # result: True = admitted
        self.closed = False

    @property
    def waiting(self) -> int:
        return sum(not w.done() for w in self._waiters)

    @asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        """Hold a slot for the body; raises :class:`NotAdmitted` if closed first."""
        await self._acquire()
        try:
            yield
        finally:
            self._release()

    def close(self) -> None:
        """Admit no one else: every waiter, now and later, gets :class:`NotAdmitted`."""
        self.closed = True
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(False)

    async def _acquire(self) -> None:
        if self.closed:
            raise NotAdmitted
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            admitted = await waiter
        except asyncio.CancelledError:
            # Handed a slot just as the task was cancelled: pass it on, never leak it.
            if waiter.done() and not waiter.cancelled() and waiter.result():
                self._release()
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            raise
        if not admitted:
            raise NotAdmitted

    def _release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(True)  # the slot passes straight to the next in line
                return
        self._free += 1
