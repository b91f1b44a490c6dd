"""`guardbot migrate-log`: a SQLite log copied into PostgreSQL is the same chain.

A real SQLite log with decisions, deliveries, a setting change and a prune
checkpoint is copied into a fresh database; `verify` passes on the copy with
the same head, and the PostgreSQL log goes on appending to that chain. A
target that already holds a log, and a source that fails verification, are
refused with one line and leave the target as it was.
"""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from bot.cli.main import main
from middleware.decision_log import DecisionLog
from middleware.decision_log.migrations import MIGRATIONS
from middleware.decision_log.postgres import PostgresLog
from middleware.decision_log.postgres.schema import PG_MIGRATIONS
from middleware.decision_log.postgres.url import PgTarget
from middleware.types import utc_now
from tests.support.decision_log_support import make_decision


async def sqlite_log(path: Path) -> str:
    log = await DecisionLog.open(path)
    try:
        for n in range(5):
            decision = make_decision(text=f"message {n}")
            await log.record(decision)
            await log.record_delivery(decision.id, "sent", None)
        await log.set_setting("global", "temperature", 0.3, actor="ops", platform="console",
                              channel_id="c", command="set temperature 0.3")  # fmt: skip
        await log.prune(utc_now() - timedelta(days=365))  # nothing that old: no checkpoint
        return (await log.verify()).head_sha256
    finally:
        await log.close()


def test_the_copy_verifies_with_the_same_head_and_keeps_growing(
    tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    head = asyncio.run(sqlite_log(tmp_path / "guardbot.db"))
    assert main(["migrate-log", "--db", str(tmp_path / "guardbot.db"), "--to", pg_url]) == 0
    captured = capsys.readouterr()
    assert "decisions: 5 rows" in captured.err and "verify passes" in captured.out
    asyncio.run(check_copy(pg_url, head))
    # A second run finds a log there and changes nothing.
    assert main(["migrate-log", "--db", str(tmp_path / "guardbot.db"), "--to", pg_url]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "already holds a decision log" in err[-1]


def test_a_source_that_fails_verification_is_not_copied(
    tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(sqlite_log(tmp_path / "guardbot.db"))
    with sqlite3.connect(tmp_path / "guardbot.db") as db:
        db.execute("DROP TRIGGER decisions_no_update")
        db.execute(
            "UPDATE decisions SET text = 'edited' WHERE seq = (SELECT min(seq) FROM decisions)"
        )
    assert main(["migrate-log", "--db", str(tmp_path / "guardbot.db"), "--to", pg_url]) == 1
    assert "fails verification" in capsys.readouterr().err
    asyncio.run(check_empty(pg_url))


async def check_copy(url: str, head: str) -> None:
    copy = await PostgresLog.open_url(PgTarget(url))
    try:
        report = await copy.verify()
        assert report.ok and report.head_sha256 == head
        assert [d.request.text for d in await copy.query(text="message")][0] == "message 4"
        assert {(r.key, r.value) for r in await copy.settings()} == {("temperature", 0.3)}
        await copy.record(make_decision(text="after the move"))
        assert (await copy.verify()).ok
    finally:
        await copy.close()


async def check_empty(url: str) -> None:
    copy = await PostgresLog.open_url(PgTarget(url), read_only=True)
    try:
        assert await copy.query() == []
    finally:
        await copy.close()


def test_every_sqlite_migration_has_its_postgresql_counterpart_in_order() -> None:
    """The same names in ``_migrations`` on either backend (a copied log is not told apart);
    only the migrations named ``m0NN_pg_*`` are PostgreSQL's alone."""
    sqlite_names = [name for name, _ in MIGRATIONS]
    pg_names = [name for name, _ in PG_MIGRATIONS if "_pg_" not in name]
    assert pg_names == sqlite_names
