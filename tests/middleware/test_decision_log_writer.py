"""The one in-process writer: a lost connection, bad jobs, cancelled callers and writer, the WAL."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from enum import StrEnum
from pathlib import Path
from typing import Any, cast

import aiosqlite
import pytest

from middleware.decision_log import DecisionLog, LogUnavailable
from middleware.decision_log.writer import Writer
from middleware.decision_log.writes import Op
from tests.support.decision_log_support import make_decision


@pytest.fixture
async def log(tmp_path: Path) -> AsyncIterator[DecisionLog]:
    opened = await DecisionLog.open(tmp_path / "g.db")
    yield opened
    await opened.close()


def writer_of(log: DecisionLog) -> Writer:
    assert log._writer is not None
    return log._writer


def holding(loop: asyncio.AbstractEventLoop) -> tuple[Op, asyncio.Event, threading.Event]:
    """An op that holds its transaction open on the writer's thread until released."""
    inside, release = asyncio.Event(), threading.Event()

    async def held(_db: object, _chain: object) -> None:  # inside the group's transaction
        loop.call_soon_threadsafe(inside.set)
        release.wait(timeout=60)  # blocks the writer's thread, not the event loop

    return Op(held), inside, release


async def test_callers_share_one_transaction_and_hear_only_after_commit(
    log: DecisionLog,
) -> None:
    op, inside, release = holding(asyncio.get_running_loop())
    first = asyncio.create_task(writer_of(log).submit(op))
    second = asyncio.create_task(log.record(d := make_decision("grouped")))
    await inside.wait()
    # The decision was inserted in the same, still open, transaction: nobody has
    # been told it is committed, and a reader cannot see it yet.
    assert not second.done() and await log.get(d.id) is None
    release.set()
    await asyncio.gather(first, second)
    assert await log.get(d.id) is not None
    stats = writer_of(log).stats
    assert (stats.batches, stats.jobs, stats.connections) == (1, 2, 1)


async def test_a_transaction_is_one_hop_to_the_connection_thread(log: DecisionLog) -> None:
    """However many rows and tables, a group commit is one call on aiosqlite's thread."""
    db = writer_of(log)._db
    assert isinstance(db, aiosqlite.Connection)
    hops: list[str] = []
    execute = cast(Callable[..., Awaitable[Any]], db._execute)

    async def counted(fn: Any, *args: Any, **kwargs: Any) -> Any:
        hops.append(getattr(fn, "__name__", repr(fn)))
        return await execute(fn, *args, **kwargs)

    db._execute = counted  # type: ignore[method-assign]
    decisions = [make_decision(f"hop {i}") for i in range(5)]
    await asyncio.gather(*(log.record(d) for d in decisions))
    await log.record_delivery(decisions[0].id, "sent", None)
    assert len(hops) == 2, hops  # the five decisions in one transaction, the delivery in one
    assert (await log.verify()).ok


async def test_a_cancelled_caller_s_job_is_still_committed_whole(log: DecisionLog) -> None:
    op, inside, release = holding(asyncio.get_running_loop())
    holder = asyncio.create_task(writer_of(log).submit(op))
    cancelled = asyncio.create_task(log.record(d := make_decision("cancelled")))
    await inside.wait()
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    release.set()  # the transaction the cancelled caller was part of goes on to COMMIT
    await holder
    await log.record(after := make_decision("after"))
    assert await log.get(d.id) is not None and await log.get(after.id) is not None
    assert (await log.verify()).ok


@pytest.mark.parametrize("cancelled", ["writer", "transaction"])
async def test_cancelling_the_writer_mid_transaction_commits_it_whole_and_tells_its_callers(
    log: DecisionLog, cancelled: str
) -> None:
    """The writer task (its loop closing, say), or the task running the transaction
    through ``in_thread``, is cancelled while the transaction is open on aiosqlite's
    thread: the transaction still reaches COMMIT, in one piece, its callers are told
    instead of waiting forever, and the next job is served."""
    writer = writer_of(log)
    op, inside, release = holding(asyncio.get_running_loop())
    holder = asyncio.create_task(writer.submit(op))
    recorded = asyncio.create_task(log.record(d := make_decision("mid-commit")))
    await inside.wait()  # BEGIN, the decision's rows and the op: all in, no COMMIT yet
    task = writer._task if cancelled == "writer" else writer._inflight
    assert task is not None
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not recorded.done()  # the transaction is still open on the thread
    release.set()
    async with asyncio.timeout(30):  # without a settled future they would wait forever
        outcomes = await asyncio.gather(holder, recorded, return_exceptions=True)
    if cancelled == "writer":  # the transaction's own task heard its COMMIT
        assert outcomes == [None, None]
    else:  # nobody heard how it ended: the callers are told so, not that it failed
        assert all(isinstance(o, LogUnavailable) for o in outcomes), outcomes
        assert "`guardbot verify` shows whether it was committed" in str(outcomes[1])
    # The next job is served, on the same thread after the held transaction's end.
    await log.record(after := make_decision("after"))
    assert await log.get(after.id) is not None
    stored = await log.get(d.id)
    assert stored is not None and stored.verdicts == d.verdicts  # its rows came with it
    assert (writer._task is task) is False and writer._task is not None
    report = await log.verify()
    assert report.ok and report.checked == 2 and report.head_id == after.id
    assert writer.stats.batches == 2


async def test_jobs_queued_behind_a_cancelled_writer_fail_rather_than_wait(
    log: DecisionLog,
) -> None:
    writer = writer_of(log)
    op, inside, release = holding(asyncio.get_running_loop())
    holder = asyncio.create_task(writer.submit(op))
    await inside.wait()
    queued = asyncio.create_task(log.record(late := make_decision("queued")))
    await asyncio.sleep(0)  # submitted: queued behind the open transaction
    assert writer._queue
    assert writer._task is not None
    writer._task.cancel()
    with pytest.raises(LogUnavailable, match="stopped before this write began"):
        await queued
    release.set()
    await holder
    assert await log.get(late.id) is None
    assert (await log.verify()).ok


@pytest.mark.parametrize("name", ["_execute", "_conn"])
async def test_an_aiosqlite_without_the_thread_calls_is_refused_when_opening(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """A future aiosqlite (pyproject pins <0.23) may drop the private calls the writer
    uses: the log then refuses to open, naming the version, not fail at the first write."""
    monkeypatch.delattr(aiosqlite.Connection, name)
    writer = Writer(tmp_path / "g.db")
    with pytest.raises(
        LogUnavailable, match=rf"aiosqlite {aiosqlite.__version__} .*{name}.*<0\.23"
    ):
        await writer.open()
    assert writer._db is None and writer._task is None


async def test_a_step_that_waits_on_anything_but_the_database_is_refused(
    log: DecisionLog,
) -> None:
    async def waits(_db: object, _chain: object) -> None:
        await asyncio.sleep(0)  # would suspend on the writer's thread, away from the loop

    with pytest.raises(ValueError, match="waited on something other than the database"):
        await writer_of(log).submit(Op(waits))
    await log.record(d := make_decision("carries on"))
    assert await log.get(d.id) is not None


async def test_a_lost_connection_fails_what_was_in_flight_and_is_replaced(
    log: DecisionLog,
) -> None:
    await log.record(first := make_decision("first"))
    writer = writer_of(log)
    assert writer._db is not None
    await writer._db.close()  # the connection dies under the writer (its thread is gone)
    # Nothing in that transaction was committed: its caller is told, with why.
    with pytest.raises(LogUnavailable, match="lost its connection.*next write opens a new one"):
        await log.record(make_decision("in flight"))
    # The next write opens a new connection, and the chain carries on unbroken.
    await log.record(after := make_decision("after"))
    assert writer.stats.connections == 2
    report = await log.verify()
    assert report.ok and report.head_id == after.id and report.checked == 2
    assert await log.get(first.id) is not None


async def test_closing_the_log_commits_what_was_submitted_and_checkpoints(
    tmp_path: Path,
) -> None:
    log = await DecisionLog.open(tmp_path / "g.db")
    pending = [asyncio.create_task(log.record(make_decision(f"m{i}"))) for i in range(50)]
    await asyncio.sleep(0)  # all fifty are submitted before the close
    await log.close()
    assert all(t.done() and t.exception() is None for t in pending)
    with pytest.raises(LogUnavailable, match="closed"):
        await log.record(make_decision("too late"))
    # The writer's was the last connection: it checkpointed the WAL into the file.
    assert not await asyncio.to_thread(os.path.exists, f"{tmp_path / 'g.db'}-wal")
    reopened = await DecisionLog.open(tmp_path / "g.db", read_only=True)
    try:
        assert len(await reopened.query(limit=100)) == 50
        assert (await reopened.verify()).ok
    finally:
        await reopened.close()


class Status(StrEnum):
    SENT = "sent"


async def test_str_subclasses_are_stored_as_plain_values(log: DecisionLog) -> None:
    await log.record(d := make_decision("hello"))
    await log.record_delivery(d.id, Status.SENT, None)
    stored = await log.get_stored(d.id)
    assert stored is not None and [e.status for e in stored.deliveries] == ["sent"]


async def test_a_bad_job_fails_alone_and_the_writer_carries_on(log: DecisionLog) -> None:
    async def broken(_db: object, _chain: object) -> None:
        raise KeyError("no-such-column")

    early = log.record(a := make_decision("before the bad one"))
    bad = writer_of(log).submit(Op(broken))
    good = log.record(b := make_decision("fine"))
    results = await asyncio.gather(early, bad, good, return_exceptions=True)
    assert isinstance(results[1], ValueError) and "no-such-column" in str(results[1])
    assert results[0] is None and results[2] is None  # retried alone, committed
    assert await log.get(a.id) is not None and await log.get(b.id) is not None
    assert (await log.verify()).ok


async def test_search_words_with_punctuation_find_their_rows(log: DecisionLog) -> None:
    await log.record(a := make_decision("I can't reach the e-mail server"))
    await log.record(make_decision("nothing to see"))
    for query in ("can't", "e-mail", "e-ma*", "CAN'T server"):
        assert [d.id for d in await log.query(text=query)] == [a.id], query


async def test_the_wal_stays_bounded_under_steady_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each checkpoint lets the WAL start over, however steadily commits keep coming."""
    monkeypatch.setattr("middleware.decision_log.writer.CHECKPOINT_PAGES", 64)
    log = await DecisionLog.open(tmp_path / "g.db")
    try:

        async def conversation(n: int) -> None:
            for i in range(30):
                await log.record(make_decision(f"conversation {n} message {i} " + "x" * 200))

        async with asyncio.TaskGroup() as tg:
            for n in range(100):
                tg.create_task(conversation(n))
        wal = await asyncio.to_thread(os.path.getsize, f"{tmp_path / 'g.db'}-wal")
        # 3,000 decisions write about 30 MB of WAL frames; the file holds at most 64
        # pages plus one group commit (at most 100 decisions here).
        assert wal < 4 << 20, wal
        assert (await log.verify()).checked == 3000
    finally:
        await log.close()


async def test_history_is_read_on_the_loop_without_a_thread_hop(log: DecisionLog) -> None:
    """Generation waits for the history: on SQLite it is read at once, not behind a hop
    to the reader's thread, and sees what the writer committed just before."""
    await log.record(make_decision("q0", reply="a0", thread_id="T9"))
    read = log.history("slack", "C1", "T9", max_turns=4, max_chars=1000)
    try:
        with pytest.raises(StopIteration) as answered:
            read.send(None)  # a read that went to a thread would suspend here
    finally:
        read.close()
    assert [(t.role, t.content) for t in answered.value.value] == [
        ("user", "q0"), ("assistant", "a0"),
    ]  # fmt: skip


async def test_the_read_on_the_loop_never_waits_on_a_busy_file(log: DecisionLog) -> None:
    """A read that would wait for a lock (another process recovering the WAL) must fail
    at once and go to the reader's thread: waiting would stop the whole bot, and
    sqlite3's own default is to wait up to 5 s."""
    assert log._on_loop is not None
    assert log._on_loop.execute("PRAGMA busy_timeout").fetchone() == (0,)  # ms
