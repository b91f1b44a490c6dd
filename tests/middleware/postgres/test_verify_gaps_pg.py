"""The verify gaps of ``tests/middleware/test_verify_gaps.py`` on PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import asyncpg
import pytest

from middleware.decision_log.postgres import PostgresLog
from middleware.types import utc_now
from tests.support.decision_log_support import make_decision


async def test_parts_and_replay_runs_cannot_be_deleted(pg_log: PostgresLog, pg_url: str) -> None:
    """F8: the delete triggers of m008, and a prune still removes a decision's parts."""
    await pg_log.record(make_decision("old", created=utc_now() - timedelta(days=200)))
    await pg_log.record(make_decision("kept"))
    await pg_log.record_replay_run(actor="U-admin", config_fingerprint="f", decisions_count=1,
                                   changed_count=0)  # fmt: skip
    conn = await asyncpg.connect(pg_url)
    try:
        for table in ("verdicts", "candidates", "llm_calls", "replay_runs"):
            count = await conn.fetchval(f"SELECT count(*) FROM {table}")
            assert count > 0, table
            with pytest.raises(asyncpg.IntegrityConstraintViolationError, match="append-only"):
                await conn.execute(f"DELETE FROM {table}")
            assert await conn.fetchval(f"SELECT count(*) FROM {table}") == count
        before = await conn.fetchval("SELECT count(*) FROM verdicts")
        removed, report = await pg_log.prune(utc_now() - timedelta(days=90))
        assert removed == 1 and report.ok
        assert await conn.fetchval("SELECT count(*) FROM verdicts") == before // 2
    finally:
        await conn.close()
