"""A full disk or a read-only database: no unaudited reply, a clear error, recovery after.

The disk is filled with SQLite's own ``max_page_count`` on the writer's
connection (the file cannot grow: SQLITE_FULL, exactly what a full disk
gives) and made read-only with ``query_only``; both are lifted again to show
the log recovers without a restart. Root ignores file permissions, so a
chmod would prove nothing here.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.app import AUDIT_DOWN_REPLY, GuardBot
from bot.config.schema import parse_config
from middleware.decision_log import DecisionLog, DecisionStore, LogUnavailable
from middleware.types import Action, ChatRequest
from tests.support.decision_log_support import make_decision


async def on_writer(log: DecisionStore, pragma: str) -> None:
    """Run a PRAGMA on the writer's own connection: between two transactions, since
    each transaction is one call on that connection's thread."""
    assert isinstance(log, DecisionLog) and log._writer is not None
    assert log._writer._db is not None
    await log._writer._db.execute(f"PRAGMA {pragma}")


async def fill_disk(log: DecisionStore) -> None:
    """Cap the file at its current size, then write until it is full."""
    await on_writer(log, "max_page_count = 1")  # answers the current size: no shrinking
    # Groups of big rows first (quick), then single ever smaller rows into the last gaps.
    for size, group in ((2000, 20), (2000, 1), (200, 1), (0, 1)):
        for _ in range(2000 // group):
            fillers = [make_decision("filler " + "x" * size) for _ in range(group)]
            results = await asyncio.gather(*map(log.record, fillers), return_exceptions=True)
            if any(isinstance(r, LogUnavailable) for r in results):
                break
        else:
            raise AssertionError("the capped database never filled up")


async def free_disk(log: DecisionStore) -> None:
    await on_writer(log, "max_page_count = 1073741823")


async def test_a_full_disk_refuses_clearly_and_recovers(tmp_path: Path) -> None:
    log = await DecisionLog.open(tmp_path / "g.db")
    try:
        await log.record(before := make_decision("before"))
        await fill_disk(log)
        with pytest.raises(LogUnavailable, match=r"cannot write the decision log .*g\.db.*full"):
            await log.record(make_decision("while full " + "x" * 2000))
        assert await log.get(before.id) is not None  # reading still works
        await free_disk(log)
        await log.record(after := make_decision("after"))
        texts = [d.request.text for d in await log.query(limit=5000)]
        assert "after" in texts and not any(t.startswith("while full") for t in texts)
        assert log.writer_stats.failed_batches >= 1
        report = await log.verify()
        assert report.ok and report.head_id == after.id
        assert await log.integrity_check() == "ok"
    finally:
        await log.close()


async def test_a_read_only_database_refuses_clearly_and_recovers(tmp_path: Path) -> None:
    log = await DecisionLog.open(tmp_path / "g.db")
    try:
        await on_writer(log, "query_only = ON")
        with pytest.raises(LogUnavailable, match="read-only"):
            await log.record(make_decision("blocked write"))
        await on_writer(log, "query_only = OFF")
        await log.record(make_decision("fine again"))
        assert [d.request.text for d in await log.query()] == ["fine again"]
        assert (await log.verify()).ok
    finally:
        await log.close()


async def test_an_unwritable_location_is_a_clear_error_at_open(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("in the way")
    with pytest.raises(LogUnavailable, match="cannot create the decision log"):
        await DecisionLog.open(blocker / "g.db")  # its "directory" is a file


async def test_the_bot_sends_no_unaudited_reply_and_recovers(tmp_path: Path) -> None:
    config = parse_config(f'[log]\npath = "{tmp_path / "bot.db"}"\n', "test")
    bot = await GuardBot.open(config, env={})  # offline echo model: replies repeat the text
    request = ChatRequest(platform="console", channel_id="c", thread_id="t", user_id="u", text="")
    try:
        first = await bot.handle(request.model_copy(update={"text": "hello"}))
        assert first.action is Action.REPLIED and "hello" in first.reply
        await fill_disk(bot.log)
        plans = "secret plans " * 100
        refused = await bot.handle(request.model_copy(update={"text": plans}))
        assert refused.action is Action.ERROR and refused.reply == AUDIT_DOWN_REPLY
        assert "secret plans" not in refused.reply and not refused.candidates
        assert refused.error is not None and "full" in refused.error
        await bot.record_delivery(refused, sent=True, error=None)  # nothing to attach: no error
        await free_disk(bot.log)
        again = await bot.handle(request.model_copy(update={"text": "back?"}))
        assert again.action is Action.REPLIED and "back?" in again.reply
        logged = {d.request.text for d in await bot.log.query(limit=5000)}
        assert {"hello", "back?"} <= logged and plans not in logged
        assert (await bot.log.verify()).ok
    finally:
        await bot.close()
