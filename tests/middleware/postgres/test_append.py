"""The one-statement append (postgres/append.py) stores exactly what the shared write stores.

The same jobs are committed into two fresh databases, once through
:func:`append.commit` and once through the shared :func:`writes.commit`:
every row of every table, hashes and head included, must be the same, and
both must verify. Groups it cannot carry go the shared way.
"""

from __future__ import annotations

import math
import sqlite3

import asyncpg
import pytest

from middleware.decision_log.postgres import PostgresLog, append
from middleware.decision_log.postgres.connection import SqlConnection, shared
from middleware.decision_log.postgres.url import PgTarget
from middleware.decision_log.privacy import TextPolicy
from middleware.decision_log.records import encode
from middleware.decision_log.writes import Delivery, Job, commit, insert_admin
from tests.middleware.postgres.conftest import new_database
from tests.support.decision_log_support import make_decision
from tests.support.postgres_server import PostgresServer

TABLES = {
    "decisions": "seq", "decisions_fts": "rowid", "verdicts": "decision_id, position",
    "candidates": "decision_id, candidate_index", "llm_calls": "decision_id, position",
    "deliveries": "id", "chain_head": "id", "sqlite_sequence": "name",
}  # fmt: skip


def jobs() -> list[Job]:
    encoded = [encode(make_decision(f"message {i}"), TextPolicy()) for i in range(3)]
    delivered = [
        Delivery(
            {
                "decision_id": e.row["id"],
                "created_utc": "2026-01-01T00:00:00.000000Z",
                "status": status,
                "error": None,
            }
        )  # fmt: skip
        for e, status in zip(encoded, ("sent", "failed"), strict=False)
    ]
    return [encoded[0], delivered[0], encoded[1], encoded[2], delivered[1]]


async def dump(url: str) -> dict[str, list[asyncpg.Record]]:
    conn = await asyncpg.connect(url)
    try:
        return {t: await conn.fetch(f"SELECT * FROM {t} ORDER BY {k}") for t, k in TABLES.items()}
    finally:
        await conn.close()


async def test_one_statement_and_the_shared_write_store_the_same(
    pg_server: PostgresServer,
) -> None:
    group = jobs()
    fast_url, slow_url = await new_database(pg_server), await new_database(pg_server)
    prepared = append.prepare(group)
    assert prepared is not None
    fast = SqlConnection(await asyncpg.connect(fast_url))
    slow = SqlConnection(await asyncpg.connect(slow_url))
    try:
        assert await append.commit(fast, prepared) == [None] * len(group)
        assert await commit(shared(slow), group) == [None] * len(group)
    finally:
        await fast.close()
        await slow.close()
    assert fast.lock_stats.waits == 1 and fast.lock_stats.held_s > 0
    fast_rows, slow_rows = await dump(fast_url), await dump(slow_url)
    assert len(fast_rows["decisions"]) == 3 and len(fast_rows["deliveries"]) == 2
    assert fast_rows["chain_head"][0]["seq"] == 5
    assert fast_rows == slow_rows
    for url in (fast_url, slow_url):
        log = await PostgresLog.open_url(PgTarget(url), read_only=True)
        try:
            report = await log.verify()
        finally:
            await log.close()
        assert report.ok and report.checked == 5, report.message


def test_groups_it_cannot_carry_go_the_shared_way() -> None:
    admin = insert_admin({"id": "a1", "created_utc": "2026-01-01T00:00:00.000000Z",
                          "actor": "ops", "platform": "console", "channel_id": "c",
                          "command": "show", "scope": None, "key": None, "old_json": None,
                          "new_json": None, "allowed": 1, "error": None})  # fmt: skip
    assert append.prepare([*jobs(), admin]) is None  # an admin action: the shared write
    odd = encode(make_decision("not a number"), TextPolicy())
    odd.row["total_ms"] = math.nan  # encode() stores 0.0 instead; a row made another way
    assert append.prepare([odd]) is None  # JSON has no NaN; the shared write binds it


async def test_a_bad_group_writes_nothing_and_foreign_keys_still_hold(pg_url: str) -> None:
    group = jobs()
    orphan = encode(make_decision("orphan"), TextPolicy())
    orphan.verdicts[0]["decision_id"] = "no-such-decision"  # checked at COMMIT, still checked
    prepared = append.prepare([*group, orphan])
    assert prepared is not None
    conn = SqlConnection(await asyncpg.connect(pg_url))
    try:
        with pytest.raises(sqlite3.IntegrityError, match="verdicts_decision_id_fkey"):
            await append.commit(conn, prepared)
    finally:
        await conn.close()
    rows = await dump(pg_url)
    assert rows["chain_head"][0]["seq"] == 0
    assert not any(rows[t] for t in ("decisions", "verdicts", "candidates", "deliveries"))
