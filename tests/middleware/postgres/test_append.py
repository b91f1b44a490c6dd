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
from middleware.decision_log.records import EncodedDecision, encode
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


async def both_ways(server: PostgresServer, group: list[Job]) -> dict[str, list[asyncpg.Record]]:
    """Commit ``group`` through the one statement and the shared write into two fresh
    databases; assert every table is the same and both verify; the rows."""
    fast_url, slow_url = await new_database(server), await new_database(server)
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
    assert fast_rows == slow_rows
    for url in (fast_url, slow_url):
        assert await verified(url) == len(group)
    return fast_rows


async def verified(url: str) -> int:
    log = await PostgresLog.open_url(PgTarget(url), read_only=True)
    try:
        report = await log.verify()
    finally:
        await log.close()
    assert report.ok, report.message
    return report.checked


async def test_one_statement_and_the_shared_write_store_the_same(
    pg_server: PostgresServer,
) -> None:
    rows = await both_ways(pg_server, jobs())
    assert len(rows["decisions"]) == 3 and len(rows["deliveries"]) == 2
    assert rows["chain_head"][0]["seq"] == 5


def odd(text: str = "hello", reply: str = "hi", *, score: float = 0.01, **timings: float) -> Job:
    """A decision with this text, reply, judge score and timings, encoded as the writer does."""
    decision = make_decision(text, reply=reply, tokens=(2**31 - 1, 2**31 - 1))
    judge = decision.verdicts[0].model_copy(update={"score": score, "confidence": score})
    return encode(
        decision.model_copy(
            update={
                "verdicts": [judge, *decision.verdicts[1:]],
                "timings": decision.timings.model_copy(update=timings),
                "cost_usd": 0.1 + 0.2,
            }
        ),
        TextPolicy(),
    )


ODD = {
    "non-ASCII": odd("héllo wörld 中文 🙂👩‍👩‍👧 \u2028 \u2029 \u00a0 \ufeff", "ça va 🙂 \u2028"),
    "quotes and backslashes": odd("say \"hi\" \\ \\n \\u0000 'x' `y` $1 %s {}", '\\"}]\\'),
    "1 MB": odd("x" * 1_000_000 + "🙂", "é" * 500_000),
    "text that reads -0.0": odd("-0.0 and 1e-0.0", "-0.0"),  # a number only in text: fast
    "smallest subnormal": odd(score=5e-324, total_ms=5e-324),
    "largest float": odd(score=1.7976931348623157e308, total_ms=1.7976931348623157e308),
    "0.1 + 0.2": odd(score=0.1 + 0.2, total_ms=0.1 + 0.2),
    "long digits": odd(score=2.0**-1074 * 3, total_ms=123456789.12345679, saved_ms=1e16),
    "negative": odd(score=-1e-9, total_ms=-5e-324, saved_ms=-1.7976931348623157e308),
}


@pytest.mark.parametrize("job", ODD.values(), ids=ODD.keys())
async def test_odd_values_store_the_same_both_ways(pg_server: PostgresServer, job: Job) -> None:
    assert isinstance(job, EncodedDecision)
    delivery = Delivery({"decision_id": job.row["id"], "created_utc": job.row["created_utc"],
                         "status": "failed", "error": job.row["text"][:2000]})  # fmt: skip
    rows = await both_ways(pg_server, [job, delivery])
    stored = rows["decisions"][0]
    for column in ("text", "reply", "total_ms", "saved_ms", "cost_usd", "tokens_in"):
        assert stored[column] == job.row[column], column
    assert rows["verdicts"][0]["score"] == job.verdicts[0]["score"]


async def test_negative_zero_goes_the_shared_way_and_verifies(pg_url: str) -> None:
    """jsonb would store -0.0 as 0: encoding makes it 0.0 before hashing (as SQLite needs),
    and a row holding -0.0 made another way goes the shared way, where a bound parameter
    keeps it. (A moderation score rounded to 4 places is -0.0 for a tiny negative.)"""
    zero = make_decision("rounded")
    judge = zero.verdicts[0].model_copy(update={"score": round(-1e-9, 4)})
    log = await PostgresLog.open_url(PgTarget(pg_url))
    try:
        await log.record(zero.model_copy(update={"verdicts": [judge, *zero.verdicts[1:]]}))
    finally:
        await log.close()
    assert await verified(pg_url) == 1
    conn = await asyncpg.connect(pg_url)
    try:
        stored = await conn.fetchval("SELECT score FROM verdicts WHERE position = 0")
    finally:
        await conn.close()
    assert stored == 0.0
    for job in (odd(score=-0.0), odd(total_ms=-0.0), odd(saved_ms=-0.0)):
        assert append.prepare([*jobs(), job]) is not None  # encoded as 0.0: the fast way
    made_otherwise = odd()
    assert isinstance(made_otherwise, EncodedDecision)
    made_otherwise.row["total_ms"] = -0.0
    assert append.prepare([*jobs(), made_otherwise]) is None


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
