"""`PostgresLog`: the decision log in PostgreSQL, one chain shared by every bot instance.

It is the SQLite :class:`~..store.DecisionLog` with other connections: the
same writer task with group commit (:class:`PgWriter`), the same shared SQL
(through :mod:`.connection`), the same rows, hashes and chain walk. What
only a shared database needs is added here:

- every write transaction takes the chain's advisory lock first, so the
  batches of several instances are appended one after another to one chain;
- a lost connection fails the jobs in flight with ``LogUnavailable`` (the bot
  refuses to reply, as when SQLite cannot be written) and the next write
  opens a new one, so the log recovers by itself when the server returns;
  a transaction cut off by the loss is rolled back whole by the server;
- a committed settings change is NOTIFY'd; each instance LISTENs and hands it
  to :meth:`on_settings_changed` callbacks (re-listening after a loss);
- (Slack event claims need nothing more: the claim's unique row, written by
  the shared :mod:`..claims` job, is what makes one instance answer.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg

from middleware.decision_log import integrity, writes
from middleware.decision_log.chain import ChainReport
from middleware.decision_log.migrations import pending
from middleware.decision_log.postgres import append, structure
from middleware.decision_log.postgres.connection import (
    DRIVER_ERRORS,
    LockStats,
    PoolReader,
    SqlConnection,
    shared,
)
from middleware.decision_log.postgres.schema import (
    PG_MIGRATIONS,
    SETTINGS_CHANNEL,
    applied,
    migrate,
)
from middleware.decision_log.postgres.url import PgTarget
from middleware.decision_log.privacy import TextPolicy
from middleware.decision_log.storage import LogUnavailable
from middleware.decision_log.store import DecisionLog
from middleware.decision_log.writer import Writer

log = logging.getLogger("guardbot.decision_log")

CONNECT_TIMEOUT_S = 5.0
RELISTEN_S = 0.5  # how soon a lost LISTEN connection is tried again
WRITER_NAME = "guardbot writer"  # application_name of each role's connections
LISTENER_NAME = "guardbot settings listener"
POOL_SIZE = 4


async def connect(target: PgTarget, role: str = "guardbot") -> asyncpg.Connection:
    """One connection, or LogUnavailable with the one line an operator needs.

    ``role`` becomes the connection's ``application_name``, so an operator (and
    a test) can tell the writer, the settings listener and a CLI apart in
    ``pg_stat_activity``.
    """
    try:
        return await asyncpg.connect(
            target.url, password=target.password, timeout=CONNECT_TIMEOUT_S,
            server_settings={"application_name": role},
        )  # fmt: skip
    except (*DRIVER_ERRORS, ValueError) as exc:
        raise LogUnavailable(f"cannot connect to the decision log {target}: {_why(exc)}") from None


def _why(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, ConnectionRefusedError | OSError) and not isinstance(exc, TimeoutError):
        return f"{text} (is the server running and reachable?)"
    if isinstance(exc, TimeoutError):
        return "no answer within 5 s (is the server reachable?)"
    return text


class PgWriter(Writer):
    """The SQLite writer's task and group commit, on a PostgreSQL connection."""

    def __init__(self, target: PgTarget) -> None:
        super().__init__(Path(str(target)))  # shown in error messages, never opened
        self.target = target
        self.lock_stats = LockStats()
        self._sql: SqlConnection | None = None

    async def open(self) -> None:
        await self._connect()
        self._start()

    async def _connect(self) -> None:
        conn = await connect(self.target, WRITER_NAME)
        self._sql = SqlConnection(conn, self.lock_stats)
        self._db = shared(self._sql)
        self.stats.connections += 1

    async def _write(self, jobs: list[writes.Job]) -> list[Any]:
        """A group of decisions and deliveries in one statement (:mod:`.append`);
        any other group as on SQLite, through the shared SQL."""
        if self._sql is not None and (group := append.prepare(jobs)) is not None:
            return await append.commit(self._sql, group)
        return await super()._write(jobs)

    async def _results(self, jobs: list[writes.Job]) -> list[Any]:
        if self._db is not None and self._sql is not None and self._sql.conn.is_closed():
            # The server ended the connection while it sat idle (a restart, an
            # operator's pg_terminate_backend): nothing was in flight, so no job
            # needs to fail for it; the writer opens a new one first.
            await self._drop()
        return await super()._results(jobs)


class PostgresLog(DecisionLog):
    """The decision log on PostgreSQL; the promises are :class:`DecisionStore`'s."""

    def __init__(
        self,
        target: PgTarget,
        pool: asyncpg.Pool,
        writer: PgWriter | None,
        policy: TextPolicy,
    ) -> None:
        super().__init__(Path(str(target)), shared(PoolReader(pool)), writer, policy)
        self.target = target
        self._pool = pool
        self._pg_writer = writer
        self._listeners: list[Callable[[], Awaitable[None]]] = []
        self._listen_task: asyncio.Task[None] | None = None
        self._closed = asyncio.Event()

    @classmethod
    async def open_url(
        cls,
        target: PgTarget,
        *,
        store_text: bool = True,
        redact_pii: bool = False,
        read_only: bool = False,
    ) -> PostgresLog:
        """Connect, migrate (unless read-only) and start the writer."""
        conn = await connect(target)
        try:
            if read_only:
                await _check_schema(conn, target)
            else:
                await migrate(conn)
        except (*DRIVER_ERRORS, RuntimeError) as exc:
            raise LogUnavailable(f"cannot prepare the decision log {target}: {exc}") from None
        finally:
            await conn.close()
        try:
            pool = await asyncpg.create_pool(
                target.url, password=target.password, min_size=1, max_size=POOL_SIZE,
                timeout=CONNECT_TIMEOUT_S, reset=_session_unchanged,
            )  # fmt: skip
        except DRIVER_ERRORS as exc:
            raise LogUnavailable(f"cannot connect to the decision log {target}: {exc}") from None
        writer = None
        if not read_only:
            writer = PgWriter(target)
            try:
                await writer.open()
            except BaseException:
                await pool.close()
                raise
        policy = TextPolicy(store_text=store_text, redact_pii=redact_pii)
        return cls(target, pool, writer, policy)

    @property
    def lock_stats(self) -> LockStats:
        return self._pg_writer.lock_stats if self._pg_writer else LockStats()

    async def close(self) -> None:
        self._closed.set()
        if self._listen_task is not None:
            self._listen_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listen_task
        try:
            if self._writer is not None:
                await self._writer.close()
        finally:
            await self._pool.close()

    # -- what a shared database adds ----------------------------------------------

    def on_settings_changed(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Call ``callback`` whenever any instance commits a settings change, and each
        time the listener (re)starts listening, since changes may have been missed."""
        self._listeners.append(callback)
        if self._listen_task is None:
            self._listen_task = asyncio.create_task(self._listen(), name="settings-listener")

    async def _listen(self) -> None:
        """LISTEN on a connection of its own; after a loss, connect again until it works."""
        down = False
        while not self._closed.is_set():
            try:
                conn = await connect(self.target, LISTENER_NAME)
            except LogUnavailable as exc:
                if not down:  # once per outage, not every RELISTEN_S
                    log.warning("settings listener: %s; retrying every %s s", exc, RELISTEN_S)
                down = True
                await asyncio.sleep(RELISTEN_S)
                continue
            if down:
                log.warning("settings listener: connected again to %s", self.target)
            down, began = False, time.monotonic()
            try:
                await self._listen_on(conn)
            except DRIVER_ERRORS as exc:
                log.warning("settings listener lost its connection: %s; reconnecting", exc)
            finally:
                conn.terminate()
            if time.monotonic() - began < RELISTEN_S:  # lost at once: do not spin
                await asyncio.sleep(RELISTEN_S)

    async def _listen_on(self, conn: asyncpg.Connection) -> None:
        """Hand each notification to the callbacks until the connection is lost.

        The callbacks also run once as soon as LISTEN is in place: a change
        committed before it (while the bot started, or while no connection
        listened) sent its NOTIFY to nobody.
        """
        lost, changed = asyncio.Event(), asyncio.Event()
        conn.add_termination_listener(lambda _c: lost.set())
        await conn.add_listener(SETTINGS_CHANNEL, lambda *_: changed.set())
        changed.set()
        while not lost.is_set():
            waiters = {asyncio.ensure_future(e.wait()) for e in (changed, lost)}
            _, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            for waiter in pending:
                waiter.cancel()
            if changed.is_set():
                changed.clear()
                await self._notify()

    async def _notify(self) -> None:
        """Run every callback; one that fails is logged and the listener keeps listening
        (an exception let through would end the listener task: no reload ever again)."""
        for callback in self._listeners:
            try:
                await callback()
            except LogUnavailable as exc:
                log.warning("could not reload runtime settings: %s", exc)
            except Exception:
                log.exception("could not reload runtime settings; trying again on the next change")

    # -- what differs from the SQLite file ----------------------------------------

    async def verify(self) -> ChainReport:
        """Walk the chain in one REPEATABLE READ snapshot of a connection of its own."""
        conn = SqlConnection(await connect(self.target))
        try:
            checks = (structure.schema_problem, structure.search_index_problem)
            try:
                return await integrity.verify(shared(conn), checks)
            except sqlite3.OperationalError:  # a table or column gone: say which, as SQLite does
                found = await structure.schema_problem(shared(conn))  # after the rollback
                if found is None:
                    raise
                return found
        except DRIVER_ERRORS as exc:
            raise LogUnavailable(f"cannot verify {self.target}: {exc}") from None
        finally:
            await conn.close()

    async def integrity_check(self) -> str:
        """PostgreSQL keeps its own pages consistent; say whether the tables are reachable."""
        conn = await connect(self.target)
        try:
            await _check_schema(conn, self.target)
            return "ok"
        finally:
            await conn.close()


async def _session_unchanged(conn: asyncpg.Connection) -> None:
    """The reader pool's reset: nothing to undo. Its connections only run single reads
    (:class:`PoolReader`): no SET, LISTEN, cursor or advisory lock. asyncpg's default
    sends four statements on every release (``pg_advisory_unlock_all(); CLOSE ALL;
    UNLISTEN *; RESET ALL``), which cost more than a history read itself (about 50 us
    of the server's CPU and 50-100 us of the instance's, per read); asyncpg still rolls
    back a transaction left open before it calls this."""


async def _check_schema(conn: asyncpg.Connection, target: PgTarget) -> None:
    try:
        todo = pending(PG_MIGRATIONS, await applied(conn))
    except RuntimeError as exc:
        raise LogUnavailable(f"cannot read the decision log {target}: {exc}") from None
    if todo:
        raise LogUnavailable(
            f"{target} is not a guardbot decision log at the current schema "
            f"({len(todo)} migration(s) missing); start the bot once with this url to migrate"
        )
