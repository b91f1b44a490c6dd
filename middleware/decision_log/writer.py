"""The one writer: every write to the log goes through this task, in group commits.

Callers enqueue a job and wait for its future; the writer takes everything
that queued up while the previous transaction ran and commits it as one
``BEGIN IMMEDIATE`` transaction with one ``executemany`` per table. Under load
many decisions share one commit; alone, a decision is committed at once (no
timer). The writer's connection lives on a thread of its own and a whole
group commit runs there as *one* call: aiosqlite would hand each statement
over separately (seven hand-offs per commit), and every hand-off waits for a
turn of a busy event loop (measured: p50 added latency 1.3 ms -> 0.7 ms).
Reads use aiosqlite on their own connection.

Because one task owns the connection, cancelling a caller never leaves a
half-done transaction. A batch that fails on one bad job is retried job by
job, so one caller's error never becomes another's; a storage failure (disk
full, read-only) fails the batch with :class:`LogUnavailable` and the next
batch tries again, so the log recovers as soon as the disk does.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from middleware.decision_log.chain import GENESIS, link
from middleware.decision_log.connection import connect_writer
from middleware.decision_log.encode import (
    INSERT_CANDIDATE,
    INSERT_DECISION,
    INSERT_LLM_CALL,
    INSERT_VERDICT,
    EncodedDecision,
)
from middleware.decision_log.errors import LogUnavailable

T = TypeVar("T")
MAX_BATCH = 1000  # bounds one transaction's size and the time readers of the WAL wait on

# The chain head and the last seq ever used (AUTOINCREMENT's counter, so a
# removed tail leaves a visible gap instead of being silently reused).
HEAD_SQL = """
SELECT
    coalesce(
        (SELECT sha256 FROM decisions ORDER BY seq DESC LIMIT 1),
        (SELECT through_sha256 FROM chain_checkpoints ORDER BY id DESC LIMIT 1),
        ?),
    coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'decisions'), 0)
"""
INSERT_FTS = "INSERT INTO decisions_fts (rowid, text, reply) VALUES (?, ?, ?)"
INSERT_DELIVERY = (
    "INSERT INTO deliveries (decision_id, created_utc, status, error) VALUES (?, ?, ?, ?)"
)

Write = Callable[[sqlite3.Connection], Any]  # runs on the writer thread, inside the transaction


@dataclass(slots=True)
class Job:
    future: asyncio.Future[Any] = field(init=False)

    def __post_init__(self) -> None:
        self.future = asyncio.get_running_loop().create_future()


@dataclass(slots=True)
class DecisionJob(Job):
    encoded: EncodedDecision


@dataclass(slots=True)
class DeliveryJob(Job):
    row: tuple[str, str, str, str | None]


@dataclass(slots=True)
class CallJob(Job):
    """Any other write (settings, admin actions, prune); returns the function's result."""

    fn: Write


@dataclass(slots=True)
class WriterStats:
    batches: int = 0
    jobs: int = 0
    decisions: int = 0
    max_batch: int = 0
    failed_batches: int = 0


def unavailable(path: Path, exc: BaseException) -> LogUnavailable:
    text = str(exc)
    low = text.lower()
    if "full" in low:
        why = "the disk or the log's size limit is full"
    elif "readonly" in low or "read-only" in low:
        why = "the database file or its directory is read-only"
    elif "locked" in low or "busy" in low:
        why = "another process has held the write lock too long"
    else:
        why = "a storage error"
    return LogUnavailable(f"cannot write the decision log {path}: {text} ({why})")


class Writer:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.stats = WriterStats()
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="decision-log-writer")
        self._conn: sqlite3.Connection | None = None
        self._queue: asyncio.Queue[Job | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    async def open(self, prepare: Callable[[sqlite3.Connection], object]) -> None:
        """Connect on the writer thread and run ``prepare`` (the migrations) there."""
        try:
            self._conn = await self._call(connect_writer, self.path)
            await self._call(prepare, self._conn)
        except BaseException:
            await self._shutdown()
            raise
        self._task = asyncio.create_task(self._run(), name="decision-log-writer")

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(connection)`` on the writer thread outside any transaction (pragmas).

        The thread runs one call at a time and a group commit is one call, so
        this lands between two commits, never inside one.
        """
        if self._conn is None or self._closing:
            raise LogUnavailable(f"the decision log {self.path} is closed")
        return await self._call(fn, self._conn)

    async def submit(self, job: Job) -> Any:
        if self._closing or self._task is None or self._task.done():
            raise LogUnavailable(f"the decision log {self.path} is closed")
        self._queue.put_nowait(job)
        return await job.future

    async def close(self) -> None:
        """Write what is queued, then close the connection and stop the thread."""
        if self._closing:
            return
        self._closing = True
        if self._task is not None:
            self._queue.put_nowait(None)
            await self._task
        await self._shutdown()

    async def _shutdown(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await self._call(conn.close)
        self._thread.shutdown(wait=False)

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, functools.partial(fn, *args))

    async def _run(self) -> None:
        batch: list[Job] = []
        try:
            stop = False
            while not stop:
                first = await self._queue.get()
                if first is None:
                    break
                batch = [first]
                while len(batch) < MAX_BATCH and not self._queue.empty():
                    nxt = self._queue.get_nowait()
                    if nxt is None:
                        stop = True
                        break
                    batch.append(nxt)
                await self._commit(batch)
                batch = []
        finally:
            # Only reached with jobs in hand if the task itself was cancelled (loop shutdown).
            gone = LogUnavailable(f"the decision log {self.path} writer stopped")
            for job in batch:
                _fail(job, gone)
            while not self._queue.empty():
                if (queued := self._queue.get_nowait()) is not None:
                    _fail(queued, gone)

    async def _commit(self, batch: list[Job]) -> None:
        assert self._conn is not None
        try:
            results = await self._call(_write, self._conn, batch)
        except sqlite3.IntegrityError as exc:
            if len(batch) > 1:
                for job in batch:  # find the bad one; the others still commit
                    await self._commit([job])
                return
            _fail(batch[0], ValueError(f"the decision log refused this write: {exc}"))
            return
        except sqlite3.Error as exc:
            self.stats.failed_batches += 1
            error = unavailable(self.path, exc)
            for job in batch:
                _fail(job, error)
            return
        except Exception as exc:  # a bad job (bug or invalid value): isolate it
            if len(batch) > 1:
                for job in batch:
                    await self._commit([job])
                return
            _fail(batch[0], exc)
            return
        self.stats.batches += 1
        self.stats.jobs += len(batch)
        self.stats.max_batch = max(self.stats.max_batch, len(batch))
        self.stats.decisions += sum(isinstance(j, DecisionJob) for j in batch)
        for job, result in zip(batch, results, strict=True):
            if not job.future.done():  # the caller may have been cancelled meanwhile
                job.future.set_result(result)


def _write(conn: sqlite3.Connection, batch: list[Job]) -> list[Any]:
    """One group commit, on the writer thread. Rolls back on any error."""
    decisions = [j.encoded for j in batch if isinstance(j, DecisionJob)]
    deliveries = [j.row for j in batch if isinstance(j, DeliveryJob)]
    conn.execute("BEGIN IMMEDIATE")
    try:
        if decisions:
            prev, seq = conn.execute(HEAD_SQL, (GENESIS,)).fetchone()
            chained, searchable = [], []
            for enc in decisions:
                seq += 1
                sha = link(prev, enc.content_sha256)
                chained.append((seq, *enc.row, prev, sha))
                searchable.append((seq, *enc.row[-2:]))  # (text, reply)
                prev = sha
            conn.executemany(INSERT_DECISION, chained)
            conn.executemany(INSERT_FTS, searchable)
            for sql, children in (
                (INSERT_VERDICT, [r for e in decisions for r in e.verdicts]),
                (INSERT_CANDIDATE, [r for e in decisions for r in e.candidates]),
                (INSERT_LLM_CALL, [r for e in decisions for r in e.llm_calls]),
            ):
                if children:
                    conn.executemany(sql, children)
        if deliveries:
            conn.executemany(INSERT_DELIVERY, deliveries)
        results = [j.fn(conn) if isinstance(j, CallJob) else None for j in batch]
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # SQLite may have rolled back already (e.g. disk full)
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise
    return results


def _fail(job: Job, exc: BaseException) -> None:
    if not job.future.done():
        job.future.set_exception(exc)
