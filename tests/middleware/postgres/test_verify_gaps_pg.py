"""The verify gaps of ``tests/middleware/test_verify_gaps.py`` on PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import asyncpg
import pytest

from middleware.decision_log.postgres import PostgresLog
from middleware.types import utc_now

# The undecided stream and the prune's counts, through the CLI, on PostgreSQL (the same
# shared queries).
from tests.middleware.test_verify_gaps import (  # noqa: F401
    test_prune_says_what_it_removes_of_each_kind,
    test_verify_and_show_list_text_shown_but_never_decided,
)
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
            with pytest.raises(asyncpg.IntegrityConstraintViolationError, match="never emptied"):
                await conn.execute(f"TRUNCATE {table} CASCADE")  # no row trigger fires
            assert await conn.fetchval(f"SELECT count(*) FROM {table}") == count
        before = await conn.fetchval("SELECT count(*) FROM verdicts")
        removed, report = await pg_log.prune(utc_now() - timedelta(days=90))
        assert removed == 1 and report.ok
        assert await conn.fetchval("SELECT count(*) FROM verdicts") == before // 2
    finally:
        await conn.close()


async def test_verify_names_the_head_and_checks_an_anchor(pg_log: PostgresLog) -> None:
    """F7 on PostgreSQL: the head by seq and kind, and an anchor held or not."""
    await pg_log.record(make_decision("one"))
    d = make_decision("two")
    await pg_log.record(d)
    report = await pg_log.verify()
    assert (report.ok, report.head_seq, report.head_kind, report.head_id) == (
        True, 2, "decision", d.id,
    )  # fmt: skip
    assert await pg_log.check_anchor(2, report.head_sha256) is None
    assert "has sha256" in str(await pg_log.check_anchor(1, report.head_sha256))
    assert "is not in the log" in str(await pg_log.check_anchor(3, report.head_sha256))


@pytest.fixture(autouse=True)
def _every_log_on_postgres(on_postgres: dict[str, str]) -> None:
    """Every ``DecisionLog.open`` in the tests imported here opens a PostgreSQL database."""


PG_DAMAGE = [
    # (statement, problem, kind, named)
    ("DROP TRIGGER verdicts_no_delete ON verdicts", "deleted", "schema", "verdicts_no_delete"),
    ("ALTER TABLE decisions DISABLE TRIGGER decisions_no_update", "changed", "schema",
     "decisions_no_update"),
    ("CREATE OR REPLACE FUNCTION guardbot_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ "
     "BEGIN RETURN NEW; END $$", "changed", "schema", "guardbot_refuse"),
    ("DROP INDEX stream_events_seq", "deleted", "schema", "stream_events_seq"),
    # Review A 5: a column dropped (verify read it: a driver error) or added is named.
    ("ALTER TABLE admin_actions DROP COLUMN error", "deleted", "schema", "admin_actions.error"),
    ("ALTER TABLE decisions ADD COLUMN note text", "inserted", "schema", "decisions.note"),
    # Review A 1: a trigger that no longer fires, under its own name.
    ("ALTER TABLE replay_runs ENABLE REPLICA TRIGGER replay_runs_no_delete", "changed",
     "schema", "replay_runs_no_delete"),
    ("DROP TRIGGER replay_runs_no_delete ON replay_runs; CREATE TRIGGER replay_runs_no_delete "
     "BEFORE DELETE ON replay_runs FOR EACH ROW WHEN (false) EXECUTE FUNCTION "
     "guardbot_refuse('replay_runs are append-only')", "changed", "schema",
     "replay_runs_no_delete"),
    ("CREATE FUNCTION noop() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN old; END $$; "
     "DROP TRIGGER replay_runs_no_truncate ON replay_runs; CREATE TRIGGER "
     "replay_runs_no_truncate BEFORE TRUNCATE ON replay_runs FOR EACH STATEMENT EXECUTE "
     "FUNCTION noop()", "changed", "schema", "replay_runs_no_truncate"),
    ("UPDATE decisions_fts SET text = 'bomb' WHERE rowid = 1", "changed", "search index",
     "decisions_fts"),
    ("DELETE FROM decisions_fts WHERE rowid = 2", "changed", "search index", "decisions_fts"),
]  # fmt: skip


@pytest.mark.parametrize("case", PG_DAMAGE, ids=[c[0][:40] for c in PG_DAMAGE])
async def test_verify_names_schema_and_search_index_damage(
    pg_log: PostgresLog, pg_url: str, case: tuple[str, str, str, str]
) -> None:
    """F4 and F5 on PostgreSQL: the chain verifies, the schema or search index does not."""
    statement, problem, kind, named = case
    await pg_log.record(make_decision("hello there"))
    await pg_log.record(make_decision("what is 2+2?"))
    assert (await pg_log.verify()).ok
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()
    report = await pg_log.verify()
    assert (report.ok, report.problem, report.bad_kind, report.bad_id) == (
        False, problem, kind, named,
    ), report.message  # fmt: skip
    readable = "DROP COLUMN" not in statement  # else the walk stopped, unable to read a record
    assert report.counts == ({"decision": 2} if readable else {})
