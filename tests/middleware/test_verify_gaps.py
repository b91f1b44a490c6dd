"""What `guardbot verify` sees besides the chain's links: the red team's findings F2-F8.

Each test writes a real log through the store (a real SQLite file), damages it
as someone with the file could, and runs the real verification.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from middleware.decision_log import DecisionLog, integrity
from middleware.decision_log.writer import connect
from tests.support.decision_log_support import make_decision, raw_db


async def _refused(log: DecisionLog, n: int) -> None:
    for i in range(n):
        await log.record_admin_action(
            actor=f"U-{i}", platform="slack", channel_id="C1", command="/guardbot disable pii",
            allowed=False, error="not an admin",
        )  # fmt: skip


async def test_verify_pages_records_after_the_last_decision(tmp_path: Path) -> None:
    """F2: a long run of admin actions after the last decision is read a page at a time."""
    path = tmp_path / "guardbot.db"
    log = await DecisionLog.open(path)
    try:
        for i in range(3):
            await log.record(make_decision(f"message {i}"))
        await _refused(log, 95)
        await log.record(make_decision("late"))
        await _refused(log, 40)
        report = await log.verify()
    finally:
        await log.close()
    assert report.ok and report.checked == 3 + 95 + 1 + 40
    db = await connect(path, read_only=True)
    try:
        versions = [(2, 1)]
        sizes = [len(page) async for page in integrity.pages(db, 0, versions, size=10)]
    finally:
        await db.close()
    # Each window ends before the 11th admin action it would hold: at most 10 records of
    # a kind per page, plus the decisions among them (#1-#3, #99).
    assert sizes == [13, *[10] * 8, 11, 10, 10, 10, 5]
    assert sum(sizes) == report.checked


async def test_parts_and_replay_runs_cannot_be_deleted(tmp_path: Path) -> None:
    """F8: a decision's verdicts, candidates and model calls go only with a prune;
    replay runs never (they are not on the chain)."""
    path = tmp_path / "guardbot.db"
    log = await DecisionLog.open(path)
    try:
        d = make_decision("kept")
        await log.record(d)
        await log.record_replay_run(actor="U-admin", config_fingerprint="f", decisions_count=1,
                                    changed_count=0)  # fmt: skip
    finally:
        await log.close()
    with raw_db(path) as db:
        for table in ("verdicts", "candidates", "llm_calls", "replay_runs"):
            count = db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            assert count > 0, table
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                db.execute(f"DELETE FROM {table}")
            assert db.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == count
