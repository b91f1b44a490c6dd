"""The writer process: one per open log, replaced when it dies, gone when the log closes."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from enum import StrEnum
from pathlib import Path

import pytest

from middleware.decision_log import DecisionLog, LogUnavailable
from middleware.decision_log.writer import Writer
from tests.support.decision_log_support import make_decision, wait_for_exit


@pytest.fixture
async def log(tmp_path: Path) -> AsyncIterator[DecisionLog]:
    opened = await DecisionLog.open(tmp_path / "g.db")
    yield opened
    await opened.close()


def writer_of(log: DecisionLog) -> Writer:
    assert log._writer is not None
    return log._writer


async def test_writes_happen_in_a_process_of_its_own(log: DecisionLog) -> None:
    pid = writer_of(log).pid
    assert pid is not None and pid != os.getpid()
    await log.record(d := make_decision("hello"))
    assert await log.get(d.id) is not None
    os.kill(pid, 0)  # it runs (raises if not)


async def test_a_killed_writer_fails_what_was_in_flight_and_is_replaced(log: DecisionLog) -> None:
    await log.record(first := make_decision("first"))
    old = writer_of(log).pid
    assert old is not None
    os.kill(old, signal.SIGKILL)
    # Whatever was sent to the dead writer was never acknowledged: the caller is told.
    with pytest.raises(LogUnavailable, match="stopped .*killed by signal 9"):
        async with asyncio.timeout(10):
            while True:  # until the bot has noticed the writer is gone
                await log.record(make_decision("in flight"))
    # The next write starts a new writer, and the chain carries on unbroken.
    await log.record(after := make_decision("after"))
    assert writer_of(log).pid not in (None, old)
    assert writer_of(log).stats.processes == 2
    report = await log.verify()
    assert report.ok and report.head_id == after.id
    assert await log.get(first.id) is not None


async def test_sigterm_to_the_writer_does_not_cut_the_bot_short(log: DecisionLog) -> None:
    """A service manager signals every process; the writer ends only with its bot."""
    pid = writer_of(log).pid
    assert pid is not None
    os.kill(pid, signal.SIGTERM)
    os.kill(pid, signal.SIGINT)
    await log.record(d := make_decision("still here"))
    assert writer_of(log).pid == pid and writer_of(log).stats.processes == 1
    assert await log.get(d.id) is not None


async def test_closing_the_log_ends_the_writer_after_its_last_commit(tmp_path: Path) -> None:
    log = await DecisionLog.open(tmp_path / "g.db")
    pid = writer_of(log).pid
    assert pid is not None
    pending = [asyncio.create_task(log.record(make_decision(f"m{i}"))) for i in range(50)]
    await asyncio.sleep(0)  # all fifty are submitted before the close
    await log.close()
    assert all(t.done() and t.exception() is None for t in pending)
    wait_for_exit(pid, timeout_s=5)  # close() waited for it: already gone
    # The writer was the last connection: it checkpointed the WAL into the file.
    assert not await asyncio.to_thread(os.path.exists, f"{tmp_path / 'g.db'}-wal")
    reopened = await DecisionLog.open(tmp_path / "g.db", read_only=True)
    try:
        assert len(await reopened.query(limit=100)) == 50
        assert (await reopened.verify()).ok
    finally:
        await reopened.close()


class Status(StrEnum):
    SENT = "sent"


async def test_str_subclasses_are_sent_as_plain_values(log: DecisionLog) -> None:
    """marshal refuses a StrEnum member; such a job is sent as plain copies instead."""
    await log.record(d := make_decision("hello"))
    await log.record_delivery(d.id, Status.SENT, None)  # type: ignore[arg-type]
    stored = await log.get_stored(d.id)
    assert stored is not None and [e.status for e in stored.deliveries] == ["sent"]


async def test_a_bad_job_fails_alone_and_the_writer_carries_on(log: DecisionLog) -> None:
    bad = writer_of(log).submit(("op", "no-such-operation", ()))
    good = log.record(d := make_decision("fine"))
    results = await asyncio.gather(bad, good, return_exceptions=True)
    assert isinstance(results[0], ValueError) and "no-such-operation" in str(results[0])
    assert results[1] is None and await log.get(d.id) is not None


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
