"""A whole transaction in one hop to aiosqlite's thread: the writer's :func:`in_thread`.

aiosqlite sends each statement to its thread and waits for the answer, so a
transaction of nine statements was nine round trips; here a step of
:mod:`.writes` runs on that thread with direct sqlite3 calls, start to end.
It relies on aiosqlite's private ``Connection._execute`` and ``_conn``
(:data:`THREAD_CALLS`), which is why pyproject pins aiosqlite below 0.23 and
the writer checks for them when it connects.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, cast

import aiosqlite

from middleware.decision_log.storage import LogUnavailable
from middleware.decision_log.writes import Job, commit


class _Direct:
    """The calls of :mod:`.writes` made directly on sqlite3, in aiosqlite's thread.

    Every call completes at once, so the coroutine of a whole step never
    suspends and :func:`in_thread` runs it to the end in one hop (nine round
    trips a transaction cost, on one core, as much CPU as the rest of a
    message). The steps stay async because PostgreSQL awaits the same ones on
    its own connection. It is a :class:`.writes.Tx`: ``execute`` returns no
    cursor, and a step typed on ``Tx`` cannot use one.
    """

    __slots__ = ("conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    @property
    def in_transaction(self) -> bool:
        return self.conn.in_transaction

    async def execute(self, sql: str, params: Any = ()) -> None:
        self.conn.execute(sql, params)

    async def executemany(self, sql: str, rows: Iterable[Any]) -> None:
        self.conn.executemany(sql, rows)

    async def execute_fetchall(self, sql: str, params: Any = ()) -> list[Any]:
        return self.conn.execute(sql, params).fetchall()


# aiosqlite has no public call for "run this on your thread": in_thread uses the
# private ones its own methods use, the same from 0.20 to 0.22 (pyproject pins <0.23).
THREAD_CALLS = ("_execute", "_conn")


def require_thread_calls() -> None:
    """Refuse, when the writer connects, an aiosqlite without the calls :func:`in_thread`
    uses (rather than fail every write after the bot started)."""
    missing = [name for name in THREAD_CALLS if not hasattr(aiosqlite.Connection, name)]
    if missing:
        raise LogUnavailable(
            f"aiosqlite {aiosqlite.__version__} has no Connection.{' or .'.join(missing)}, "
            "which the decision log's writer runs its transactions with; "
            "install aiosqlite>=0.20,<0.23"
        )


async def in_thread(db: aiosqlite.Connection, jobs: Sequence[Job]) -> list[Any]:
    """:func:`.writes.commit` on aiosqlite's thread with direct sqlite3 calls: one hop for all.

    ``_execute`` is what each of aiosqlite's own methods uses (:data:`THREAD_CALLS`).
    Cancelling the caller (the writer task) does not stop the transaction: like any
    aiosqlite call, it runs to its end (COMMIT or ROLLBACK) on the thread.
    """

    def run() -> list[Any]:
        coroutine = commit(_Direct(db._conn), jobs)
        try:
            coroutine.send(None)
        except StopIteration as done:
            return cast(list[Any], done.value)
        coroutine.close()
        raise RuntimeError("a write waited on something other than the database")

    execute = cast(Callable[[Callable[[], list[Any]]], Awaitable[list[Any]]], db._execute)
    return await execute(run)
