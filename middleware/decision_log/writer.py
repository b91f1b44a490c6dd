"""The one writer: an aiosqlite connection, a task that group-commits, and how files open.

Every write goes through :class:`Writer`. ``submit`` queues a job and waits;
the writer task takes everything queued (up to :data:`MAX_BATCH`) and commits
it as one transaction (:func:`.writes.commit`), so jobs submitted while a
transaction runs share the next one: group commit without a timer, and alone
a job is committed at once. A caller hears about its job only after COMMIT.
The whole transaction is one call on aiosqlite's thread (:mod:`.one_hop`),
not one per statement, so it is also indivisible: nothing else runs on the
connection between its BEGIN and its COMMIT.

Failures: a storage error (disk full, read-only file, lock held too long)
fails every job of the transaction with :class:`LogUnavailable`, and the next
transaction simply tries again, so the log recovers as soon as the storage
does. A bad job (a constraint, an invalid value) is retried alone so that only
it fails, with ``ValueError``. If the connection itself is lost, the jobs in
flight fail with :class:`LogUnavailable` and the next write opens a new one.
Cancelling a caller never disturbs the writer: its job is committed or fails
on its own. Cancelling the writer task itself (its loop closing) does not cut
a transaction short either: the transaction runs to COMMIT or ROLLBACK on
aiosqlite's thread, and its callers hear that outcome when it comes (or
:class:`LogUnavailable` if the loop ends first); jobs not yet begun fail with
:class:`LogUnavailable`, and the next ``submit`` starts a new task.

Files: created 0600 before SQLite touches them (SQLite gives ``-wal`` and
``-shm`` the same mode). ``synchronous = NORMAL`` in WAL mode keeps every
committed transaction through a process crash (SIGKILL, OOM kill); only a
power loss or OS crash can drop the last commits, never corrupt the file.
The WAL is checkpointed after a commit once it holds :data:`CHECKPOINT_PAGES`
pages instead of SQLite's 1,000: a page written many times is copied into
the file once, and a checkpoint not held up by a reader lets the WAL start
over, so it stays about that size. Readers open ``file:...?mode=ro`` so an
audit command cannot change the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote

import aiosqlite

from middleware.decision_log import writes
from middleware.decision_log.migrations import migrate
from middleware.decision_log.one_hop import in_thread, require_thread_calls
from middleware.decision_log.records import EncodedDecision
from middleware.decision_log.storage import LogUnavailable
from middleware.private_file import is_regular, open_private

BUSY_S = 5.0  # another process (a CLI prune, a second bot) may hold the lock briefly
MAX_BATCH = 1000  # bounds one transaction's size and the time readers of the WAL wait on
CHECKPOINT_PAGES = 10_000  # WAL pages (4 KiB) that make the writer checkpoint after a commit

# Binding None makes the sqlite3 module look for an adapter on a type object,
# which formats and discards an AttributeError every time; many stored values
# are NULL. A registered adapter is found first; `{}.get` answers None.
sqlite3.register_adapter(type(None), cast(Callable[[None], None], {}.get))


@dataclass(slots=True)
class WriterStats:
    batches: int = 0  # transactions committed (or tried)
    jobs: int = 0
    decisions: int = 0
    max_batch: int = 0
    failed_batches: int = 0
    connections: int = 0  # writer connections opened (more than one: one was lost)


class Writer:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.stats = WriterStats()
        self._db: aiosqlite.Connection | None = None
        self._queue: list[tuple[writes.Job, asyncio.Future[Any]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._inflight: asyncio.Future[list[Any]] | None = None  # the transaction running
        self._closing = False

    async def open(self) -> None:
        """Create (0600), migrate and connect; raises LogUnavailable if the file cannot be."""
        await asyncio.to_thread(prepare, self.path)
        await self._connect()
        self._start()

    async def submit(self, job: writes.Job) -> Any:
        """Queue one job (see :mod:`.writes`); its result once committed."""
        if self._closing:
            raise LogUnavailable(f"the decision log {self.path} is closed")
        if self._task is None or self._task.done():
            self._start()  # cancelled with the loop it ran on: a new one on this loop
        future = asyncio.get_running_loop().create_future()
        self._queue.append((job, future))
        self._wake.set()
        return await future

    async def close(self) -> None:
        """Commit what was submitted, then close the connection (it checkpoints the WAL)."""
        if self._closing:
            return
        self._closing = True
        self._wake.set()
        if self._task is not None and not self._task.done():  # done: cancelled, queue failed
            await self._task
        if self._inflight is not None:  # a transaction a cancelled task left running
            await asyncio.wait([self._inflight])
        if self._db is not None:
            await self._db.close()
            self._db = None

    # -- the writer task --------------------------------------------------------------

    def _start(self) -> None:
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="decision-log-writer")

    async def _run(self) -> None:
        try:
            while True:
                if not self._queue:
                    if self._closing:
                        return
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                await self._commit(batch)
        except asyncio.CancelledError:
            # Nothing of these was begun: their callers must not wait for a task that is gone.
            waiting, self._queue = self._queue, []
            stopped = LogUnavailable(
                f"the decision log {self.path} writer was stopped before this write began; "
                "nothing of it was written"
            )
            _settle(waiting, [stopped] * len(waiting))
            raise

    async def _commit(self, batch: list[tuple[writes.Job, asyncio.Future[Any]]]) -> None:
        """Commit ``batch`` and settle its callers, whatever happens to this task.

        The transaction is a task of its own, shielded: cancelling the writer
        task cannot cut it short (on SQLite it runs on aiosqlite's thread to
        COMMIT or ROLLBACK anyway), and the callback settles every caller with
        its real outcome when it ends, however this task ends meanwhile.
        """
        self.stats.batches += 1
        self.stats.jobs += len(batch)
        self.stats.max_batch = max(self.stats.max_batch, len(batch))
        self._inflight = outcome = asyncio.create_task(
            self._transaction(batch), name="decision-log-transaction"
        )
        outcome.add_done_callback(functools.partial(self._settle_batch, batch))
        try:
            await asyncio.shield(outcome)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if outcome.cancelled() and task is not None and not task.cancelling():
                return  # only the transaction's task was cancelled: settled; the writer goes on
            raise

    def _settle_batch(
        self,
        batch: list[tuple[writes.Job, asyncio.Future[Any]]],
        outcome: asyncio.Future[list[Any]],
    ) -> None:
        """The callers of a transaction that did not end normally (see :meth:`_transaction`)."""
        if outcome.cancelled():  # the loop closed before the transaction's end was heard
            error = LogUnavailable(
                f"the decision log {self.path} writer stopped before its transaction ended; "
                "`guardbot verify` shows whether it was committed"
            )
            self._answer(batch, [error] * len(batch))
        elif (exc := outcome.exception()) is not None:  # a bug here must not strand callers
            failed = LogUnavailable(f"the decision log writer failed: {exc!r}")
            self._answer(batch, [failed] * len(batch))

    async def _transaction(self, batch: list[tuple[writes.Job, asyncio.Future[Any]]]) -> list[Any]:
        """The batch's results, its callers settled as soon as the transaction ends (a reply
        waits on this); settling in the done callback would cost them one more turn of the loop."""
        results = await self._results([job for job, _ in batch])
        self._answer(batch, results)
        return results

    def _answer(
        self, batch: list[tuple[writes.Job, asyncio.Future[Any]]], results: list[Any]
    ) -> None:
        if any(isinstance(r, LogUnavailable) for r in results):
            self.stats.failed_batches += 1
        else:
            self.stats.decisions += sum(isinstance(j, EncodedDecision) for j, _ in batch)
        _settle(batch, results)

    async def _results(self, jobs: list[writes.Job]) -> list[Any]:
        """One result per job: its value, or the exception its caller gets."""
        if self._db is None:  # lost with an earlier batch: a new connection
            try:
                await self._connect()
            except LogUnavailable as exc:
                return [exc] * len(jobs)
        assert self._db is not None
        try:
            return await self._write(jobs)
        except sqlite3.IntegrityError as exc:
            why = f"the decision log refused this write: {exc}"
        except Exception as exc:  # a bad job (a bug or an invalid value), or the storage
            if isinstance(exc, sqlite3.Error | ValueError) and not await _alive(self._db):
                await self._drop()  # aiosqlite: "Connection closed"
                lost = f"the decision log {self.path} lost its connection ({exc}); "
                return [LogUnavailable(lost + "the next write opens a new one")] * len(jobs)
            if isinstance(exc, sqlite3.Error):
                return [LogUnavailable(writes.storage_error(str(self.path), exc))] * len(jobs)
            why = f"{type(exc).__name__}: {exc}"
        if len(jobs) > 1:  # retried alone, so that only the bad job fails
            return [(await self._results([job]))[0] for job in jobs]
        return [ValueError(why)]

    async def _write(self, jobs: list[writes.Job]) -> list[Any]:
        """:func:`.writes.commit` of ``jobs``: on SQLite in one hop to aiosqlite's thread,
        however many statements it makes (see :func:`.one_hop.in_thread`)."""
        db = self._db
        assert db is not None
        if isinstance(db, aiosqlite.Connection):
            return await in_thread(db, jobs)
        return await writes.commit(db, jobs)  # another backend's connection with aiosqlite's calls

    async def _connect(self) -> None:
        require_thread_calls()
        self._db = await connect(self.path, read_only=False)
        self.stats.connections += 1

    async def _drop(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            with contextlib.suppress(sqlite3.Error, ValueError):  # already gone
                await db.close()


async def _alive(db: aiosqlite.Connection) -> bool:
    try:
        await db.execute_fetchall("SELECT 1")
    except (sqlite3.Error, ValueError):
        return False
    return True


def _settle(batch: list[tuple[writes.Job, asyncio.Future[Any]]], results: list[Any]) -> None:
    for (_, future), result in zip(batch, results, strict=True):
        if future.done():  # the caller was cancelled meanwhile
            continue
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)


# -- opening files ---------------------------------------------------------------------


def create_private(path: Path, *, tighten: bool = True) -> None:
    """Create the file readable by the owner only; its folder must exist already.

    ``tighten=False`` leaves an existing file's mode as it is (see :func:`prepare`).

    A missing folder is most likely a typo in ``[log] path`` or ``--db``:
    creating it would hide the mistake and start a second, empty log.
    """
    folder = path.parent
    if not folder.is_dir():
        raise LogUnavailable(
            f"cannot create the decision log {path}: the folder {folder} does not exist "
            "(create it first, or correct [log] path / --db)"
        )
    fd = open_private(path, os.O_RDWR, tighten=tighten)
    try:
        if not is_regular(fd):  # /dev/null, a FIFO: SQLite cannot keep a log there
            raise LogUnavailable(f"cannot use {path} as the decision log: it is not a file")
    finally:
        os.close(fd)


def target(path: Path, *, read_only: bool, tighten: bool = True) -> str:
    """What to hand SQLite: a read-only URI, or the path of a file made private first."""
    if read_only:
        if not path.is_file():
            raise LogUnavailable(f"no decision log at {path} (run `guardbot chat` to create one)")
        return f"file:{quote(str(path.resolve()))}?mode=ro"
    try:
        create_private(path, tighten=tighten)
    except OSError as exc:  # permissions, a folder in the way, a read-only disk
        raise LogUnavailable(f"cannot create the decision log {path}: {exc.strerror}") from None
    return str(path)


def prepare(path: Path) -> None:
    """Create the file (0600), switch it to WAL and apply pending migrations (blocking).

    An existing file is made owner-only only once it is known to be ours (empty, or
    with guardbot's ``_migrations``): another application's database, or a file that
    is no database, is refused with its mode and bytes as they were. It is tightened
    before the switch to WAL, which creates ``-wal`` and ``-shm`` with its mode.
    """
    try:
        where = target(path, read_only=False, tighten=False)
        db = sqlite3.connect(where, isolation_level=None, timeout=BUSY_S)
    except sqlite3.Error as exc:
        raise LogUnavailable(f"cannot open the decision log {path}: {exc}") from None
    try:
        _refuse_foreign(db, path)
        target(path, read_only=False)  # ours: now made owner-only
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()
        if mode is None or str(mode[0]).lower() != "wal":
            raise LogUnavailable(f"{path}: cannot switch the decision log to WAL mode")
        migrate(db)
    except (sqlite3.Error, RuntimeError) as exc:
        why = str(exc)
        if "not a database" in why:
            why += ": the file is not a SQLite database, or is damaged"
        raise LogUnavailable(f"cannot prepare the decision log {path}: {why}") from None
    finally:
        db.close()


def _refuse_foreign(db: sqlite3.Connection, path: Path) -> None:
    """Refuse another application's database (tables, none of them guardbot's
    ``_migrations``, which the first migration creates before any other table):
    guardbot would switch it to WAL and add its own twenty tables to it."""
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if tables and "_migrations" not in tables:
        raise LogUnavailable(
            f"cannot use {path} as the decision log: it is a SQLite database of something "
            "else (it has tables, none of them guardbot's); point [log] path at a new file"
        )


async def connect(path: Path, *, read_only: bool) -> aiosqlite.Connection:
    """The writer's connection (autocommit, WAL, NORMAL sync) or a read-only one."""
    where = target(path, read_only=read_only)
    try:
        db = await aiosqlite.connect(where, uri=read_only, isolation_level=None, timeout=BUSY_S)
    except sqlite3.Error as exc:
        raise LogUnavailable(f"cannot open the decision log {path}: {exc}") from None
    try:
        if not read_only:
            await db.execute("PRAGMA foreign_keys = ON")
            await db.execute("PRAGMA synchronous = NORMAL")
            await db.execute(f"PRAGMA wal_autocheckpoint = {CHECKPOINT_PAGES}")
    except sqlite3.Error as exc:
        await db.close()
        raise LogUnavailable(f"cannot use the decision log {path}: {exc}") from None
    return db


def connect_on_loop(path: Path) -> sqlite3.Connection | None:
    """A read-only sqlite3 connection for small reads made on the event loop itself.

    Its busy timeout is 0: a read that would wait (another process recovering
    the WAL) fails at once and the caller falls back to the threaded reader.
    None when it cannot be opened; the threaded reader serves alone then.
    """
    try:
        # timeout=0: sqlite3's default would hold the event loop up to 5 s on a busy file.
        return sqlite3.connect(
            target(path, read_only=True), uri=True, isolation_level=None, timeout=0
        )
    except (sqlite3.Error, LogUnavailable):
        return None
